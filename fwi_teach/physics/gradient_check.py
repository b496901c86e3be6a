"""Gradient checks: the Taylor test that a misfit's gradient is the derivative of the misfit.

For a smooth misfit ``J`` of a model ``m``, a direction ``dm`` and a step ``h``,

.. math:: J(m + h\\,dm) = J(m) + h\\,\\langle g, dm \\rangle + O(h^2)

holds exactly when ``g`` is the gradient of ``J`` at ``m``. :func:`taylor_test`
evaluates both remainders for a sequence of steps:

- ``|J(m + h dm) - J(m)|`` falls as ``h`` (first order: the model moved);
- ``|J(m + h dm) - J(m) - h <g, dm>|`` falls as ``h^2`` (second order) if and only
  if ``g`` is right; with a wrong gradient it falls only as ``h``.

The observed orders are the slopes between consecutive steps on a log-log plot.
:func:`taylor_test` works for any differentiable misfit of a model (the FWI misfit
:func:`fwi_teach.physics.inversion.fwi_misfit`, or any other): pass the function,
and either the gradient to check or nothing, to check autograd's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TaylorTest", "taylor_test"]


@dataclass(frozen=True)
class TaylorTest:
    """Outcome of :func:`taylor_test`.

    Attributes
    ----------
    steps : numpy.ndarray
        The step sizes ``h``, largest first.
    remainder_first : numpy.ndarray
        ``|J(m + h dm) - J(m)|`` for each step (expected to fall as ``h``).
    remainder_second : numpy.ndarray
        ``|J(m + h dm) - J(m) - h <g, dm>|`` for each step (as ``h^2`` if ``g`` is
        the gradient).
    rate_first, rate_second : numpy.ndarray
        Observed orders between consecutive steps,
        ``log(r_i / r_{i+1}) / log(h_i / h_{i+1})``, one fewer than the steps.
    misfit : float
        ``J(m)``.
    directional_derivative : float
        ``<g, dm>``, the slope that the gradient predicts along ``dm``.
    """

    steps: np.ndarray
    remainder_first: np.ndarray
    remainder_second: np.ndarray
    rate_first: np.ndarray
    rate_second: np.ndarray
    misfit: float
    directional_derivative: float

    @property
    def order_first(self) -> float:
        """Median observed order of the first remainder (about 1)."""
        return float(np.median(self.rate_first))

    @property
    def order_second(self) -> float:
        """Median observed order of the second remainder (about 2 for a correct gradient, 1 if not)."""
        return float(np.median(self.rate_second))

    def table(self) -> str:
        """The test as a text table, one row per step (lines of 61 characters)."""
        lines = [f"{'h':>9} {'first remainder':>18} {'order':>6} {'second remainder':>18} {'order':>6}"]
        for i, h in enumerate(self.steps):
            o1 = f"{self.rate_first[i - 1]:6.2f}" if i else " " * 6
            o2 = f"{self.rate_second[i - 1]:6.2f}" if i else " " * 6
            lines.append(f"{h:9.4g} {self.remainder_first[i]:18.4e} {o1} {self.remainder_second[i]:18.4e} {o2}")
        return "\n".join(lines)


def _rates(steps: np.ndarray, remainders: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(remainders[:-1] / remainders[1:]) / np.log(steps[:-1] / steps[1:])


def _scalar(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(f"misfit returned {type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))} "
                         f"{what}; it must return a scalar torch.Tensor")
    if not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"misfit returned {float(value.detach())} {what}; it must be finite")
    return value.reshape(())


def taylor_test(misfit, model, direction, steps=(1.0, 0.5, 0.25, 0.125, 0.0625), *, gradient=None,
                dtype=torch.float64) -> TaylorTest:
    """Check a gradient against its misfit by the two Taylor remainders.

    Parameters
    ----------
    misfit : callable
        ``misfit(m) -> J``: a torch tensor of the model's shape in, a scalar torch
        tensor out; differentiable by autograd when ``gradient`` is not given. For
        FWI, e.g. ``lambda v: fwi_misfit(v, observed, acquisition)``.
    model : array-like or torch.Tensor
        The model ``m`` at which the gradient is checked (e.g. velocity in m/s).
    direction : array-like
        The perturbation ``dm``, same shape and units as ``model``. Choose one along
        which the misfit changes at first order, e.g. the kind of update you expect
        (a smooth bump, the true model minus the start): white noise is nearly
        orthogonal to a smooth gradient, and then ``h <g, dm>`` is too small for the
        test to tell a right gradient from a wrong one.
    steps : sequence of float
        Step sizes ``h`` (at least two, positive, distinct); sorted largest first.
        Halving steps, as the default, make the orders easy to read. Scale them
        to the problem: with a wrong gradient the second remainder falls as
        ``h^2`` while the ``h^2`` term dominates and as ``h`` only once the
        error ``h <g - grad J, dm>`` does, so the smaller steps tell.
    gradient : array-like, optional
        The gradient ``g`` to check, same shape as ``model``. Default: autograd's
        gradient of ``misfit`` at ``model``.
    dtype : torch.dtype
        Precision of the model passed to ``misfit``; float64 (default) keeps
        rounding far below the second remainder for small ``h``.

    Returns
    -------
    TaylorTest
        Remainders, observed orders (``order_first`` ~ 1; ``order_second`` ~ 2 for
        a correct gradient, ~ 1 for a wrong one) and a printable ``table()``.

    Raises
    ------
    ValueError
        Fewer than two steps, a step that is not positive and finite, repeated
        steps, a direction or gradient of the wrong shape, a zero direction, or a
        misfit that does not return a finite scalar tensor.
    """
    if not callable(misfit):
        raise ValueError(f"misfit must be a callable m -> J, got {type(misfit).__name__}")
    h = np.asarray(steps, dtype=np.float64).ravel()
    if h.size < 2 or not np.isfinite(h).all() or (h <= 0).any():
        raise ValueError(f"steps must hold at least two positive finite step sizes, got {list(np.ravel(steps))}")
    h = np.sort(h)[::-1]
    if (np.diff(h) == 0).any():
        raise ValueError(f"steps must be distinct, got {h.tolist()}")
    m = (model.detach() if isinstance(model, torch.Tensor) else torch.as_tensor(np.asarray(model))).to(dtype)
    dm = torch.as_tensor(np.asarray(direction.detach().cpu() if isinstance(direction, torch.Tensor) else direction),
                         dtype=dtype, device=m.device)
    if dm.shape != m.shape:
        raise ValueError(f"direction has shape {tuple(dm.shape)}; expected {tuple(m.shape)} like the model")
    if not bool(torch.isfinite(dm).all()) or not bool((dm != 0).any()):
        raise ValueError("direction must be finite and not zero everywhere")

    if gradient is None:
        mm = m.clone().requires_grad_(True)
        j0 = _scalar(misfit(mm), "at the model")
        if not j0.requires_grad:
            raise ValueError("misfit(m) is not differentiable by autograd; pass gradient= to check a given one")
        (g,) = torch.autograd.grad(j0, mm)
        j0 = float(j0.detach())
    else:
        g = torch.as_tensor(np.asarray(gradient.detach().cpu() if isinstance(gradient, torch.Tensor) else gradient),
                            dtype=dtype, device=m.device)
        if g.shape != m.shape:
            raise ValueError(f"gradient has shape {tuple(g.shape)}; expected {tuple(m.shape)} like the model")
        with torch.no_grad():
            j0 = float(_scalar(misfit(m), "at the model"))
    slope = float((g.to(dtype) * dm).sum())
    if not math.isfinite(slope):
        raise ValueError(f"<gradient, direction> = {slope}; the gradient must be finite")
    values = []
    with torch.no_grad():
        for step in h:
            values.append(float(_scalar(misfit(m + float(step) * dm), f"at step h={step:g}")))
    values = np.asarray(values)
    first = np.abs(values - j0)
    second = np.abs(values - j0 - h * slope)
    return TaylorTest(steps=h, remainder_first=first, remainder_second=second, rate_first=_rates(h, first),
                      rate_second=_rates(h, second), misfit=j0, directional_derivative=slope)
