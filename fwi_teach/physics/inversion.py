"""Classical full-waveform inversion: the data misfit, its gradient and gradient descent on it.

This is the physics-based method that deep-learning FWI replaces. Given
observed shot gathers ``d_obs`` and a starting velocity, :func:`fwi` minimises

.. math:: J(v) = \\tfrac12 \\lVert L\\,(F(v) - d_{obs}) \\rVert^2 / \\lVert L\\,d_{obs} \\rVert^2

where ``F`` is :func:`fwi_teach.physics.simulate` and ``L`` an optional
low-pass filter (frequency continuation against cycle skipping). The gradient
comes from autograd through the time stepping, with checkpointing to bound
memory. Each update is steepest descent scaled so that the largest change is
``step_mps``; the gradient is smoothed and muted near the sources, and the
velocity is kept inside a physical range.

:func:`fwi_misfit` is that objective as a differentiable function of the
velocity (what :func:`fwi` evaluates), and :func:`misfit_gradient` its raw
gradient, the image that every update starts from (before smoothing, muting
and scaling); :func:`fwi_teach.physics.gradient_check.taylor_test` checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .solver import simulate
from .survey import Acquisition

__all__ = ["FWIResult", "fwi", "fwi_misfit", "misfit_gradient", "lowpass", "smooth_velocity"]


@dataclass
class FWIResult:
    """Outcome of :func:`fwi`.

    Attributes
    ----------
    velocity_mps : numpy.ndarray
        Final model, ``(nz, nx)`` in m/s.
    misfit : list of float
        Normalised data misfit ``J`` before each update.
    model_rmse_mps : list of float
        RMS error against ``true_velocity_mps`` before each update (empty if
        no true model was given).
    snapshots : list of numpy.ndarray
        Models every ``snapshot_every`` iterations (first and last included).
    """

    velocity_mps: np.ndarray
    misfit: list = field(default_factory=list)
    model_rmse_mps: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)


def lowpass(records: torch.Tensor, dt_s: float, cutoff_hz: float, taper_hz: float = 2.0) -> torch.Tensor:
    """Zero-phase low-pass filter along the time axis (dimension -2).

    Differentiable (FFT, multiply by a cosine-tapered box, inverse FFT), so it
    can sit inside the FWI objective.

    Parameters
    ----------
    records : torch.Tensor
        ``(..., nt, n_receivers)``.
    dt_s : float
        Sample interval in seconds.
    cutoff_hz : float
        Frequencies above ``cutoff_hz + taper_hz / 2`` are removed, below
        ``cutoff_hz - taper_hz / 2`` kept.
    taper_hz : float
        Width of the cosine transition in Hz.

    Returns
    -------
    torch.Tensor
        Filtered records, same shape.
    """
    if cutoff_hz <= 0 or taper_hz <= 0:
        raise ValueError(f"cutoff_hz and taper_hz must be positive, got {cutoff_hz} and {taper_hz}")
    nt = records.shape[-2]
    freqs = torch.fft.rfftfreq(nt, d=dt_s).to(records.device, records.dtype)
    ramp = ((freqs - (cutoff_hz - taper_hz / 2)) / taper_hz).clamp(0, 1)
    gain = 0.5 * (1 + torch.cos(math.pi * ramp))
    spectrum = torch.fft.rfft(records, dim=-2)
    return torch.fft.irfft(spectrum * gain[:, None], n=nt, dim=-2)


def smooth_velocity(velocity_mps, sigma_cells: float) -> np.ndarray:
    """Gaussian-smoothed copy of a velocity model (a typical FWI starting model).

    Parameters
    ----------
    velocity_mps : array-like
        ``(nz, nx)`` in m/s.
    sigma_cells : float
        Standard deviation of the Gaussian in grid cells (>= 0).

    Returns
    -------
    numpy.ndarray
        float32 ``(nz, nx)``; edges are handled by reflection.
    """
    from scipy.ndimage import gaussian_filter

    v = np.asarray(velocity_mps, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"velocity has shape {v.shape}; expected (nz, nx)")
    if sigma_cells < 0:
        raise ValueError(f"sigma_cells must be >= 0, got {sigma_cells}")
    return gaussian_filter(v, sigma_cells, mode="reflect").astype(np.float32)


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _observed_records(observed, acq: Acquisition, device, dtype=torch.float32) -> torch.Tensor:
    """Observed records as a ``(1, n_shots, nt, n_receivers)`` tensor, checked against the acquisition."""
    if isinstance(observed, torch.Tensor):
        d_obs = observed.detach().to(device=device, dtype=dtype)
    else:
        d_obs = torch.as_tensor(np.asarray(observed, dtype=np.float32 if dtype == torch.float32 else np.float64),
                                device=device, dtype=dtype)
    if d_obs.ndim == 3:
        d_obs = d_obs[None]
    expected = (1, acq.n_shots, acq.nt, acq.n_receivers)
    if tuple(d_obs.shape) != expected:
        raise ValueError(f"observed records have shape {tuple(d_obs.shape)}; expected {expected[1:]} "
                         "for this acquisition")
    return d_obs


def fwi_misfit(velocity_mps, observed, acquisition: Acquisition | None = None, *, boundary: str = "thin",
               cutoff_hz: float | None = None, boundary_velocity_mps: float = 4500.0,
               checkpoint_steps: int = 50) -> torch.Tensor:
    """The data misfit that :func:`fwi` minimises, ``J(v) = 0.5 ||L (F(v) - d)||^2 / ||L d||^2``.

    Parameters
    ----------
    velocity_mps : array-like or torch.Tensor
        One model in m/s, ``(nz, nx)`` or ``(1, nz, nx)``. A tensor that requires
        grad makes ``J`` differentiable with respect to it.
    observed : array-like or torch.Tensor
        Observed records ``(n_shots, nt, n_receivers)`` or ``(1, n_shots, nt, n_receivers)``.
    acquisition : Acquisition, optional
        Survey that recorded ``observed``; default OpenFWI's.
    boundary : {"thin", "openfwi"}
        Absorbing boundary of the modelling.
    cutoff_hz : float, optional
        Low-pass both data to this frequency first (``L``; None: no filter).
    boundary_velocity_mps : float
        Fixed reference velocity of the sponge (default 4500 m/s, :func:`fwi`'s
        upper velocity bound), so that the forward map is exactly the function
        autograd differentiates.
    checkpoint_steps : int
        Time steps per checkpoint segment when gradients are needed.

    Returns
    -------
    torch.Tensor
        Scalar, of the velocity's dtype and device: 0 when the synthetic data match
        ``observed``, 0.5 for synthetic data of zero.
        The modelling always runs on the eager path (the one autograd
        differentiates), so ``J`` and its gradient belong to the same function.

    Raises
    ------
    ValueError
        ``observed`` does not match the acquisition, more than one model, or any
        input :func:`simulate` rejects.
    """
    acq = acquisition if acquisition is not None else Acquisition.openfwi()
    v = velocity_mps if isinstance(velocity_mps, torch.Tensor) else torch.as_tensor(
        np.asarray(velocity_mps, dtype=np.float32))
    if v.ndim not in (2, 3) or (v.ndim == 3 and v.shape[0] != 1):
        raise ValueError(f"velocity has shape {tuple(v.shape)}; expected one model, (nz, nx) or (1, nz, nx)")
    d_obs = _observed_records(observed, acq, v.device, v.dtype if v.is_floating_point() else torch.float32)

    def filt(d):
        return d if cutoff_hz is None else lowpass(d, acq.dt_s, cutoff_hz)

    target = filt(d_obs)
    scale = (target**2).sum()
    synthetic = simulate(v, acq, boundary=boundary, checkpoint_steps=checkpoint_steps,
                         boundary_velocity_mps=boundary_velocity_mps, compile=False)
    return 0.5 * ((filt(synthetic) - target) ** 2).sum() / scale


def misfit_gradient(velocity_mps, observed, acquisition: Acquisition | None = None, *, boundary: str = "thin",
                    cutoff_hz: float | None = None, boundary_velocity_mps: float = 4500.0,
                    checkpoint_steps: int = 50, device=None, dtype=torch.float32) -> tuple:
    """The FWI gradient: ``J(v)`` of :func:`fwi_misfit` and ``dJ/dv`` at one velocity model.

    The raw gradient, by autograd through the time stepping (what the adjoint-state
    method computes): no smoothing, muting or depth scaling, which :func:`fwi`
    applies on top. ``-dJ/dv`` is the direction of steepest descent: where it is
    positive, the first update makes the model faster.

    Parameters
    ----------
    velocity_mps : array-like
        One model ``(nz, nx)`` in m/s.
    observed : array-like
        Observed records ``(n_shots, nt, n_receivers)`` (or with a leading 1).
    acquisition : Acquisition, optional
        Survey that recorded ``observed``; default OpenFWI's.
    boundary, cutoff_hz, boundary_velocity_mps, checkpoint_steps
        As in :func:`fwi_misfit`.
    device : str or torch.device, optional
        Where to compute (default CPU).
    dtype : torch.dtype
        ``torch.float32`` (default, as :func:`fwi`) or ``torch.float64``.

    Returns
    -------
    (float, numpy.ndarray)
        The misfit ``J`` and the gradient ``(nz, nx)`` in 1/(m/s), float64.

    Raises
    ------
    ValueError
        As :func:`fwi_misfit`, or a dtype that is not float32 or float64.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype={dtype}; use torch.float32 or torch.float64")
    v0 = np.asarray(velocity_mps.detach().cpu() if isinstance(velocity_mps, torch.Tensor) else velocity_mps)
    if v0.ndim != 2:
        raise ValueError(f"velocity_mps has shape {v0.shape}; expected one model (nz, nx)")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    v = torch.tensor(v0[None], dtype=dtype, device=dev, requires_grad=True)
    misfit = fwi_misfit(v, observed, acquisition, boundary=boundary, cutoff_hz=cutoff_hz,
                        boundary_velocity_mps=boundary_velocity_mps, checkpoint_steps=checkpoint_steps)
    (grad,) = torch.autograd.grad(misfit, v)
    return float(misfit.detach()), grad[0].detach().cpu().numpy().astype(np.float64)


