"""The forward model: :func:`simulate` models OpenFWI shot gathers for a batch of velocity models.

The constant-density acoustic wave equation

.. math:: \\partial_t^2 p = v^2 \\nabla^2 p + v^2 s(t)\\,\\delta(\\mathbf{x}-\\mathbf{x}_s)

is solved with finite differences, 2nd order in time and 4th order in space
(second-derivative stencil ``-5/2, 4/3, -1/12``), on a square grid with spacing
``dx_m`` in both directions, batched over velocity models and shots, on CPU or
CUDA. The conventions follow OpenFWI (see ``FACTS.md``): the source adds
``(v dt)^2 w(t)`` to the pressure at its cell, receivers read the pressure at
theirs, and the recorded sample ``t`` is the field at time ``(t + 1) dt`` (the
all-zero initial sample is dropped).

Two absorbing boundaries are available:

``"openfwi"``
    The 120-cell damping sponge OpenFWI used to make its data: velocity
    replicated from the edge, damping ``d(i) = k0 (i dx / a)^2`` with
    ``a = (nbc - 1) dx`` and ``k0 = 3 v_min ln(1e7) / (2 a)``, update
    ``p+ = (2 - k) p - (1 - k) p- + r lap(p)`` with ``k = d dt``. Use it to
    reproduce OpenFWI's records as closely as possible. It pads a 70 x 70 model
    to 310 x 310 cells.
``"thin"``
    A 40-cell sponge with a cubic profile scaled by the maximum velocity,
    discretised with a centred damping term (stable for any damping). Padding
    is 150 x 150 cells, 4.3x fewer than ``"openfwi"``. On a layered model its
    records differ from a reflection-free reference by about 2.5 % (relative
    L2) where ``"openfwi"`` differs by about 0.1 %; ``benchmarks/forward.py``
    prints both figures. Use it for data generation, teaching and FWI, where
    cost matters; use ``"openfwi"`` to compare with downloaded OpenFWI records.
    (A 20-cell sponge was tried first: its records were off by 10-17 %, because
    a sponge reflects from its own damping gradient. A convolutional PML would
    absorb better, but in eager PyTorch its extra fields cost as much as the
    wider sponge.)

The scheme lives in :mod:`~fwi_teach.physics.stencil`, the sponges in
:mod:`~fwi_teach.physics.boundaries` and the survey in :mod:`~fwi_teach.physics.survey`.
Three engines run the same update (:mod:`~fwi_teach.physics.engines`). Without
gradients on CPU, a small C kernel (:mod:`fwi_teach.physics.native`, built once
with the system C compiler) advances each shot through all time steps in cache;
on CUDA the step is fused by ``torch.compile``; otherwise, and whenever gradients
are needed, eager PyTorch. :func:`simulate` picks the fastest that works and falls
back with a one-line warning; records agree between engines to float32 rounding.

Gradients with respect to velocity flow through autograd. Memory is bounded by
checkpointing over segments of time steps (``checkpoint_steps``), so classical
FWI of a 70 x 70 model fits on a laptop (see :func:`fwi_teach.physics.inversion.fwi`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import engines, native
from .boundaries import BOUNDARIES, damping_field
from .stencil import HALO, NEIGHBOUR_RATIO, STABILITY_LIMIT, segment_autograd, segment_in_place, update_coefficients
from .survey import Acquisition

__all__ = ["simulate", "propagation_coefficients", "grid_index"]

#: Padding of each boundary in cells: the sponges of :data:`BOUNDARIES`, and ``"none"`` (no
#: padding, no damping: the model's edges reflect), which only wavefield snapshots offer.
PADDING_CELLS = {**BOUNDARIES, "none": 0}


def propagation_coefficients(velocity: torch.Tensor, acquisition: Acquisition, boundary: str,
                             boundary_velocity_mps: float | None = None):
    """Coefficients of the time step on the padded grid, and the source amplitudes, of a batch.

    The one place where a velocity model becomes the update
    ``p+ = a p - b p- + r' (S1 + c S2)`` of :mod:`fwi_teach.physics.stencil`:
    :func:`simulate` and :func:`fwi_teach.physics.wavefield.wavefield_snapshots`
    both step with these.

    Parameters
    ----------
    velocity : torch.Tensor
        Velocity in m/s, ``(N, nz, nx)``.
    acquisition : Acquisition
        Survey (its sources, ``dt_s`` and ``dx_m`` are used).
    boundary : {"thin", "openfwi", "none"}
        Sponge; ``"none"`` pads nothing and damps nothing.
    boundary_velocity_mps : float, optional
        Reference velocity of the damping; default each model's minimum
        (``"openfwi"``) or maximum (``"thin"``).

    Returns
    -------
    tuple of torch.Tensor
        ``a, b, r'``, each ``(N, 1, nz + 2 nbc, nx + 2 nbc)``, and the source
        amplitudes ``(v dt)^2`` at the sources, ``(N, n_shots)`` (OpenFWI injects
        ``(v dt)^2 w(t)``).
    """
    n, nz, nx = velocity.shape
    nbc = PADDING_CELLS[boundary]
    vp = F.pad(velocity[:, None], (nbc, nbc, nbc, nbc), mode="replicate")
    if nbc == 0:
        damping = torch.zeros_like(velocity.detach())
    else:
        if boundary_velocity_mps is None:
            vd = velocity.detach()
            v_ref = vd.amin((1, 2)) if boundary == "openfwi" else vd.amax((1, 2))
        else:
            v_ref = torch.full((n,), float(boundary_velocity_mps), dtype=velocity.dtype, device=velocity.device)
        damping = damping_field(v_ref, nz, nx, nbc, acquisition.dx_m, boundary)
    coef_a, coef_b, coef_r = update_coefficients(vp, damping[:, None], acquisition.dt_s, acquisition.dx_m,
                                                 boundary)
    rows = torch.tensor([r for r, _ in acquisition.source_locations], device=velocity.device)
    cols = torch.tensor([c for _, c in acquisition.source_locations], device=velocity.device)
    src_amp = (velocity[:, rows, cols] * acquisition.dt_s) ** 2
    return coef_a, coef_b, coef_r, src_amp


def grid_index(locations, nx: int, nbc: int, halo: int, device=None) -> torch.Tensor:
    """Indices of ``(row, column)`` model cells in a flattened padded field.

    The field has ``nbc`` sponge cells and then ``halo`` zero cells on each side,
    so its rows are ``nx + 2 nbc + 2 halo`` cells long.
    """
    rows = torch.tensor([r for r, _ in locations], device=device)
    cols = torch.tensor([c for _, c in locations], device=device)
    return (rows + nbc + halo) * (nx + 2 * nbc + 2 * halo) + cols + nbc + halo


def _as_velocity_tensor(velocity_mps, device) -> tuple[torch.Tensor, bool, bool]:
    """Return (tensor (N, nz, nx), came_from_numpy, had_batch_dim)."""
    from_numpy = not isinstance(velocity_mps, torch.Tensor)
    v = torch.as_tensor(np.asarray(velocity_mps, dtype=np.float32)) if from_numpy else velocity_mps
    shape = tuple(v.shape)
    if v.ndim == 4 and shape[1] == 1:
        v = v[:, 0]
    elif v.ndim == 2:
        v = v[None]
    elif v.ndim != 3:
        raise ValueError(f"velocity has shape {shape}; expected (nz, nx), (N, nz, nx) or (N, 1, nz, nx)")
    if v.shape[-1] < 5 or v.shape[-2] < 5:
        raise ValueError(f"velocity has shape {shape}; the model needs at least 5 x 5 cells")
    if device is not None:
        v = v.to(device)
    if not v.is_floating_point():
        v = v.float()
    return v, from_numpy, len(shape) != 2


def _check_velocity(v: torch.Tensor, acq: Acquisition) -> None:
    with torch.no_grad():
        if not torch.isfinite(v).all():
            raise ValueError("velocity contains NaN or infinite values; fix or mask them before modelling")
        v_min, v_max = float(v.min()), float(v.max())
    if v_min <= 0:
        raise ValueError(f"velocity must be positive everywhere (m/s), got a minimum of {v_min:g}")
    courant = v_max * acq.dt_s / acq.dx_m
    if courant > STABILITY_LIMIT:
        raise ValueError(
            f"unstable time step: max velocity {v_max:g} m/s x dt {acq.dt_s:g} s / dx {acq.dx_m:g} m = {courant:.3f} "
            f"exceeds the stability limit {STABILITY_LIMIT:.3f} of this scheme; use dt_s <= "
            f"{STABILITY_LIMIT * acq.dx_m / v_max:.3g} s or a larger dx_m"
        )


def simulate(velocity_mps, acquisition: Acquisition | None = None, boundary: str = "thin", *,
             wavelet=None, device=None, batch_size: int | None = None,
             checkpoint_steps: int | None = None, boundary_velocity_mps: float | None = None,
             compile: bool | None = None, progress: bool = False):
    """Model shot gathers for one or many velocity models.

    Parameters
    ----------
    velocity_mps : numpy.ndarray or torch.Tensor
        Velocity in m/s, shape ``(nz, nx)``, ``(N, nz, nx)`` or ``(N, 1, nz, nx)``.
        A tensor that requires grad gives records differentiable with respect to it.
    acquisition : Acquisition, optional
        Survey; default :meth:`Acquisition.openfwi`.
    boundary : {"thin", "openfwi"}
        Absorbing boundary (see the module docstring): ``"thin"`` (40-cell
        sponge, fast) or ``"openfwi"`` (OpenFWI's 120-cell sponge, slower).
    wavelet : array-like, optional
        Source time function, shape ``(nt,)``; default the acquisition's Ricker.
    device : str or torch.device, optional
        Where to compute; default the input's device (CPU for numpy input).
    batch_size : int, optional
        Models propagated together; default 64 on CUDA, 8 on CPU with the C
        kernel, else 4.
    checkpoint_steps : int, optional
        Time steps per autograd checkpoint segment when gradients are needed
        (default 50); memory then grows with ``nt / checkpoint_steps`` fields.
    boundary_velocity_mps : float, optional
        Reference velocity of the damping profile. By default each model's own
        minimum (``"openfwi"``, as OpenFWI) or maximum (``"thin"``); autograd
        treats it as a constant. Pass a number to make the forward map exactly
        the function that autograd differentiates (as :func:`fwi` does).
    compile : bool, optional
        Use a compiled engine for no-gradient runs. By default (None) it is used
        whenever :func:`compiled_step_available` says it can be (``FWI_TEACH_COMPILE``
        not ``0``; a C compiler on CPU, Triton on CUDA); ``False`` forces the eager
        path. On CPU with float32 the engine is the C kernel of
        :mod:`fwi_teach.physics.native` (about 3x the eager rate on 2 cores; built
        in about a second the first time, then cached in ``$FWI_TEACH_CACHE/native``);
        otherwise the step is fused by ``torch.compile`` (the first call for each
        new shape compiles for 5-60 s; kernels are cached on disk in
        ``$FWI_TEACH_CACHE/inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set, and
        the last, partial batch is padded to the batch size so that one shape
        serves a whole data set). If an engine cannot run, the next one is used
        with a one-line warning. Records agree with the eager path to float32
        rounding and do not depend on the batch size or the thread count.
    progress : bool
        Show a progress bar over models.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Records ``(N, n_shots, nt, n_receivers)`` float32, of the input's array
        type (a 2-D model gives ``N = 1``). Sample ``t`` is time ``(t + 1) dt``.

    Raises
    ------
    ValueError
        Wrong shape, non-finite or non-positive velocity, an unstable time step
        (``v_max dt / dx > 0.612``), sources or receivers outside the model,
        an unknown boundary or a wavelet of the wrong length.
    """
    from tqdm.auto import tqdm

    acq = acquisition if acquisition is not None else Acquisition.openfwi()
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r}; choose one of {sorted(BOUNDARIES)}")
    if device is not None:
        from ..runtime import resolve_device

        device = resolve_device(device)
    v, from_numpy, _ = _as_velocity_tensor(velocity_mps, device)
    nmod, nz, nx = v.shape
    if nmod == 0:
        raise ValueError(f"velocity holds no models (shape {tuple(v.shape)}); pass at least one")
    acq.check_grid(nz, nx)
    _check_velocity(v, acq)
    wav = torch.as_tensor(np.asarray(acq.wavelet() if wavelet is None else wavelet, dtype=np.float32)
                          if not isinstance(wavelet, torch.Tensor) else wavelet, device=v.device, dtype=v.dtype)
    if wav.shape != (acq.nt,):
        raise ValueError(f"wavelet has shape {tuple(wav.shape)}; expected ({acq.nt},) to match acquisition.nt")
    if not bool(torch.isfinite(wav.detach()).all()):
        raise ValueError("wavelet contains NaN or infinite values; pass a finite source time function")
    if boundary_velocity_mps is not None and not (math.isfinite(boundary_velocity_mps) and boundary_velocity_mps > 0):
        raise ValueError(f"boundary_velocity_mps={boundary_velocity_mps!r}; expected a positive velocity in m/s, "
                         "or None for each model's own")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    needs_grad = torch.is_grad_enabled() and (v.requires_grad or wav.requires_grad)
    seg = int(checkpoint_steps or 50) if needs_grad else acq.nt
    use_compiled = not needs_grad and (engines.compiled_step_available(v.device) if compile is None else bool(compile))
    if batch_size is None:  # the C kernel amortises its per-call set-up over more models
        batch_size = 64 if v.device.type == "cuda" else (8 if use_compiled and engines.native_ok(v) else 4)

    nbc, h = BOUNDARIES[boundary], HALO
    src_flat = {k: grid_index(acq.source_locations, nx, nbc, k, v.device) for k in (0, h)}
    rec_flat = {k: grid_index(acq.receiver_locations, nx, nbc, k, v.device) for k in (0, h)}

    outputs = []
    bar = tqdm(total=nmod, desc=f"simulate ({boundary})", unit="model", disable=not progress)
    use_native = use_compiled and engines.native_ok(v)
    for start in range(0, nmod, int(batch_size)):
        vb = v[start:start + int(batch_size)]
        n_real = vb.shape[0]
        if use_compiled and not use_native and n_real < int(batch_size):  # one torch.compile shape for every call
            vb = torch.cat([vb, vb[-1:].expand(int(batch_size) - n_real, -1, -1)])  # pad with copies
        n = vb.shape[0]
        coef_a, coef_b, coef_r, src_amp = propagation_coefficients(vb, acq, boundary, boundary_velocity_mps)
        src_index = (torch.arange(n, device=v.device)[:, None].expand(n, acq.n_shots),
                     torch.arange(acq.n_shots, device=v.device)[None, :].expand(n, acq.n_shots))
        halo = 0 if needs_grad else h  # the in-place path keeps a zero halo
        shape = (n, acq.n_shots, nz + 2 * nbc + 2 * halo, nx + 2 * nbc + 2 * halo)
        if not use_native:
            pp = torch.zeros(shape, device=v.device, dtype=v.dtype)
            p = torch.zeros_like(pp)
        src_index = src_index[:2] + (src_flat[halo][None, :].expand(n, acq.n_shots),)
        pieces = []
        if use_native:
            pieces.append(native.advance(shape, coef_a, coef_b, coef_r, NEIGHBOUR_RATIO, src_amp, src_flat[h], wav,
                                         rec_flat[h]))
        for t0 in range(0, acq.nt if not use_native else 0, seg):  # (the C kernel has run every step)
            args = (pp, p, coef_a, coef_b, coef_r, src_amp, wav[t0:t0 + seg], src_index, rec_flat[halo])
            if needs_grad:
                pp, p, rec = checkpoint(segment_autograd, *args, use_reentrant=False)
            elif use_compiled:
                try:
                    pp, p, rec = engines.segment_compiled(*args)
                except Exception as exc:  # no compiler, unsupported platform...
                    engines.compile_failed(exc)
                    use_compiled = False
                    pp, p, rec = segment_in_place(*args)
            else:
                pp, p, rec = segment_in_place(*args)
            pieces.append(rec)
        outputs.append(torch.cat(pieces, dim=2)[:n_real])
        bar.update(n_real)
    bar.close()
    out = torch.cat(outputs, dim=0)
    if from_numpy:
        return out.detach().cpu().numpy()
    return out
