"""Normalisation of seismic records and velocity models, as OpenFWI trains on them.

Seismic records span several orders of magnitude (the direct wave is far
stronger than deep reflections), so OpenFWI compresses them first:

.. math:: y = \\operatorname{sign}(x) \\log(1 + |x|)

and then maps ``y`` linearly onto ``[-1, 1]`` using the same transform of the
data set's published raw bounds ``data_min`` / ``data_max``
(:data:`DATA_BOUNDS`). Velocities map linearly from ``[1500, 4500]`` m/s onto
``[-1, 1]`` with ``(v - 3000) / 1500``.

Every function here returns a new array or tensor and never modifies its input
(OpenFWI's reference loader normalised cached label arrays in place, which
corrupts them the second time a sample is read). Numpy in gives numpy out,
torch in gives torch out, and float32 stays float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "DATA_BOUNDS",
    "VELOCITY_MIN_MPS",
    "VELOCITY_MAX_MPS",
    "SeismicTransform",
    "log_transform",
    "inverse_log_transform",
    "normalize_velocity",
    "denormalize_velocity",
    "seismic_transform",
]

#: Published raw seismic bounds ``(data_min, data_max)`` of each OpenFWI family
#: (``dataset_config.json`` of lanl/OpenFWI), used for min-max normalisation.
DATA_BOUNDS: dict[str, tuple[float, float]] = {
    "flatvel-a": (-26.95, 52.77),
    "flatvel-b": (-27.17, 56.05),
    "curvevel-a": (-27.11, 55.10),
    "curvevel-b": (-29.04, 57.03),
    "flatfault-a": (-26.10, 50.86),
    "flatfault-b": (-24.86, 50.28),
    "curvefault-a": (-26.48, 52.32),
    "curvefault-b": (-24.93, 50.98),
    "style-a": (-24.96, 48.93),
    "style-b": (-23.76, 46.01),
}

#: Velocity range of every OpenFWI family in m/s; it maps onto [-1, 1].
VELOCITY_MIN_MPS = 1500.0
VELOCITY_MAX_MPS = 4500.0
_V_CENTRE_MPS = 0.5 * (VELOCITY_MIN_MPS + VELOCITY_MAX_MPS)  # 3000
_V_HALF_RANGE_MPS = 0.5 * (VELOCITY_MAX_MPS - VELOCITY_MIN_MPS)  # 1500


def _as_float(x):
    """Return ``x`` as a floating numpy array or tensor without copying when possible."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    arr = np.asarray(x)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32)


def log_transform(x):
    """``sign(x) * log(1 + |x|)``, elementwise, out of place.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor or float
        Raw seismic amplitudes.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type and floating dtype as ``x`` (integers become float32).
    """
    x = _as_float(x)
    if isinstance(x, torch.Tensor):
        return torch.sign(x) * torch.log1p(torch.abs(x))
    return np.sign(x) * np.log1p(np.abs(x))


def inverse_log_transform(y):
    """Inverse of :func:`log_transform`: ``sign(y) * (exp(|y|) - 1)``."""
    y = _as_float(y)
    if isinstance(y, torch.Tensor):
        return torch.sign(y) * torch.expm1(torch.abs(y))
    return np.sign(y) * np.expm1(np.abs(y))


class SeismicTransform:
    """Log compression followed by min-max scaling to ``[-1, 1]``.

    ``forward(x) = 2 (L(x) - L(data_min)) / (L(data_max) - L(data_min)) - 1``
    with ``L(x) = sign(x) log(1 + |x|)``; :meth:`inverse` undoes it exactly
    (up to floating-point rounding). Values outside the bounds map outside
    ``[-1, 1]``; nothing is clipped.

    Parameters
    ----------
    data_min, data_max : float
        Raw (not log-transformed) amplitude bounds of the data set, for example
        ``DATA_BOUNDS["flatvel-a"]``.

    Raises
    ------
    ValueError
        If a bound is not finite or ``data_min >= data_max``.

    Examples
    --------
    >>> t = SeismicTransform(*DATA_BOUNDS["flatvel-a"])
    >>> float(t(np.float32(52.77)))
    1.0
    """

    def __init__(self, data_min: float, data_max: float):
        data_min, data_max = float(data_min), float(data_max)
        if not (math.isfinite(data_min) and math.isfinite(data_max)):
            raise ValueError(f"seismic bounds must be finite numbers, got data_min={data_min}, data_max={data_max}")
        if data_min >= data_max:
            raise ValueError(
                f"seismic bounds need data_min < data_max, got data_min={data_min}, data_max={data_max}; "
                "swap them or pass the data set's observed range"
            )
        self.data_min = data_min
        self.data_max = data_max
        # Python floats keep float32 arrays float32 under numpy's promotion rules.
        self.log_min = math.copysign(math.log1p(abs(data_min)), data_min)
        self.log_max = math.copysign(math.log1p(abs(data_max)), data_max)

    @classmethod
    def for_family(cls, family: str) -> "SeismicTransform":
        """Transform with the published bounds of an OpenFWI family (any spelling)."""
        from .families import canonical_family

        return cls(*DATA_BOUNDS[canonical_family(family)])

    def forward(self, x):
        """Normalise raw amplitudes to about ``[-1, 1]`` (new array, input untouched)."""
        span = self.log_max - self.log_min
        return (log_transform(x) - self.log_min) / span * 2.0 - 1.0

    __call__ = forward

    def inverse(self, y):
        """Map normalised values back to raw amplitudes (new array)."""
        y = _as_float(y)
        span = self.log_max - self.log_min
        return inverse_log_transform((y + 1.0) / 2.0 * span + self.log_min)

    def __repr__(self) -> str:
        return f"SeismicTransform(data_min={self.data_min!r}, data_max={self.data_max!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SeismicTransform) and (self.data_min, self.data_max) == (other.data_min, other.data_max)

    def __hash__(self) -> int:
        return hash((self.data_min, self.data_max))


def seismic_transform(family: str) -> SeismicTransform:
    """Shorthand for :meth:`SeismicTransform.for_family`."""
    return SeismicTransform.for_family(family)


def normalize_velocity(velocity_mps):
    """Map velocities in m/s onto ``[-1, 1]``: ``(v - 3000) / 1500`` (out of place).

    Parameters
    ----------
    velocity_mps : numpy.ndarray, torch.Tensor or float
        Velocity in m/s, nominally within [1500, 4500].

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Normalised velocity, same type as the input.
    """
    return (_as_float(velocity_mps) - _V_CENTRE_MPS) / _V_HALF_RANGE_MPS


def denormalize_velocity(velocity_norm):
    """Inverse of :func:`normalize_velocity`: ``v = 1500 y + 3000`` in m/s."""
    return _as_float(velocity_norm) * _V_HALF_RANGE_MPS + _V_CENTRE_MPS