def _backtrack(v, direction, misfit, step, bounds, objective, halvings: int = 4) -> tuple:
    """Move ``v`` (in place) by the largest of ``step, step/2, ...`` that lowers ``objective``.

    Returns the step tried last and whether the first try was accepted; ``v`` is left
    unchanged if no try lowered the misfit.
    """
    for attempt in range(halvings + 1):
        trial = (v - direction * step).clamp(*bounds)
        if float(objective(trial)) < misfit:
            v.copy_(trial)
            return step, attempt == 0
        if attempt < halvings:
            step *= 0.5
    return step, False


def fwi(observed, initial_velocity_mps, acquisition: Acquisition | None = None, *, n_iterations: int = 20,
        step_mps: float = 30.0, boundary: str = "thin", velocity_range_mps: tuple = (1500.0, 4500.0),
        cutoff_hz: float | None = None, gradient_smoothing_cells: float = 1.0, mute_rows: int = 0,
        depth_power: float = 1.0,
        true_velocity_mps=None, snapshot_every: int = 5, checkpoint_steps: int = 50, device=None,
        line_search: bool = False, progress: bool = True) -> FWIResult:
    """Invert shot gathers for velocity by gradient descent (classical FWI).

    Parameters
    ----------
    observed : array-like
        Observed records ``(n_shots, nt, n_receivers)`` or ``(1, n_shots, nt, n_receivers)``.
    initial_velocity_mps : array-like
        Starting model ``(nz, nx)`` in m/s.
    acquisition : Acquisition, optional
        Survey that recorded ``observed``; default OpenFWI's.
    n_iterations : int
        Number of gradient updates.
    step_mps : float
        Largest velocity change of one update, in m/s (the gradient is scaled
        so that its largest entry moves the model by this much).
    boundary : {"thin", "openfwi"}
        Absorbing boundary of the modelling.
    velocity_range_mps : (float, float)
        The model is clipped to this range after every update.
    cutoff_hz : float, optional
        Low-pass both observed and modelled data to this frequency (use a low
        value first to avoid cycle skipping).
    gradient_smoothing_cells : float
        Gaussian smoothing of the gradient (cells); 0 disables it.
    mute_rows : int
        Rows at the top whose gradient is zeroed (source and receiver imprint).
    depth_power : float
        Precondition the gradient by ``depth ** depth_power`` to compensate the
        geometric spreading that makes deep cells' gradients small (0 disables).
    true_velocity_mps : array-like, optional
        If given, the RMS model error is tracked.
    line_search : bool
        Backtracking: try each update and halve its step (up to four times) until
        the misfit falls; if none does, the model stays and later steps start from
        the reduced size (a successful first try grows it again, up to
        ``step_mps``). Costs one extra forward simulation per try; with it, FWI
        started at the true model stays there. Default off (a fixed step).
    snapshot_every : int
        Keep a copy of the model every this many iterations.
    checkpoint_steps : int
        Time steps per checkpoint segment (memory vs recomputation).
    device : str or torch.device, optional
        Where to compute (default CPU).
    progress : bool
        Show a progress bar with the misfit.

    Returns
    -------
    FWIResult

    Raises
    ------
    ValueError
        If ``observed`` does not match the acquisition, the models have
        different shapes, or a setting is out of range.
    """
    from tqdm.auto import tqdm

    acq = acquisition if acquisition is not None else Acquisition.openfwi()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    d_obs = _observed_records(observed, acq, dev)
    v0 = np.asarray(initial_velocity_mps, dtype=np.float32)
    if v0.ndim != 2:
        raise ValueError(f"initial_velocity_mps has shape {v0.shape}; expected (nz, nx)")
    lo, hi = (float(x) for x in velocity_range_mps)
    if not 0 < lo < hi:
        raise ValueError(f"velocity_range_mps must be (low, high) with 0 < low < high, got {velocity_range_mps}")
    if n_iterations < 1 or step_mps <= 0:
        raise ValueError(f"need n_iterations >= 1 and step_mps > 0, got {n_iterations} and {step_mps}")
    v_true = None
    if true_velocity_mps is not None:
        v_true = np.asarray(true_velocity_mps, dtype=np.float32)
        if v_true.shape != v0.shape:
            raise ValueError(f"true_velocity_mps has shape {v_true.shape}; expected {v0.shape} like the initial model")

    v = torch.tensor(np.clip(v0, lo, hi)[None], device=dev, requires_grad=True)
    kernel = _gaussian_kernel(gradient_smoothing_cells, dev, v.dtype) if gradient_smoothing_cells > 0 else None
    result = FWIResult(velocity_mps=v0.copy(), snapshots=[np.clip(v0, lo, hi)])
    step = float(step_mps)
    bar = tqdm(range(n_iterations), desc="FWI", disable=not progress)
    for it in bar:
        v.grad = None
        loss = fwi_misfit(v, d_obs, acq, boundary=boundary, cutoff_hz=cutoff_hz, boundary_velocity_mps=hi,
                          checkpoint_steps=checkpoint_steps)
        loss.backward()
        if v_true is not None:
            result.model_rmse_mps.append(float(np.sqrt(np.mean((v.detach().cpu().numpy()[0] - v_true) ** 2))))
        with torch.no_grad():
            g = v.grad
            if kernel is not None:
                g = F.conv2d(F.pad(g[:, None], [kernel.shape[-1] // 2] * 4, mode="replicate"), kernel)[:, 0]
            g[:, :mute_rows] = 0.0
            if depth_power:
                depth = torch.arange(g.shape[-2], device=dev, dtype=g.dtype) + 1.0
                g = g * depth[:, None] ** depth_power
            g_max = g.abs().max()
            if g_max > 0 and not line_search:
                v.sub_(g * (step_mps / g_max)).clamp_(lo, hi)
            elif g_max > 0:
                step, first = _backtrack(v, g / g_max, float(loss.detach()), step, (lo, hi),
                                         lambda trial: fwi_misfit(trial, d_obs, acq, boundary=boundary,
                                                                  cutoff_hz=cutoff_hz, boundary_velocity_mps=hi))
                step = min(step_mps, step * 1.25) if first else step
        result.misfit.append(float(loss.detach()))
        if (it + 1) % snapshot_every == 0 or it == n_iterations - 1:
            result.snapshots.append(v.detach().cpu().numpy()[0].copy())
        bar.set_postfix(misfit=f"{result.misfit[-1]:.3e}")
    result.velocity_mps = v.detach().cpu().numpy()[0]
    return result
