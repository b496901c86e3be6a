"""Evaluation metrics as OpenFWI reports them: MAE, RMSE and SSIM.

All functions take the *normalised* velocity ``(v - 3000) / 1500``, which lies in
``[-1, 1]``, as numpy arrays or torch tensors of shape ``(N, 1, H, W)``,
``(N, H, W)`` or ``(H, W)``. MAE and RMSE are averaged over every pixel of every
sample; multiplying by 1500 converts them to m/s.

SSIM follows OpenFWI's evaluation code: both maps are rescaled to ``[0, 1]``
(``x / 2 + 0.5``), local statistics come from an 11 x 11 Gaussian window with
sigma 1.5 applied with **zero padding** (``conv2d(padding=5)``), the constants
are ``C1 = 0.01**2`` and ``C2 = 0.03**2`` (data range 1), and the SSIM map is
averaged over all pixels of all samples, borders included. The arithmetic is
done in float64. OpenFWI uses float32, where ``E[x^2] - E[x]^2`` loses digits:
single pixels of flat regions move by up to 2e-3, one sample's mean SSIM by up to
:data:`FLOAT32_SSIM_GAP` ``["sample"]`` and the mean over a test set by up to
``["mean"]`` (bounds checked on realistic maps by ``tests/test_metrics.py``).

How this differs from scikit-image
----------------------------------
``skimage.metrics.structural_similarity(a, b, data_range=1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` uses the same
window (truncate 3.5 -> radius 5 -> 11 x 11) and constants, so on the interior
pixels, where the window lies wholly inside the image, both SSIM maps are the
same to float precision (tested to 1e-9; 3e-12 observed). The difference is at the border:
scikit-image reflect-pads and then drops a 5-pixel frame before averaging (it
averages 60 x 60 of the 70 x 70 pixels), while OpenFWI zero-pads and averages
all 70 x 70 pixels. Zero padding pulls the local means towards 0, which changes
the SSIM of the 1,300 frame pixels. Two effects add up: the frame pixels
count at all (on the test maps their SSIM, reflect-padded, was 0.90 against
0.88 inside), and zero padding raises them further (to 0.94: both maps share
the artificial step to zero, which looks like matching structure). On 40 smooth
layered velocity maps with realistic prediction errors (SSIM 0.73-0.98,
``tests/test_metrics.py``) OpenFWI's value was on average 0.016 higher than
scikit-image's, at most 0.044 apart (the test's tolerance is 0.05). Quote SSIM
with the function behind the figures you compare against: use
:func:`ssim_openfwi` for OpenFWI's tables. Note also that scikit-image computes
in float32 when given float32 images, which alone changes its SSIM map by up
to about 2e-4; pass float64 for a like-for-like comparison.

Identical maps give SSIM exactly 1 with either border rule: with
``mu1 == mu2`` and ``sigma1 == sigma2 == sigma12`` numerator and denominator of
the SSIM formula are the same number, even where zero padding distorts the
local statistics.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["VELOCITY_SCALE_MPS", "FLOAT32_SSIM_GAP", "mae", "rmse", "ssim_openfwi", "gaussian_window", "evaluate_metrics",
           "per_sample_metrics"]

#: Normalised velocity unit in m/s: ``v_mps = 3000 + 1500 * v_normalised``.
VELOCITY_SCALE_MPS = 1500.0
#: Largest difference between OpenFWI's float32 SSIM and this float64 one: per sample and over a set.
FLOAT32_SSIM_GAP = {"sample": 3e-4, "mean": 3e-5}
_C1 = 0.01 ** 2
_C2 = 0.03 ** 2


def _as_maps(x: Any, name: str) -> torch.Tensor:
    """Convert a velocity array to a float64 CPU tensor of shape (N, 1, H, W)."""
    if torch.is_tensor(x):
        t = x.detach().to("cpu", torch.float64)
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} is a {type(x).__name__}; expected a numpy array or torch tensor") from err
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t[:, None]
    elif t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected (N, 1, H, W), (N, H, W) or (H, W)")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one velocity map")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values; check the model output / data loading")
    if t.abs().max() > 10:
        raise ValueError(f"{name} has values up to {t.abs().max().item():.1f}, which look like m/s; metrics "
                         f"expect normalised velocity in [-1, 1]: pass (v_mps - 3000) / 1500")
    return t


def _pair(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_maps(pred, "pred"), _as_maps(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {tuple(p.shape)} but target has shape {tuple(t.shape)}; "
                         f"they must match (same number of samples and map size)")
    return p, t


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error on normalised velocity (multiply by 1500 for m/s).

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Normalised velocity maps, same shape ``(N, 1, H, W)``, ``(N, H, W)`` or ``(H, W)``.

    Returns
    -------
    float
        ``mean(|pred - target|)`` over all pixels of all samples.

    Raises
    ------
    ValueError
        If the shapes differ or are not velocity-map shapes, or values look like m/s.
    """
    p, t = _pair(pred, target)
    return float((p - t).abs().mean())


