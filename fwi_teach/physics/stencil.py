"""The finite-difference scheme: one 4th-order stencil and the time loops built on it.

The update of every engine is

.. math:: p^{+} = a\\,p - b\\,p^{-} + r'\\,(S_1 + c\\,S_2)

where :math:`S_1` and :math:`S_2` sum each cell's first and second neighbours
(in the order up, down, left, right), :math:`c = c_2 / c_1` is the ratio of the
stencil's coefficients (:data:`FD_COEFFS`), and :math:`a, b, r'` hold the
velocity and the damping (:func:`update_coefficients`). :func:`neighbour_sum`
is the one implementation of the stencil; three time loops use it:

- :func:`segment_autograd`: differentiable, through :class:`NeighbourSum`, whose
  backward is the stencil itself (the stencil with zero boundary values is
  symmetric), so autograd keeps no slice buffers per step;
- :func:`segment_in_place`: no gradients, three rotating buffers updated in
  place (no allocation per step);
- :func:`step_fused`: one step as a pure function, for ``torch.compile``
  (:mod:`fwi_teach.physics.engines`).

The C kernel (:mod:`fwi_teach.physics.native`) computes the same update in C.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["FD_COEFFS", "STABILITY_LIMIT", "HALO", "neighbour_sum", "NeighbourSum", "update_coefficients",
           "segment_autograd", "segment_in_place", "step_fused"]

#: Second-derivative stencil, 4th order: centre, first and second neighbour.
FD_COEFFS = (-5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0)
#: Ratio ``c2 / c1`` of the second-neighbour to the first-neighbour coefficient.
NEIGHBOUR_RATIO = FD_COEFFS[2] / FD_COEFFS[1]
#: Largest stable Courant number ``v dt / dx`` of this scheme in 2-D: sqrt(3/8).
STABILITY_LIMIT = math.sqrt(3.0 / 8.0)
#: Zero cells around a field that the 4th-order stencil reads.
HALO = 2


def neighbour_sum(q: torch.Tensor, out: torch.Tensor | None = None, work: torch.Tensor | None = None) -> torch.Tensor:
    """``S1 + (c2 / c1) S2`` of every interior cell of a halo-padded field.

    Parameters
    ----------
    q : torch.Tensor
        Field ``(..., nz + 4, nx + 4)`` with :data:`HALO` cells of padding on each side.
    out, work : torch.Tensor, optional
        Buffers of shape ``(..., nz, nx)``. With ``out`` the sums are computed in
        place (``out`` holds the result, ``work`` the second-neighbour sum); without,
        out of place (what autograd and ``torch.compile`` need).

    Returns
    -------
    torch.Tensor
        ``(..., nz, nx)``; ``out`` when given. Both modes add in the same order,
        ``((up + down) + left) + right``, so their results are identical.
    """
    h = HALO
    nz, nx = q.shape[-2] - 2 * h, q.shape[-1] - 2 * h

    def shifted(dz, dx):
        return q[..., h + dz:h + dz + nz, h + dx:h + dx + nx]

    if out is None:
        s1 = shifted(-1, 0) + shifted(1, 0) + shifted(0, -1) + shifted(0, 1)
        s2 = shifted(-2, 0) + shifted(2, 0) + shifted(0, -2) + shifted(0, 2)
        return torch.add(s1, s2, alpha=NEIGHBOUR_RATIO)
    work = torch.empty_like(out) if work is None else work
    torch.add(shifted(-1, 0), shifted(1, 0), out=out).add_(shifted(0, -1)).add_(shifted(0, 1))
    torch.add(shifted(-2, 0), shifted(2, 0), out=work).add_(shifted(0, -2)).add_(shifted(0, 2))
    return out.add_(work, alpha=NEIGHBOUR_RATIO)


class NeighbourSum(torch.autograd.Function):
    """:func:`neighbour_sum` of an unpadded field (zero outside), with the stencil as its own adjoint.

    The stencil with zero boundary values is a symmetric matrix, so the backward
    pass applies it to the incoming gradient; this avoids autograd's eight
    slice-backward buffers per time step.
    """

    @staticmethod
    def forward(ctx, p):
        return neighbour_sum(F.pad(p, (HALO,) * 4))

    @staticmethod
    def backward(ctx, grad):
        return neighbour_sum(F.pad(grad, (HALO,) * 4))


def update_coefficients(vp: torch.Tensor, damping: torch.Tensor, dt_s: float, dx_m: float, kind: str):
    """Coefficients ``(a, b, r')`` of ``p+ = a p - b p- + r' (S1 + c S2)``.

    Parameters
    ----------
    vp : torch.Tensor
        Velocity in m/s on the padded grid.
    damping : torch.Tensor
        Damping in 1/s on the same grid (:func:`fwi_teach.physics.boundaries.damping_field`).
    dt_s, dx_m : float
        Time step in seconds and grid spacing in metres.
    kind : {"openfwi", "thin"}
        ``openfwi``: OpenFWI's one-sided damping term; ``thin``: a centred
        damping term, stable for any damping.
    """
    r = (vp * (dt_s / dx_m)) ** 2
    k = damping * dt_s
    c0, c1 = 2.0 * FD_COEFFS[0], FD_COEFFS[1]
    if kind == "openfwi":
        return 2.0 - k + c0 * r, 1.0 - k, c1 * r
    scale = 1.0 / (1.0 + 0.5 * k)
    return (2.0 + c0 * r) * scale, (1.0 - 0.5 * k) * scale, c1 * r * scale


def segment_autograd(pp, p, coef_a, coef_b, coef_r, src_amp, wav, src_index, rec_idx):
    """Advance ``len(wav)`` time steps with autograd (fields without halo).

    Returns the last two fields and the records of these steps, (N, S, steps, R).
    """
    n, s, hh, ww = p.shape
    records = []
    for w_t in wav:
        new = torch.addcmul(coef_a * p - coef_b * pp, coef_r, NeighbourSum.apply(p))
        flat = new.view(n, s, hh * ww)
        flat.index_put_(src_index, src_amp * w_t, accumulate=True)
        records.append(flat.index_select(2, rec_idx))
        pp, p = p, new
    return pp, p, torch.stack(records, dim=2)


def segment_in_place(pp, p, coef_a, coef_b, coef_r, src_amp, wav, src_index, rec_idx):
    """:func:`segment_autograd` without autograd, on halo-padded fields: rotates three
    preallocated buffers and updates them in place (no allocation per step)."""
    h = HALO
    n, s, hh, ww = p.shape
    nxt = torch.zeros_like(p)
    total = torch.empty_like(p[..., h:-h, h:-h])
    work = torch.empty_like(total)
    neg_b = -coef_b
    records = torch.empty((n, s, len(wav), rec_idx.numel()), dtype=p.dtype, device=p.device)
    for it, w_t in enumerate(wav):
        neighbour_sum(p, out=total, work=work)
        inner = nxt[..., h:-h, h:-h]
        torch.mul(coef_a, p[..., h:-h, h:-h], out=inner)
        inner.addcmul_(neg_b, pp[..., h:-h, h:-h]).addcmul_(coef_r, total)
        flat = nxt.view(n, s, hh * ww)
        flat.index_put_(src_index, src_amp * w_t, accumulate=True)
        records[:, :, it] = flat[:, :, rec_idx]
        pp, p, nxt = p, nxt, pp
    return pp, p, records


def step_fused(p, pp, coef_a, coef_b, coef_r):
    """One time step as a pure function of halo-padded fields, for ``torch.compile``."""
    h = HALO
    new = coef_a * p[..., h:-h, h:-h] - coef_b * pp[..., h:-h, h:-h] + coef_r * neighbour_sum(p)
    return F.pad(new, (h, h, h, h))
