"""Acoustic wave physics: the OpenFWI forward model in pure PyTorch.

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

Three engines run the same update. Without gradients on CPU, a small C kernel
(:mod:`fwi_teach.physics_native`, built once with the system C compiler) advances
each shot through all time steps in cache; on CUDA the step is fused by
``torch.compile``; otherwise, and whenever gradients are needed, eager PyTorch.
:func:`simulate` picks the fastest that works and falls back with a one-line
warning; records agree between engines to float32 rounding.

Gradients with respect to velocity flow through autograd. Memory is bounded by
checkpointing over segments of time steps (``checkpoint_steps``), so classical
FWI of a 70 x 70 model fits on a laptop (see :func:`fwi_teach.inversion.fwi`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import physics_native

__all__ = [
    "Acquisition",
    "BOUNDARIES",
    "STABILITY_LIMIT",
    "ricker",
    "simulate",
    "damping_profile",
    "compiled_step_available",
    "simulation_engine",
]

#: Second-derivative stencil, 4th order: centre, first and second neighbour.
FD_COEFFS = (-5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0)
#: Largest stable Courant number ``v dt / dx`` of this scheme in 2-D: sqrt(3/8).
STABILITY_LIMIT = math.sqrt(3.0 / 8.0)
#: Absorbing-boundary widths in cells.
BOUNDARIES = {"openfwi": 120, "thin": 40}
_THIN_REFLECTION = 1e-4  # design reflection coefficient of the thin sponge
_THIN_POWER = 3  # polynomial grading of the thin sponge
_HALO = 2  # zero cells outside the boundary layer for the 4th-order stencil


def ricker(freq_hz: float, dt_s: float, nt: int) -> np.ndarray:
    """Ricker wavelet with OpenFWI's length and delay.

    ``nw = 2 floor((2.2 / f / dt) / 2) + 1`` samples centred on sample
    ``nw // 2`` (147 samples peaking at index 73 for 15 Hz and 1 ms), then
    zero-padded (or truncated) to ``nt`` samples.

    Parameters
    ----------
    freq_hz : float
        Peak frequency in Hz (> 0).
    dt_s : float
        Sample interval in seconds (> 0).
    nt : int
        Number of samples to return (>= 1).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(nt,)``, peak value 1.

    Raises
    ------
    ValueError
        If a parameter is not positive.
    """
    if not (freq_hz > 0 and dt_s > 0):
        raise ValueError(f"ricker needs freq_hz > 0 and dt_s > 0, got freq_hz={freq_hz}, dt_s={dt_s}")
    if int(nt) < 1:
        raise ValueError(f"ricker needs nt >= 1, got nt={nt}")
    nw = 2 * int(math.floor((2.2 / freq_hz / dt_s) / 2)) + 1
    k = np.arange(nw)
    a = (nw // 2 - k) * freq_hz * dt_s * math.pi
    w = (1.0 - 2.0 * a**2) * np.exp(-(a**2))
    out = np.zeros(int(nt), dtype=np.float64)
    m = min(nw, int(nt))
    out[:m] = w[:m]
    return out.astype(np.float32)


@dataclass(frozen=True)
class Acquisition:
    """Sources, receivers and sampling of a survey on a regular grid.

    Locations are ``(row, column)`` grid indices of the velocity model (row 0 is
    the surface). Every shot records on the same receivers.

    Parameters
    ----------
    source_locations : tuple of (int, int)
        One ``(row, column)`` per shot.
    receiver_locations : tuple of (int, int)
        One ``(row, column)`` per receiver.
    nt : int
        Recorded samples per trace.
    dt_s : float
        Time step and sample interval in seconds.
    dx_m : float
        Grid spacing in metres (both directions).
    freq_hz : float
        Peak frequency of the Ricker source wavelet in Hz.
    """

    source_locations: tuple
    receiver_locations: tuple
    nt: int = 1000
    dt_s: float = 1e-3
    dx_m: float = 10.0
    freq_hz: float = 15.0

    def __post_init__(self):
        for name in ("source_locations", "receiver_locations"):
            locs = tuple(tuple(int(c) for c in loc) for loc in getattr(self, name))
            if not locs or any(len(loc) != 2 for loc in locs):
                raise ValueError(f"{name} must be a non-empty sequence of (row, column) pairs, got {getattr(self, name)!r}")
            object.__setattr__(self, name, locs)
        if int(self.nt) < 1 or not (self.dt_s > 0 and self.dx_m > 0 and self.freq_hz > 0):
            raise ValueError(
                f"Acquisition needs nt >= 1 and positive dt_s, dx_m, freq_hz; got nt={self.nt}, "
                f"dt_s={self.dt_s}, dx_m={self.dx_m}, freq_hz={self.freq_hz}"
            )

    @classmethod
    def openfwi(cls, nt: int = 1000, dt_s: float = 1e-3, dx_m: float = 10.0, freq_hz: float = 15.0) -> "Acquisition":
        """OpenFWI's survey on a 70 x 70 grid: 5 sources at row 1, columns 0, 17,
        34, 52, 69; 70 receivers at row 1 (every column); 1000 samples of 1 ms;
        10 m cells; 15 Hz Ricker."""
        return cls(
            source_locations=tuple((1, c) for c in (0, 17, 34, 52, 69)),
            receiver_locations=tuple((1, c) for c in range(70)),
            nt=nt, dt_s=dt_s, dx_m=dx_m, freq_hz=freq_hz,
        )

    @property
    def n_shots(self) -> int:
        return len(self.source_locations)

    @property
    def n_receivers(self) -> int:
        return len(self.receiver_locations)

    def wavelet(self) -> np.ndarray:
        """The Ricker source wavelet, shape ``(nt,)``."""
        return ricker(self.freq_hz, self.dt_s, self.nt)

    def check_grid(self, nz: int, nx: int) -> None:
        """Raise ``ValueError`` if a source or receiver lies outside an ``nz x nx`` grid."""
        for name, locs in (("source", self.source_locations), ("receiver", self.receiver_locations)):
            for i, (r, c) in enumerate(locs):
                if not (0 <= r < nz and 0 <= c < nx):
                    raise ValueError(
                        f"{name} {i} at (row={r}, column={c}) lies outside the {nz} x {nx} velocity model; "
                        f"move it inside rows 0..{nz - 1} and columns 0..{nx - 1}"
                    )


def damping_profile(nbc: int, dx_m: float, v_ref_mps: float, kind: str) -> np.ndarray:
    """Damping in 1/s of the boundary cells, innermost first.

    Parameters
    ----------
    nbc : int
        Boundary width in cells.
    dx_m : float
        Grid spacing in metres.
    v_ref_mps : float
        Reference velocity: OpenFWI uses the model's minimum velocity
        (``kind="openfwi"``); the thin sponge uses the maximum.
    kind : {"openfwi", "thin"}
        Profile. ``openfwi``: ``k0 (i dx / a)^2``, ``i = 0 .. nbc-1``,
        ``a = (nbc - 1) dx``, ``k0 = 3 v ln(1e7) / (2 a)``. ``thin``: the same
        cubic profile ``k0 (i / nbc)^3`` over ``i = 1 .. nbc`` with the usual
        PML scaling ``k0 = (3 + 1) v ln(1/R) / (2 L)``, ``L = nbc dx`` and
        design reflection ``R = 1e-4`` (tuned against a reflection-free
        reference; ``benchmarks/forward.py``).

    Returns
    -------
    numpy.ndarray
        ``(nbc,)`` float64.
    """
    if kind == "openfwi":
        a = (nbc - 1) * dx_m
        k0 = 3.0 * v_ref_mps * math.log(1e7) / (2.0 * a)
        return k0 * (np.arange(nbc) * dx_m / a) ** 2
    if kind == "thin":
        length = nbc * dx_m
        k0 = (_THIN_POWER + 1) * v_ref_mps * math.log(1.0 / _THIN_REFLECTION) / (2.0 * length)
        return k0 * (np.arange(1, nbc + 1) / nbc) ** _THIN_POWER
    raise ValueError(f"unknown boundary {kind!r}; choose one of {sorted(BOUNDARIES)}")


def _damping_field(v_ref: torch.Tensor, nz: int, nx: int, nbc: int, dx_m: float, kind: str) -> torch.Tensor:
    """Damping (N, nz + 2 nbc, nx + 2 nbc) in 1/s. Each cell takes the profile
    value of its larger distance to the interior (corners included)."""
    unit = torch.as_tensor(damping_profile(nbc, dx_m, 1.0, kind), dtype=v_ref.dtype, device=v_ref.device)
    prof = torch.cat([unit.new_zeros(1), unit])  # index 0 = interior

    def dist(n):
        i = torch.arange(n + 2 * nbc, device=v_ref.device)
        return torch.clamp(torch.maximum(nbc - i, i - (n + nbc - 1)), min=0)

    d = torch.maximum(dist(nz)[:, None], dist(nx)[None, :])
    return prof[d][None] * v_ref[:, None, None]


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


def _neighbour_sum(p: torch.Tensor) -> torch.Tensor:
    """``S1 + (c2 / c1) S2`` of each cell of ``p`` (..., nz, nx), zero outside."""
    h = _HALO
    q = F.pad(p, (h, h, h, h))
    nz, nx = p.shape[-2:]
    s1 = (q[..., h - 1:h - 1 + nz, h:h + nx] + q[..., h + 1:h + 1 + nz, h:h + nx]) + (
        q[..., h:h + nz, h - 1:h - 1 + nx] + q[..., h:h + nz, h + 1:h + 1 + nx])
    s2 = (q[..., :nz, h:h + nx] + q[..., 2 * h:, h:h + nx]) + (q[..., h:h + nz, :nx] + q[..., h:h + nz, 2 * h:])
    return torch.add(s1, s2, alpha=FD_COEFFS[2] / FD_COEFFS[1])


class _NeighbourSum(torch.autograd.Function):
    """:func:`_neighbour_sum` with a hand-written backward: the stencil with
    zero boundary values is a symmetric matrix, so its adjoint is itself. This
    avoids autograd's eight slice-backward buffers per time step."""

    @staticmethod
    def forward(ctx, p):
        return _neighbour_sum(p)

    @staticmethod
    def backward(ctx, grad):
        return _neighbour_sum(grad)


