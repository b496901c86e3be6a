"""Physics: the acoustic wave equation, OpenFWI's survey and classical full-waveform inversion.

- :mod:`~fwi_teach.physics.survey`      :func:`ricker` wavelet and :class:`Acquisition` geometry
- :mod:`~fwi_teach.physics.boundaries`  absorbing sponges (``"thin"``, ``"openfwi"``)
- :mod:`~fwi_teach.physics.stencil`     the 4th-order stencil and the time loops built on it
- :mod:`~fwi_teach.physics.engines`     which engine runs the loop (C kernel, ``torch.compile``, eager)
- :mod:`~fwi_teach.physics.native`      the C time loop for CPU data generation
- :mod:`~fwi_teach.physics.solver`      :func:`simulate`, shot gathers of many velocity models
- :mod:`~fwi_teach.physics.inversion`   :func:`fwi`, classical FWI by gradient descent
"""

from .survey import Acquisition, ricker
from .boundaries import BOUNDARIES, damping_profile
from .stencil import FD_COEFFS, HALO, STABILITY_LIMIT
from .engines import compiled_step_available, simulation_engine
from .solver import simulate
from .inversion import FWIResult, fwi, lowpass, smooth_velocity

__all__ = ["Acquisition", "ricker", "BOUNDARIES", "damping_profile", "FD_COEFFS", "HALO", "STABILITY_LIMIT",
           "compiled_step_available", "simulation_engine", "simulate", "FWIResult", "fwi", "lowpass",
           "smooth_velocity"]
