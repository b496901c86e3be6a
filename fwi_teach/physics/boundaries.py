"""Absorbing boundaries: the damping sponges that keep waves from reflecting off the model's edges.

Two sponges are available (the solver's docstring, :mod:`fwi_teach.physics.solver`,
compares them):

``"openfwi"``
    OpenFWI's 120-cell sponge with a quadratic profile scaled by the model's
    minimum velocity, as in the code that made OpenFWI's data.
``"thin"``
    A 40-cell sponge with a cubic profile scaled by the maximum velocity and
    the usual PML scaling, 4.3x fewer cells for a 70 x 70 model.

:func:`damping_profile` gives the damping of the boundary cells in 1/s and
:func:`damping_field` spreads it over the padded grid.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["BOUNDARIES", "damping_profile", "damping_field"]

#: Absorbing-boundary widths in cells.
BOUNDARIES = {"openfwi": 120, "thin": 40}
_THIN_REFLECTION = 1e-4  # design reflection coefficient of the thin sponge
_THIN_POWER = 3  # polynomial grading of the thin sponge


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


def damping_field(v_ref: torch.Tensor, nz: int, nx: int, nbc: int, dx_m: float, kind: str) -> torch.Tensor:
    """Damping (N, nz + 2 nbc, nx + 2 nbc) in 1/s. Each cell takes the profile
    value of its larger distance to the interior (corners included)."""
    unit = torch.as_tensor(damping_profile(nbc, dx_m, 1.0, kind), dtype=v_ref.dtype, device=v_ref.device)
    prof = torch.cat([unit.new_zeros(1), unit])  # index 0 = interior

    def dist(n):
        i = torch.arange(n + 2 * nbc, device=v_ref.device)
        return torch.clamp(torch.maximum(nbc - i, i - (n + nbc - 1)), min=0)

    d = torch.maximum(dist(nz)[:, None], dist(nx)[None, :])
    return prof[d][None] * v_ref[:, None, None]