def _segment(pp, p, coef_a, coef_b, coef_r, src_amp, wav, src_index, rec_idx):
    """Advance ``len(wav)`` time steps with autograd (fields without halo).

    Returns the last two fields and the records of these steps, (N, S, steps, R).
    """
    n, s, hh, ww = p.shape
    records = []
    for w_t in wav:
        new = torch.addcmul(coef_a * p - coef_b * pp, coef_r, _NeighbourSum.apply(p))
        flat = new.view(n, s, hh * ww)
        flat.index_put_(src_index, src_amp * w_t, accumulate=True)
        records.append(flat.index_select(2, rec_idx))
        pp, p = p, new
    return pp, p, torch.stack(records, dim=2)


def _segment_no_grad(pp, p, coef_a, coef_b, coef_r, src_amp, wav, src_index, rec_idx):
    """Same as :func:`_segment` without autograd: rotates three preallocated
    buffers and updates them in place (no allocation per step)."""
    h = _HALO
    ratio = FD_COEFFS[2] / FD_COEFFS[1]
    n, s, hh, ww = p.shape
    nxt = torch.zeros_like(p)
    s1 = torch.empty_like(p[..., h:-h, h:-h])
    s2 = torch.empty_like(s1)
    neg_b = -coef_b
    records = torch.empty((n, s, len(wav), rec_idx.numel()), dtype=p.dtype, device=p.device)
    for it, w_t in enumerate(wav):
        torch.add(p[..., h - 1:hh - h - 1, h:-h], p[..., h + 1:hh - h + 1, h:-h], out=s1)
        s1.add_(p[..., h:-h, h - 1:ww - h - 1]).add_(p[..., h:-h, h + 1:ww - h + 1])
        torch.add(p[..., :-2 * h, h:-h], p[..., 2 * h:, h:-h], out=s2)
        s2.add_(p[..., h:-h, :-2 * h]).add_(p[..., h:-h, 2 * h:])
        s1.add_(s2, alpha=ratio)
        inner = nxt[..., h:-h, h:-h]
        torch.mul(coef_a, p[..., h:-h, h:-h], out=inner)
        inner.addcmul_(neg_b, pp[..., h:-h, h:-h]).addcmul_(coef_r, s1)
        flat = nxt.view(n, s, hh * ww)
        flat.index_put_(src_index, src_amp * w_t, accumulate=True)
        records[:, :, it] = flat[:, :, rec_idx]
        pp, p, nxt = p, nxt, pp
    return pp, p, records