def rmse(pred: Any, target: Any) -> float:
    """Root mean squared error on normalised velocity, ``sqrt(mean((pred - target)**2))``.

    The mean runs over all pixels of all samples (not a mean of per-sample
    RMSEs). Parameters and errors as in :func:`mae`.
    """
    p, t = _pair(pred, target)
    return float(((p - t) ** 2).mean().sqrt())


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window (outer product of 1-D windows), float64 ``(size, size)``."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def _ssim_map(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    w = window[None, None]
    pad = window.shape[-1] // 2

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, w, padding=pad)  # zero padding, as in OpenFWI

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    den = (mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2)
    return num / den


def ssim_openfwi(pred: Any, target: Any, reduction: str = "mean", batch_size: int = 256):
    """SSIM exactly as OpenFWI computes it (zero-padded 11 x 11 Gaussian window).

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Normalised velocity maps in ``[-1, 1]``, same shape ``(N, 1, H, W)``,
        ``(N, H, W)`` or ``(H, W)``. They are rescaled to ``[0, 1]`` inside.
    reduction : {"mean", "sample", "map"}, default "mean"
        ``"mean"``: one float, the mean over all pixels of all samples (what
        OpenFWI reports). ``"sample"``: numpy array ``(N,)`` of per-sample means.
        ``"map"``: numpy array ``(N, H, W)`` of the SSIM map.
    batch_size : int, default 256
        Samples processed at once (bounds memory on large test sets).

    Returns
    -------
    float or numpy.ndarray
        See ``reduction``. 1 means identical maps.

    Raises
    ------
    ValueError
        For mismatched or invalid shapes, values that look like m/s, or an
        unknown ``reduction``.
    """
    if reduction not in ("mean", "sample", "map"):
        raise ValueError(f"reduction={reduction!r}; expected 'mean', 'sample' or 'map'")
    p, t = _pair(pred, target)
    window = gaussian_window(11, 1.5)
    maps = [_ssim_map(p[i:i + batch_size] / 2 + 0.5, t[i:i + batch_size] / 2 + 0.5, window)[:, 0]
            for i in range(0, p.shape[0], max(1, int(batch_size)))]
    ssim_map = torch.cat(maps)
    if reduction == "mean":
        return float(ssim_map.mean())
    if reduction == "sample":
        return ssim_map.mean(dim=(1, 2)).numpy()
    return ssim_map.numpy()


def evaluate_metrics(pred: Any, target: Any) -> dict[str, float]:
    """All OpenFWI metrics at once.

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Normalised velocity maps, same shape (see :func:`mae`).

    Returns
    -------
    dict
        ``mae``, ``rmse`` and ``ssim`` on normalised velocity (comparable to
        OpenFWI's tables) and ``mae_mps``, ``rmse_mps`` in m/s (x1500).

    Raises
    ------
    ValueError
        As :func:`mae`.
    """
    p, t = _pair(pred, target)
    out = {"mae": mae(p, t), "rmse": rmse(p, t), "ssim": ssim_openfwi(p, t)}
    out["mae_mps"] = out["mae"] * VELOCITY_SCALE_MPS
    out["rmse_mps"] = out["rmse"] * VELOCITY_SCALE_MPS
    return out


def per_sample_metrics(pred: Any, target: Any) -> dict[str, np.ndarray]:
    """MAE, RMSE and SSIM of every sample (normalised velocity), for paired statistics.

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Normalised velocity maps, same shape ``(N, 1, H, W)`` or ``(N, H, W)``.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``ssim``: float64 arrays of shape ``(N,)``. Their means over
        samples equal :func:`evaluate_metrics`'s MAE and SSIM (RMSE: the root of the
        mean of the squares).

    Raises
    ------
    ValueError
        As :func:`mae`.
    """
    p, t = _pair(pred, target)
    if p.dim() == 2:
        p, t = p[None], t[None]
    err = (p - t).double().flatten(1)
    return {"mae": err.abs().mean(1).numpy(), "rmse": err.pow(2).mean(1).sqrt().numpy(),
            "ssim": ssim_openfwi(p, t, reduction="sample").astype(np.float64)}

