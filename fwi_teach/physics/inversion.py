"""Classical full-waveform inversion: gradient descent on the wave equation.

This is the physics-based method that deep-learning FWI replaces. Given
observed shot gathers ``d_obs`` and a starting velocity, :func:`fwi` minimises

.. math:: J(v) = \\tfrac12 \\lVert L\\,(F(v) - d_{obs}) \\rVert^2 / \\lVert L\\,d_{obs} \\rVert^2

where ``F`` is :func:`fwi_teach.physics.simulate` and ``L`` an optional
low-pass filter (frequency continuation against cycle skipping). The gradient
comes from autograd through the time stepping, with checkpointing to bound
memory. Each update is steepest descent scaled so that the largest change is
``step_mps``; the gradient is smoothed and muted near the sources, and the
velocity is kept inside a physical range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .solver import simulate
from .survey import Acquisition

__all__ = ["FWIResult", "fwi", "lowpass", "smooth_velocity"]


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


def fwi(observed, initial_velocity_mps, acquisition: Acquisition | None = None, *, n_iterations: int = 20,
        step_mps: float = 30.0, boundary: str = "thin", velocity_range_mps: tuple = (1500.0, 4500.0),
        cutoff_hz: float | None = None, gradient_smoothing_cells: float = 1.0, mute_rows: int = 0,
        depth_power: float = 1.0,
        true_velocity_mps=None, snapshot_every: int = 5, checkpoint_steps: int = 50, device=None,
        progress: bool = True) -> FWIResult:
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
    d_obs = torch.as_tensor(np.asarray(observed, dtype=np.float32), device=dev)
    if d_obs.ndim == 3:
        d_obs = d_obs[None]
    expected = (1, acq.n_shots, acq.nt, acq.n_receivers)
    if tuple(d_obs.shape) != expected:
        raise ValueError(f"observed records have shape {tuple(d_obs.shape)}; expected {expected[1:]} for this acquisition")
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

    def filt(d):
        return d if cutoff_hz is None else lowpass(d, acq.dt_s, cutoff_hz)

    target = filt(d_obs)
    scale = (target**2).sum()
    v = torch.tensor(np.clip(v0, lo, hi)[None], device=dev, requires_grad=True)
    kernel = _gaussian_kernel(gradient_smoothing_cells, dev, v.dtype) if gradient_smoothing_cells > 0 else None
    result = FWIResult(velocity_mps=v0.copy(), snapshots=[np.clip(v0, lo, hi)])
    bar = tqdm(range(n_iterations), desc="FWI", disable=not progress)
    for it in bar:
        v.grad = None
        synthetic = simulate(v, acq, boundary=boundary, checkpoint_steps=checkpoint_steps,
                             boundary_velocity_mps=hi)
        loss = 0.5 * ((filt(synthetic) - target) ** 2).sum() / scale
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
            if g_max > 0:
                v.sub_(g * (step_mps / g_max)).clamp_(lo, hi)
        result.misfit.append(float(loss.detach()))
        if (it + 1) % snapshot_every == 0 or it == n_iterations - 1:
            result.snapshots.append(v.detach().cpu().numpy()[0].copy())
        bar.set_postfix(misfit=f"{result.misfit[-1]:.3e}")
    result.velocity_mps = v.detach().cpu().numpy()[0]
    return result