def _step_fused(p, pp, coef_a, coef_b, coef_r):
    """One time step as a pure function of halo-padded fields, for torch.compile."""
    h = _HALO
    c = p[..., h:-h, h:-h]
    s1 = p[..., h - 1:-h - 1, h:-h] + p[..., h + 1:p.shape[-2] - h + 1, h:-h] + p[..., h:-h, h - 1:-h - 1] \
        + p[..., h:-h, h + 1:p.shape[-1] - h + 1]
    s2 = p[..., :-2 * h, h:-h] + p[..., 2 * h:, h:-h] + p[..., h:-h, :-2 * h] + p[..., h:-h, 2 * h:]
    new = coef_a * c - coef_b * pp[..., h:-h, h:-h] + coef_r * (s1 + (FD_COEFFS[2] / FD_COEFFS[1]) * s2)
    return F.pad(new, (h, h, h, h))


_COMPILED: dict = {}


def _inductor_cache_dir() -> None:
    """Keep compiled kernels in the package cache (``$FWI_TEACH_CACHE/inductor``) unless the user chose a place.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first compiles; its on-disk
    caches then let every later process reuse the kernels of a shape it has seen.
    """
    import os

    from .book import resolve_cache_dir

    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(resolve_cache_dir() / "inductor")


def _cpu_compiler() -> str | None:
    """The C++ compiler inductor would find (``$CXX``, g++, c++ or clang++), or None."""
    import os
    import shutil

    return next((shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c and shutil.which(c)),
                None)


