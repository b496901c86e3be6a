"""The lean LoRA training path: merged-weight convolutions and frozen batch norms that save little.

The textbook LoRA layer computes ``base(x) + scaling * B(A(x))``. Autograd then keeps,
for backward, the base convolution's input (for a weight gradient nobody needs), the
adapter branch's own intermediate ``A(x)`` and, under autocast, a second cast copy of
the input; a frozen batch norm computed by ``F.batch_norm`` keeps its input as well.
So a textbook LoRA step stores *more* activations than full fine-tuning, although it
trains 5 % of the weights, and it runs three convolutions per layer where full
fine-tuning runs one. This module computes the same function with less:

:func:`merged_lora_conv`
    One convolution with the merged weight ``W + scaling * B A``, formed on the fly
    (a weight-sized matrix product, cheap next to a convolution over a batch) and
    differentiated by autograd. Backward is one ``convolution_backward`` call, as in
    full fine-tuning, plus two weight-sized products for the gradients of ``A`` and
    ``B``. Autograd keeps the layer's input (usually the previous layer's saved
    output anyway) and the merged weight: weight-sized, once per step, not per
    sample. Forming the gradient of the merged weight costs what full fine-tuning's
    weight gradient costs; computing only the rank-``r`` parts instead needs more,
    smaller calls, which lose on small networks (``benchmarks/training.py`` measures
    the step times).
:func:`frozen_batch_norm`
    A batch norm with frozen statistics and frozen scale is the per-channel affine map
    ``x * s + t``. Written as one ``addcmul``, autograd keeps only ``s`` (one number per
    channel), not the input.

With both, each InversionNet block keeps one activation (its LeakyReLU output) where
full fine-tuning keeps two (that output and the batch norm's input).
``benchmarks/memory.py`` prints the account. Outputs equal the textbook form up to
float rounding (``tests/test_lora_lean.py`` compares them in float64), and the adapter
weights are the same tensors, so peft's adapter files do not change.

Under autocast the convolution runs in the autocast dtype, as ``nn.Conv2d`` would;
the merged weight is formed in the parameters' dtype, then cast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["merged_lora_conv", "lean_conv_supported", "frozen_batch_norm", "lean_batch_norm_supported"]


def lean_conv_supported(base: nn.Module, dropout: nn.Module | None = None) -> bool:
    """Whether :func:`merged_lora_conv` can stand in for ``base(x) + scaling * B(A(dropout(x)))``.

    It can for plain ``nn.Conv2d`` / ``nn.ConvTranspose2d`` layers (groups 1, zero
    padding) when the adapter branch has no dropout (dropout makes the branch see
    another input than the base).
    """
    if type(base) not in (nn.Conv2d, nn.ConvTranspose2d):
        return False
    if base.groups != 1 or getattr(base, "padding_mode", "zeros") != "zeros":
        return False
    return dropout is None or isinstance(dropout, nn.Identity) or (isinstance(dropout, nn.Dropout) and dropout.p == 0)


def merged_weight(base: nn.Module, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``W + scaling * B A`` in the base weight's layout (differentiable in ``lora_a`` and ``lora_b``).

    Conv2d: ``W (out, in, kh, kw)``, ``A (r, in, kh, kw)``, ``B (out, r, 1, 1)``.
    ConvTranspose2d: ``W (in, out, kh, kw)``, ``A (in, r, kh, kw)``, ``B (r, out, 1, 1)``.
    """
    w = base.weight
    if type(base) is nn.ConvTranspose2d:
        return w + torch.einsum("irhw,ro->iohw", lora_a, lora_b[:, :, 0, 0]) * scaling
    return torch.addmm(w.flatten(1), lora_b.flatten(1), lora_a.flatten(1), alpha=scaling).view_as(w)


def merged_lora_conv(x: torch.Tensor, base: nn.Module, lora_a: torch.Tensor, lora_b: torch.Tensor,
                     scaling: float) -> torch.Tensor:
    """``base(x) + scaling * B(A(x))`` computed as one convolution with the merged weight.

    Parameters
    ----------
    x : torch.Tensor
        Input ``(N, C_in, H, W)``.
    base : nn.Conv2d or nn.ConvTranspose2d
        The frozen base layer (its weight and bias are used as they are; a bias that
        requires grad gets its gradient).
    lora_a, lora_b : torch.Tensor
        Adapter weights, laid out as peft and :mod:`fwi_teach.models.lora` store them (see
        :func:`merged_weight`).
    scaling : float
        ``alpha / rank``.

    Raises
    ------
    ValueError
        If ``base`` is not a layer :func:`lean_conv_supported` accepts.
    """
    if not lean_conv_supported(base):
        raise ValueError(f"merged_lora_conv supports plain nn.Conv2d / nn.ConvTranspose2d with groups=1 and zero "
                         f"padding, not {base!r}; use the textbook form base(x) + scaling * B(A(x)) instead")
    with torch.autocast(x.device.type, enabled=False):  # merge in the parameters' dtype; the conv casts
        w = merged_weight(base, lora_a, lora_b, float(scaling))
    if type(base) is nn.ConvTranspose2d:
        return F.conv_transpose2d(x, w, base.bias, base.stride, base.padding, base.output_padding, 1, base.dilation)
    return F.conv2d(x, w, base.bias, base.stride, base.padding, base.dilation)


def lean_batch_norm_supported(bn: nn.Module) -> bool:
    """Whether :func:`frozen_batch_norm` computes ``bn`` (eval mode, running statistics, frozen scale)."""
    return (isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.track_running_stats
            and bn.running_mean is not None and (bn.weight is None or not bn.weight.requires_grad))


def frozen_batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """A frozen batch norm as the per-channel affine map ``x * s + t`` (autograd keeps ``s`` only).

    ``s = weight / sqrt(running_var + eps)`` and ``t = bias - running_mean * s``. A
    trainable ``bias`` (LoRA with ``bias="all"``) still gets its gradient, which needs
    no saved input. The map is applied in ``x``'s dtype, as ``F.batch_norm`` returns it.

    Raises
    ------
    ValueError
        If ``bn`` is in training mode, has no running statistics, or trains its scale.
    """
    if not lean_batch_norm_supported(bn):
        raise ValueError("frozen_batch_norm needs a BatchNorm2d in eval mode with running statistics and a "
                         "frozen weight; call F.batch_norm (or the module itself) otherwise")
    trained_bias = bn.bias is not None and bn.bias.requires_grad
    with torch.no_grad():
        dtype = torch.promote_types(bn.running_var.dtype, torch.float32)  # at least float32; float64 stays
        s = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
        if bn.weight is not None:
            s = s * bn.weight.to(dtype)
        shift = -bn.running_mean.to(dtype) * s
        if bn.bias is not None and not trained_bias:
            shift = shift + bn.bias.to(dtype)
    shape = (1, -1, 1, 1)
    out = torch.addcmul(shift.to(x.dtype).view(shape), x, s.to(x.dtype).view(shape))
    if trained_bias:
        out = out + bn.bias.to(x.dtype).view(shape)
    return out
