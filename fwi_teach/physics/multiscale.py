"""Multiscale FWI: classical FWI run band by band, from low frequencies to high.

A single run of :func:`~fwi_teach.physics.inversion.fwi` on the full-band data
skips cycles when the starting model is far from the truth: the modelled and
observed arrivals are more than half a period apart and the gradient points the
wrong way. The standard remedy (Bunks et al., 1995; Virieux and Operto, 2009) is
a *frequency continuation*: invert data low-passed to a low cutoff first, where
the periods are long and the misfit is nearly convex, then raise the cutoff and
start each band from the model the previous band reached.

:func:`multiscale_fwi` does exactly that with the course's own :func:`fwi` and
keeps the model after every iteration, so that a caller can measure the model
error and the (full-band) data misfit along the whole inversion;
:class:`MultiscaleResult` holds them. It is the physics half of the course's
"hybrid" inversion, in which a network's prediction is the starting model
(:mod:`fwi_teach.experiments.physics_loop`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .inversion import fwi
from .survey import Acquisition

__all__ = ["MultiscaleResult", "multiscale_fwi"]


@dataclass
class MultiscaleResult:
    """Outcome of :func:`multiscale_fwi`.

    Attributes
    ----------
    velocity_mps : numpy.ndarray
        Final model, ``(nz, nx)`` in m/s.
    models_mps : numpy.ndarray
        ``(n_iterations + 1, nz, nx)``: the (clipped) starting model and the
        model after every iteration, float32.
    band_of_iteration : list of float or None
        Cutoff in Hz of the band each iteration ran in (None: full band).
    band_misfit : list of float
        The misfit each iteration minimised, measured before its update (each
        band's own low-passed, normalised misfit: comparable within a band only).
    model_rmse_mps : list of float
        RMS error against the true model of each entry of ``models_mps`` (empty
        without a true model).
    """

    velocity_mps: np.ndarray
    models_mps: np.ndarray
    band_of_iteration: list = field(default_factory=list)
    band_misfit: list = field(default_factory=list)
    model_rmse_mps: list = field(default_factory=list)

    @property
    def n_iterations(self) -> int:
        """Number of updates made over all bands."""
        return len(self.band_of_iteration)


def _bands(bands_hz, iterations_per_band) -> list:
    bands = list(bands_hz)
    if not bands:
        raise ValueError("bands_hz is empty; give at least one cutoff in Hz (None for the full band)")
    for b in bands:
        if b is not None and not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
            raise ValueError(f"bands_hz holds {b!r}; each band is a positive cutoff in Hz or None (full band)")
    finite = [b for b in bands if b is not None]
    if finite != sorted(finite) or (None in bands and bands[-1] is not None) or bands.count(None) > 1:
        raise ValueError(f"bands_hz={bands}: cutoffs must rise from low to high, with the full band (None), "
                         "if any, last")
    if isinstance(iterations_per_band, (int, np.integer)):
        iters = [int(iterations_per_band)] * len(bands)
    else:
        iters = [int(n) for n in iterations_per_band]
    if len(iters) != len(bands) or any(n < 0 for n in iters) or sum(iters) == 0:
        raise ValueError(f"iterations_per_band={iterations_per_band!r}: give one non-negative count per band "
                         f"({len(bands)} bands), not all zero")
    return list(zip(bands, iters))


def multiscale_fwi(observed, initial_velocity_mps, acquisition: Acquisition | None = None, *,
                   bands_hz=(4.0, 8.0, None), iterations_per_band=10, step_mps: float = 50.0,
                   true_velocity_mps=None, line_search: bool = True, progress: bool = False,
                   **fwi_options) -> MultiscaleResult:
    """Classical FWI with a frequency continuation, keeping the model after every update.

    Parameters
    ----------
    observed : array-like
        Observed records ``(n_shots, nt, n_receivers)`` of one model.
    initial_velocity_mps : array-like
        Starting model ``(nz, nx)`` in m/s (a smoothed truth, a mean map, a
        network's prediction, ...).
    acquisition : Acquisition, optional
        Survey that recorded ``observed``; default OpenFWI's.
    bands_hz : sequence of float or None
        Low-pass cutoffs in Hz, rising; ``None`` (allowed last) is the full band.
        Default 4 Hz, 8 Hz, then the full band of the 15 Hz Ricker wavelet.
    iterations_per_band : int or sequence of int
        Updates per band (one count for all, or one per band).
    step_mps : float
        Largest velocity change of one update in m/s (see :func:`fwi`).
    true_velocity_mps : array-like, optional
        If given, ``model_rmse_mps`` is filled.
    line_search : bool
        Backtracking steps (see :func:`fwi`; default on): an update that would
        raise the band's misfit is halved, or not made, so a good start is kept.
    progress : bool
        Show :func:`fwi`'s progress bar for each band.
    **fwi_options
        Passed to :func:`fwi` (``boundary``, ``velocity_range_mps``,
        ``gradient_smoothing_cells``, ``mute_rows``, ``depth_power``, ``device``,
        ``checkpoint_steps``).

    Returns
    -------
    MultiscaleResult

    Raises
    ------
    ValueError
        Bands that are not rising positive cutoffs, iteration counts that do not
        match the bands, an option :func:`fwi` does not take or fixes itself
        (``n_iterations``, ``cutoff_hz``, ``snapshot_every``), or any input
        :func:`fwi` rejects.
    """
    fixed = {"n_iterations", "cutoff_hz", "snapshot_every", "initial_velocity_mps", "observed"}
    clash = sorted(fixed & set(fwi_options))
    if clash:
        raise ValueError(f"multiscale_fwi sets {clash} itself; use bands_hz and iterations_per_band instead")
    plan = _bands(bands_hz, iterations_per_band)
    v_true = None if true_velocity_mps is None else np.asarray(true_velocity_mps, dtype=np.float64)
    current = np.asarray(initial_velocity_mps, dtype=np.float32)
    models, bands, misfits = [], [], []
    for cutoff, n_iter in plan:
        if n_iter == 0:
            continue
        run = fwi(observed, current, acquisition, n_iterations=n_iter, cutoff_hz=cutoff, step_mps=step_mps,
                  snapshot_every=1, progress=progress, line_search=line_search, **fwi_options)
        if not models:
            models.append(run.snapshots[0])  # the start, clipped to the velocity range as fwi does
        models.extend(run.snapshots[1:])
        bands.extend([cutoff] * n_iter)
        misfits.extend(run.misfit)
        current = run.velocity_mps
    stack = np.stack(models).astype(np.float32)
    rmse = [] if v_true is None else [float(np.sqrt(np.mean((m - v_true) ** 2))) for m in stack]
    return MultiscaleResult(velocity_mps=stack[-1].copy(), models_mps=stack, band_of_iteration=bands,
                            band_misfit=misfits, model_rmse_mps=rmse)
