"""Data misfit: does a velocity model explain the recorded data?

MAE, RMSE and SSIM compare a predicted velocity map with the true one, which only a
synthetic test knows. A geophysicist judges a model first by the data: simulate the
survey in the model and compare the synthetic shot gathers with the observed ones.
:func:`data_misfit` does that for a batch of models, with the same survey and the same
absorbing boundary as the data, and returns the relative L2 misfit of each,

.. math:: e(v) = \\frac{\\lVert F(v) - d \\rVert_2}{\\lVert d \\rVert_2},

over all shots, time samples and receivers: 0 for a model that explains the data
exactly, about 1 for one that predicts nothing of it (``F(v) = 0``), and above 1 for
arrivals in the wrong places (they count twice: missing where they are, present where
they are not). The true model gives the simulator's floor, which is zero up to float32
rounding when the data were modelled by the same code (as the course's generated data
are), and larger for data from another simulator (OpenFWI's files: a different
absorbing boundary, see :mod:`fwi_teach.physics.boundaries`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..physics.solver import simulate
from ..physics.survey import Acquisition

__all__ = ["data_misfit", "relative_l2"]


def relative_l2(synthetic, observed) -> np.ndarray:
    """``||synthetic - observed|| / ||observed||`` per sample (leading axis), float64.

    Parameters
    ----------
    synthetic, observed : array-like
        Records of the same shape ``(N, ...)``.

    Raises
    ------
    ValueError
        Different shapes, non-finite values, or an observed sample that is zero
        everywhere (its relative misfit is undefined).
    """
    syn = np.asarray(synthetic.detach().cpu() if isinstance(synthetic, torch.Tensor) else synthetic, dtype=np.float64)
    obs = np.asarray(observed.detach().cpu() if isinstance(observed, torch.Tensor) else observed, dtype=np.float64)
    if syn.shape != obs.shape or syn.ndim < 2:
        raise ValueError(f"synthetic records have shape {syn.shape} and observed {obs.shape}; "
                         "expected the same shape (N, ...) for both")
    if not (np.isfinite(syn).all() and np.isfinite(obs).all()):
        raise ValueError("records contain NaN or infinite values; check the models and the data")
    n = obs.shape[0]
    norm = np.sqrt((obs.reshape(n, -1) ** 2).sum(1))
    if (norm == 0).any():
        raise ValueError(f"observed sample(s) {np.flatnonzero(norm == 0).tolist()} are zero everywhere; "
                         "the relative misfit needs recorded energy")
    return np.sqrt(((syn - obs).reshape(n, -1) ** 2).sum(1)) / norm


def data_misfit(velocity_mps, observed, acquisition: Acquisition | None = None, boundary: str = "thin", *,
                device=None, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
    """Relative L2 data misfit of each velocity model against its observed shot gathers.

    Parameters
    ----------
    velocity_mps : array-like
        Models in m/s, ``(N, nz, nx)`` or ``(N, 1, nz, nx)`` (``(nz, nx)`` for one).
        Normalised network outputs must be turned into m/s first
        (:func:`fwi_teach.data.normalize.denormalize_velocity`).
    observed : array-like
        The recorded data of each model, ``(N, n_shots, nt, n_receivers)``, raw
        (not normalised, not decimated in time), as
        :meth:`fwi_teach.data.OpenFWIDataset.raw_sample` returns them.
    acquisition : Acquisition, optional
        Survey that recorded ``observed``; default OpenFWI's (its ``nt`` must match).
    boundary : {"thin", "openfwi"}
        Absorbing boundary the data were modelled with (a profile's ``boundary``).
    device : str or torch.device, optional
        Where to simulate; default CPU.
    batch_size : int, optional
        Models simulated together (see :func:`fwi_teach.physics.simulate`).
    progress : bool
        Show a progress bar over models.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` relative misfits, float64.

    Raises
    ------
    ValueError
        A different number of models and records, records that do not match the
        acquisition, or any model :func:`simulate` rejects (non-positive or
        non-finite velocity, an unstable time step).
    """
    acq = acquisition if acquisition is not None else Acquisition.openfwi()
    v = np.array(velocity_mps.detach().cpu() if isinstance(velocity_mps, torch.Tensor) else velocity_mps,
                 dtype=np.float32)  # a copy: broadcast views (one mean map for every sample) are read-only
    if v.ndim == 2:
        v = v[None]
    if v.ndim == 4 and v.shape[1] == 1:
        v = v[:, 0]
    obs = np.asarray(observed.detach().cpu() if isinstance(observed, torch.Tensor) else observed, dtype=np.float32)
    if obs.ndim == 3:
        obs = obs[None]
    if v.ndim != 3:
        raise ValueError(f"velocity_mps has shape {v.shape}; expected (N, nz, nx) or (N, 1, nz, nx) in m/s")
    expected = (acq.n_shots, acq.nt, acq.n_receivers)
    if obs.ndim != 4 or obs.shape[1:] != expected:
        raise ValueError(f"observed records have shape {obs.shape}; expected (N, {', '.join(map(str, expected))}) "
                         "for this acquisition (raw records, not decimated in time)")
    if obs.shape[0] != v.shape[0]:
        raise ValueError(f"{v.shape[0]} velocity models but {obs.shape[0]} observed records; pass one record per "
                         "model, in the same order")
    if float(np.nanmax(np.abs(v))) <= 2.0:
        raise ValueError("velocity_mps looks normalised (all values within [-2, 2]); convert it to m/s with "
                         "fwi_teach.data.normalize.denormalize_velocity first")
    synthetic = simulate(v, acq, boundary=boundary, device=device, batch_size=batch_size, progress=progress)
    return relative_l2(synthetic, obs)
