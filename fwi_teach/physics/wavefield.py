"""Wavefield snapshots: the pressure of one shot at chosen times, absorbing sponge included.

:func:`simulate` returns only what the receivers record. :func:`wavefield_snapshots`
runs the same time loop (:func:`~fwi_teach.physics.stencil.segment_in_place`, the
coefficients of :func:`~fwi_teach.physics.solver.propagation_coefficients`) for one
shot and keeps the whole pressure field at the requested times, on the padded grid,
so that a figure can show the wavefront, the reflections from the layers and the
sponge swallowing the waves that leave the model. Besides the sponges of
:data:`~fwi_teach.physics.boundaries.BOUNDARIES` it offers ``"none"``: no padding and
no damping, so the edges of the model reflect everything (the pressure is zero
outside), which is what the sponges are there to prevent.

The field after ``k`` time steps is the field at time ``k dt``; at the receivers it
equals :func:`simulate`'s record sample ``k - 1`` (to float32 rounding on the eager
path: the same operations on a smaller batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .solver import PADDING_CELLS, _as_velocity_tensor, _check_velocity, grid_index, propagation_coefficients
from .stencil import HALO, segment_in_place
from .survey import Acquisition

__all__ = ["WavefieldSnapshots", "wavefield_snapshots"]


@dataclass(frozen=True)
class WavefieldSnapshots:
    """Pressure fields of one shot, returned by :func:`wavefield_snapshots`.

    Attributes
    ----------
    pressure : numpy.ndarray
        ``(n_times, nz + 2 padding_cells, nx + 2 padding_cells)``: the field on
        the padded grid (sponge included), row 0 at the top of the padding.
    times_s : numpy.ndarray
        ``(n_times,)`` time of each field in s: ``steps * dt_s``.
    steps : numpy.ndarray
        ``(n_times,)`` number of time steps taken before each field.
    padding_cells : int
        Sponge width on each side (0 for ``"none"``).
    boundary : str
        The boundary that was modelled.
    model_shape : tuple of int
        ``(nz, nx)`` of the velocity model (the physical domain).
    dx_m : float
        Grid spacing in metres.
    source_location : tuple of int
        ``(row, column)`` of the shot in the model.
    records : numpy.ndarray
        ``(steps[-1], n_receivers)``: what the receivers recorded up to the last
        snapshot, sample ``t`` at time ``(t + 1) dt`` as in :func:`simulate`.
    """

    pressure: np.ndarray
    times_s: np.ndarray
    steps: np.ndarray
    padding_cells: int
    boundary: str
    model_shape: tuple
    dx_m: float
    source_location: tuple
    records: np.ndarray

    def interior(self) -> np.ndarray:
        """The fields inside the physical domain, ``(n_times, nz, nx)``."""
        nz, nx = self.model_shape
        b = self.padding_cells
        return self.pressure[:, b:b + nz, b:b + nx]

    def interior_energy(self) -> np.ndarray:
        """Sum of ``p^2`` over the physical domain at each time, ``(n_times,)``."""
        return (self.interior().astype(np.float64) ** 2).sum(axis=(1, 2))

    def extent_km(self) -> tuple:
        """``(left, right, bottom, top)`` of the padded grid in km for ``imshow``:
        the physical domain spans ``0 .. nx dx`` across and ``0 .. nz dx`` down,
        the sponge lies at negative distances and beyond."""
        nz, nx = self.model_shape
        b, d = self.padding_cells, self.dx_m / 1000.0
        return (-b * d, (nx + b) * d, (nz + b) * d, -b * d)


def wavefield_snapshots(velocity_mps, times_s, acquisition: Acquisition | None = None, boundary: str = "thin", *,
                        shot: int = 0, wavelet=None, boundary_velocity_mps: float | None = None,
                        device=None) -> WavefieldSnapshots:
    """Pressure field of one shot at chosen times, on the padded grid.

    Parameters
    ----------
    velocity_mps : array-like
        One velocity model in m/s, ``(nz, nx)`` (or ``(1, nz, nx)``, ``(1, 1, nz, nx)``).
    times_s : float or sequence of float
        Times of the snapshots in seconds, each in ``0 .. acquisition.nt * dt_s``;
        each is rounded to the nearest time step (``times_s`` of the result says
        where). Any order; the result is sorted by time.
    acquisition : Acquisition, optional
        Survey; default :meth:`Acquisition.openfwi`. Its ``nt`` bounds the times.
    boundary : {"thin", "openfwi", "none"}
        The sponges of :func:`simulate`, or ``"none"``: no sponge, reflecting edges.
    shot : int
        Which source of the acquisition fires.
    wavelet : array-like, optional
        Source time function ``(nt,)``; default the acquisition's Ricker.
    boundary_velocity_mps : float, optional
        Reference velocity of the damping, as in :func:`simulate`.
    device : str or torch.device, optional
        Where to compute; default the input's device (CPU for numpy input).

    Returns
    -------
    WavefieldSnapshots
        The fields (float32, or the input tensor's floating dtype), their times
        and the padding, with the receivers' records up to the last snapshot.

    Raises
    ------
    ValueError
        An unknown boundary, a shot index out of range, a time outside the record
        or not finite, more than one velocity model, or any input :func:`simulate`
        rejects (shape, non-positive velocity, unstable time step, sources or
        receivers outside the model, wavelet of the wrong length).
    """
    acq = acquisition if acquisition is not None else Acquisition.openfwi()
    if boundary not in PADDING_CELLS:
        raise ValueError(f"unknown boundary {boundary!r}; choose one of {sorted(PADDING_CELLS)}")
    if not isinstance(shot, (int, np.integer)) or not 0 <= int(shot) < acq.n_shots:
        raise ValueError(f"shot={shot!r}; the acquisition has {acq.n_shots} shots, choose 0..{acq.n_shots - 1}")
    times = np.atleast_1d(np.asarray(times_s, dtype=np.float64))
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times_s has shape {np.shape(times_s)}; expected one time or a 1-D sequence of times")
    end_s = acq.nt * acq.dt_s
    if not np.isfinite(times).all() or times.min() < 0 or times.max() > end_s * (1 + 1e-9):
        raise ValueError(f"times_s must lie in 0 .. {end_s:g} s (acquisition.nt x dt_s), got {times.tolist()}; "
                         "pass an Acquisition with a larger nt for later times")
    if device is not None:
        from ..runtime import resolve_device

        device = resolve_device(device)
    v, _, _ = _as_velocity_tensor(velocity_mps, device)
    if v.shape[0] != 1:
        raise ValueError(f"velocity holds {v.shape[0]} models; wavefield_snapshots models one, pass velocity[i]")
    nz, nx = v.shape[-2:]
    acq.check_grid(nz, nx)
    _check_velocity(v, acq)
    if boundary_velocity_mps is not None and not (math.isfinite(boundary_velocity_mps) and boundary_velocity_mps > 0):
        raise ValueError(f"boundary_velocity_mps={boundary_velocity_mps!r}; expected a positive velocity in m/s, "
                         "or None for the model's own")
    wav = torch.as_tensor(np.asarray(acq.wavelet() if wavelet is None else wavelet, dtype=np.float32),
                          dtype=v.dtype, device=v.device)  # as simulate converts it
    if wav.shape != (acq.nt,):
        raise ValueError(f"wavelet has shape {tuple(wav.shape)}; expected ({acq.nt},) to match acquisition.nt")
    if not bool(torch.isfinite(wav).all()):
        raise ValueError("wavelet contains NaN or infinite values; pass a finite source time function")

    steps = np.unique(np.rint(times / acq.dt_s).astype(np.int64).clip(0, acq.nt))
    one_shot = Acquisition(source_locations=(acq.source_locations[int(shot)],),
                           receiver_locations=acq.receiver_locations, nt=acq.nt, dt_s=acq.dt_s, dx_m=acq.dx_m,
                           freq_hz=acq.freq_hz)
    nbc, h = PADDING_CELLS[boundary], HALO
    with torch.no_grad():
        v = v.detach()
        coef_a, coef_b, coef_r, src_amp = propagation_coefficients(v, one_shot, boundary, boundary_velocity_mps)
        shape = (1, 1, nz + 2 * nbc + 2 * h, nx + 2 * nbc + 2 * h)
        pp = torch.zeros(shape, dtype=v.dtype, device=v.device)
        p = torch.zeros_like(pp)
        zero = torch.zeros((1, 1), dtype=torch.long, device=v.device)
        src_index = (zero, zero, grid_index(one_shot.source_locations, nx, nbc, h, v.device)[None, :])
        rec_index = grid_index(acq.receiver_locations, nx, nbc, h, v.device)
        frames, records, done = [], [], 0
        for k in steps.tolist():
            if k > done:  # the solver's own loop, one segment per snapshot
                pp, p, rec = segment_in_place(pp, p, coef_a, coef_b, coef_r, src_amp, wav[done:k], src_index,
                                              rec_index)
                records.append(rec[0, 0])
                done = k
            frames.append(p[0, 0, h:-h, h:-h].clone())
    empty = torch.zeros((0, acq.n_receivers), dtype=v.dtype)
    return WavefieldSnapshots(
        pressure=torch.stack(frames).cpu().numpy(),
        times_s=steps * acq.dt_s,
        steps=steps,
        padding_cells=nbc,
        boundary=boundary,
        model_shape=(int(nz), int(nx)),
        dx_m=float(acq.dx_m),
        source_location=acq.source_locations[int(shot)],
        records=torch.cat([r.cpu() for r in records]).numpy() if records else empty.numpy(),
    )
