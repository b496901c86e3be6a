"""Physics: the acoustic wave equation, OpenFWI's survey and classical full-waveform inversion.

- :mod:`~fwi_teach.physics.survey`      :func:`ricker` wavelet and :class:`Acquisition` geometry
- :mod:`~fwi_teach.physics.boundaries`  absorbing sponges (``"thin"``, ``"openfwi"``)
- :mod:`~fwi_teach.physics.stencil`     the 4th-order stencil and the time loops built on it
- :mod:`~fwi_teach.physics.engines`     which engine runs the loop (C kernel, ``torch.compile``, eager)
- :mod:`~fwi_teach.physics.native`      the C time loop for CPU data generation
- :mod:`~fwi_teach.physics.solver`      :func:`simulate`, shot gathers of many velocity models
- :mod:`~fwi_teach.physics.inversion`   :func:`fwi`, classical FWI by gradient descent; its misfit
  :func:`fwi_misfit` and the raw gradient :func:`misfit_gradient`
- :mod:`~fwi_teach.physics.multiscale`  :func:`multiscale_fwi`, FWI band by band from low frequencies to high
- :mod:`~fwi_teach.physics.wavefield`   :func:`wavefield_snapshots`, the pressure field of one shot, sponge included
- :mod:`~fwi_teach.physics.gradient_check`  :func:`taylor_test`, the check that a gradient is the misfit's derivative
"""

from .survey import Acquisition, ricker
from .boundaries import BOUNDARIES, damping_profile
from .stencil import FD_COEFFS, HALO, STABILITY_LIMIT
from .engines import compiled_step_available, simulation_engine
from .solver import simulate
from .inversion import FWIResult, fwi, fwi_misfit, lowpass, misfit_gradient, smooth_velocity
from .multiscale import MultiscaleResult, multiscale_fwi
from .wavefield import WavefieldSnapshots, wavefield_snapshots
from .gradient_check import TaylorTest, taylor_test

__all__ = ["Acquisition", "ricker", "BOUNDARIES", "damping_profile", "FD_COEFFS", "HALO", "STABILITY_LIMIT",
           "compiled_step_available", "simulation_engine", "simulate", "FWIResult", "fwi", "lowpass",
           "smooth_velocity", "fwi_misfit", "misfit_gradient", "WavefieldSnapshots", "wavefield_snapshots",
           "TaylorTest", "taylor_test", "MultiscaleResult", "multiscale_fwi"]