def compiled_step_available(device="cpu") -> bool:
    """Whether :func:`simulate` will try the compiled time step on ``device`` by default.

    False when ``FWI_TEACH_COMPILE=0`` is set, when a compilation failed earlier in this
    process, on CPU without a C++ compiler, and on CUDA without Triton. (A True answer
    is a precondition; the first compilation itself can still fail, and then
    :func:`simulate` falls back to the eager path.)
    """
    import os

    if os.environ.get("FWI_TEACH_COMPILE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if _COMPILED.get("failed"):
        return False
    kind = torch.device(device).type
    if kind == "cpu":  # the C kernel needs a C compiler, torch.compile a C++ one
        return physics_native.available() or _cpu_compiler() is not None
    if kind == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return False


def simulation_engine(device="cpu", requires_grad: bool = False) -> str:
    """The engine :func:`simulate` uses by default for float32 models on ``device``.

    One of ``"C kernel"`` (:mod:`fwi_teach.physics_native`), ``"torch.compile"`` or
    ``"eager"`` (always, when gradients are needed).
    """
    if requires_grad or not compiled_step_available(device):
        return "eager"
    if torch.device(device).type == "cpu" and physics_native.available():
        return "C kernel"
    return "torch.compile"


def _native_ok(v: torch.Tensor) -> bool:
    """Whether the C kernel runs this float32 CPU batch; warns once if it cannot be built."""
    if v.device.type != "cpu" or v.dtype != torch.float32:
        return False
    if physics_native.available():
        return True
    if not _COMPILED.get("native_warned"):
        import warnings

        _COMPILED["native_warned"] = True
        warnings.warn(f"fwi_teach.physics: the C time step is not available here ({physics_native.load_error()}); "
                      f"trying torch.compile, else the eager path (set FWI_TEACH_COMPILE=0 to skip the attempts)",
                      stacklevel=3)
    return False


def _segment_compiled(pp, p, coef_a, coef_b, coef_r, src_amp, wav, src_index, rec_idx):
    """:func:`_segment_no_grad` with the stencil update fused by ``torch.compile``."""
    if "step" not in _COMPILED:
        _inductor_cache_dir()
        _COMPILED["step"] = torch.compile(_step_fused, dynamic=False)
    step = _COMPILED["step"]
    n, s, hh, ww = p.shape
    records = torch.empty((n, s, len(wav), rec_idx.numel()), dtype=p.dtype, device=p.device)
    for it, w_t in enumerate(wav):
        new = step(p, pp, coef_a, coef_b, coef_r)
        flat = new.view(n, s, hh * ww)
        flat.index_put_(src_index, src_amp * w_t, accumulate=True)
        records[:, :, it] = flat[:, :, rec_idx]
        pp, p = p, new
    return pp, p, records


def _coefficients(vp: torch.Tensor, damping: torch.Tensor, acq: Acquisition, kind: str):
    """Update coefficients (a, b, r') with ``p+ = a p - b p- + r' (S1 + c S2)``."""
    r = (vp * (acq.dt_s / acq.dx_m)) ** 2
    k = damping * acq.dt_s
    c0, c1 = 2.0 * FD_COEFFS[0], FD_COEFFS[1]
    if kind == "openfwi":  # OpenFWI's one-sided damping term
        return 2.0 - k + c0 * r, 1.0 - k, c1 * r
    scale = 1.0 / (1.0 + 0.5 * k)  # centred damping term, stable for any k
    return (2.0 + c0 * r) * scale, (1.0 - 0.5 * k) * scale, c1 * r * scale


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
        :mod:`fwi_teach.physics_native` (about 3x the eager rate on 2 cores; built
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
    v, from_numpy, _ = _as_velocity_tensor(velocity_mps, device)
    nmod, nz, nx = v.shape
    acq.check_grid(nz, nx)
    _check_velocity(v, acq)
    wav = torch.as_tensor(np.asarray(acq.wavelet() if wavelet is None else wavelet, dtype=np.float32)
                          if not isinstance(wavelet, torch.Tensor) else wavelet, device=v.device, dtype=v.dtype)
    if wav.shape != (acq.nt,):
        raise ValueError(f"wavelet has shape {tuple(wav.shape)}; expected ({acq.nt},) to match acquisition.nt")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    needs_grad = torch.is_grad_enabled() and (v.requires_grad or wav.requires_grad)
    seg = int(checkpoint_steps or 50) if needs_grad else acq.nt
    use_compiled = not needs_grad and (compiled_step_available(v.device) if compile is None else bool(compile))
    if batch_size is None:  # the C kernel amortises its per-call set-up over more models
        batch_size = 64 if v.device.type == "cuda" else (8 if use_compiled and _native_ok(v) else 4)

    nbc, h = BOUNDARIES[boundary], _HALO
    rows = torch.tensor([r for r, _ in acq.source_locations], device=v.device)
    cols = torch.tensor([c for _, c in acq.source_locations], device=v.device)
    rec_rows = torch.tensor([r for r, _ in acq.receiver_locations], device=v.device)
    rec_cols = torch.tensor([c for _, c in acq.receiver_locations], device=v.device)

    def flat_index(r, c, halo):  # index into a flattened field with a zero halo of `halo` cells
        return (r + nbc + halo) * (nx + 2 * nbc + 2 * halo) + c + nbc + halo

    src_flat = {k: flat_index(rows, cols, k) for k in (0, h)}
    rec_flat = {k: flat_index(rec_rows, rec_cols, k) for k in (0, h)}

    outputs = []
    bar = tqdm(total=nmod, desc=f"simulate ({boundary})", unit="model", disable=not progress)
    native = use_compiled and _native_ok(v)
    for start in range(0, nmod, int(batch_size)):
        vb = v[start:start + int(batch_size)]
        n_real = vb.shape[0]
        if use_compiled and not native and n_real < int(batch_size):  # one torch.compile shape for every call
            vb = torch.cat([vb, vb[-1:].expand(int(batch_size) - n_real, -1, -1)])  # pad with copies
        n = vb.shape[0]
        vp = F.pad(vb[:, None], (nbc, nbc, nbc, nbc), mode="replicate")
        if boundary_velocity_mps is None:
            v_ref = (vb.detach().amin((1, 2)) if boundary == "openfwi" else vb.detach().amax((1, 2)))
        else:
            v_ref = torch.full((n,), float(boundary_velocity_mps), dtype=vb.dtype, device=vb.device)
        damping = _damping_field(v_ref, nz, nx, nbc, acq.dx_m, boundary)
        coef_a, coef_b, coef_r = _coefficients(vp, damping[:, None], acq, boundary)
        src_amp = (vb[:, rows, cols] * acq.dt_s) ** 2  # (n, S): OpenFWI injects (v dt)^2 w(t)
        src_index = (torch.arange(n, device=v.device)[:, None].expand(n, acq.n_shots),
                     torch.arange(acq.n_shots, device=v.device)[None, :].expand(n, acq.n_shots))
        halo = 0 if needs_grad else h  # the in-place path keeps a zero halo
        shape = (n, acq.n_shots, nz + 2 * nbc + 2 * halo, nx + 2 * nbc + 2 * halo)
        if not native:
            pp = torch.zeros(shape, device=v.device, dtype=v.dtype)
            p = torch.zeros_like(pp)
        src_index = src_index[:2] + (src_flat[halo][None, :].expand(n, acq.n_shots),)
        pieces = []
        if native:
            pieces.append(physics_native.advance(shape, coef_a, coef_b, coef_r, FD_COEFFS[2] / FD_COEFFS[1], src_amp,
                                                 src_flat[h], wav, rec_flat[h]))
        for t0 in range(0, acq.nt if not native else 0, seg):  # (the C kernel has run every step)
            args = (pp, p, coef_a, coef_b, coef_r, src_amp, wav[t0:t0 + seg], src_index, rec_flat[halo])
            if needs_grad:
                pp, p, rec = checkpoint(_segment, *args, use_reentrant=False)
            elif use_compiled:
                try:
                    pp, p, rec = _segment_compiled(*args)
                except Exception as exc:  # no compiler, unsupported platform...
                    import warnings

                    _COMPILED["failed"] = True
                    first = (str(exc).strip().splitlines() or [""])[0][:200]
                    warnings.warn(f"fwi_teach.physics: the compiled time step is not available here "
                                  f"({type(exc).__name__}: {first}); using the eager path (set FWI_TEACH_COMPILE=0 "
                                  f"to skip the attempt)", stacklevel=2)
                    use_compiled = False
                    pp, p, rec = _segment_no_grad(*args)
            else:
                pp, p, rec = _segment_no_grad(*args)
            pieces.append(rec)
        outputs.append(torch.cat(pieces, dim=2)[:n_real])
        bar.update(n_real)
    bar.close()
    out = torch.cat(outputs, dim=0)
    if from_numpy:
        return out.detach().cpu().numpy()
    return out
