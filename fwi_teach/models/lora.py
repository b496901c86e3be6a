"""LoRA from scratch: low-rank adapters for the convolutions of a pretrained network.

LoRA freezes a pretrained weight ``W`` and learns a low-rank update
``W + (alpha / rank) * B A``. For a convolution the down-projection ``A`` is a
convolution with the base layer's kernel, stride and padding but only ``rank``
output channels, and the up-projection ``B`` is a 1 x 1 layer from ``rank`` to
the base layer's output channels, so ``B(A(x))`` is again a convolution of the
same shape as the base, with weight ``delta = scaling * B @ A`` (contracted over
the rank axis). ``B`` starts at zero, so an adapted network first computes
exactly what the pretrained one does. Here ``A`` and ``B`` are layers of the
same type as the base (Conv2d, or ConvTranspose2d for the decoder), as in peft.

Two implementations that compute the same thing:

* :func:`apply_lora` with :class:`LoRAConv2d` / :class:`LoRAConvTranspose2d`:
  about a hundred lines to read in a lesson; adapter weights ``lora_A`` and
  ``lora_B`` sit next to the frozen ``base`` layer.
* :func:`~fwi_teach.models.peft_bridge.apply_peft_lora` (:mod:`fwi_teach.models.peft_bridge`):
  Hugging Face peft. peft 0.21 has no LoRA layer for
  ``nn.ConvTranspose2d``, so a small custom layer (:func:`peft_conv_transpose_class`)
  is registered through peft's experimental ``LoraConfig._register_custom_module``.
  That registration is not saved with the adapter: load with
  :func:`load_peft_adapter`, which registers it again.

The computation (``LoraSettings.lean``)
---------------------------------------
Written as above, a LoRA layer runs three convolutions and keeps more activations
for backward than full fine-tuning does. By default (``lean=True``) both
implementations compute the same function as one convolution with the merged
weight ``W + scaling * B A`` and a frozen batch norm as one affine map
(:mod:`fwi_teach.models.lean`): fewer saved activations than full fine-tuning and no
slower per step. ``lean=False`` keeps the textbook form, for teaching and comparison.

Batch normalisation (``LoraSettings.train_batchnorm``)
------------------------------------------------------
``False`` (default): BN scale/shift are frozen and every BatchNorm2d becomes a
:class:`FrozenStatsBatchNorm2d`, which stays in eval mode even under
``model.train()``: it normalises with the pretrained running statistics and
never updates them. The adapted network is then exactly "pretrained network +
low-rank deltas", and the adapter file alone reproduces it.
``True``: BN scale/shift are trained and running statistics are updated in
training mode (usual BatchNorm behaviour); they become part of the adapter
(peft: ``modules_to_save``; from scratch: :func:`lora_state_dict`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

from .lean import frozen_batch_norm, lean_batch_norm_supported, lean_conv_supported, merged_lora_conv
from .inversionnet import count_parameters

__all__ = [
    "LoRAConv2d", "LoRAConvTranspose2d", "FrozenStatsBatchNorm2d", "LoraSettings", "apply_lora",
    "set_lora_train_mode", "merge_lora", "lora_state_dict", "trainable_parameter_report",
]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _check_rank_dropout(rank, dropout) -> None:
    if int(rank) < 1:
        raise ValueError(f"rank={rank}; expected a positive integer such as 4, 8 or 16")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}; expected a probability in [0, 1)")


class _LoRAConvBase(nn.Module):
    """Shared logic of the from-scratch LoRA conv layers (frozen ``base`` + ``lora_A`` + ``lora_B``)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float, base_type: type,
                 lean: bool = True):
        super().__init__()
        if type(base) is not base_type:
            raise TypeError(f"base is a {type(base).__name__}; {type(self).__name__} wraps an nn.{base_type.__name__}")
        _check_rank_dropout(rank, dropout)
        if base.groups != 1:
            raise ValueError(f"base has groups={base.groups}; LoRA here supports only groups=1 convolutions")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha, self.scaling = int(rank), float(alpha), float(alpha) / int(rank)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.lean = bool(lean)

    def _init_adapters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # PyTorch's default conv init
        nn.init.zeros_(self.lora_B.weight)  # B = 0: output equals the base at initialisation

    def delta_weight(self) -> torch.Tensor:
        """Weight update ``scaling * B A`` in the base layer's weight layout."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        if self.lean and lean_conv_supported(self.base, self.dropout):
            # The same function, as one merged-weight convolution that saves less (fwi_teach.models.lean).
            return merged_lora_conv(x, self.base, self.lora_A.weight, self.lora_B.weight, self.scaling)
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling  # the textbook form

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the low-rank delta into the base weight (faster inference, same output)."""
        if self.merged:
            raise RuntimeError("adapter already merged; call unmerge() first")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the delta again, restoring the pretrained base weight (up to rounding)."""
        if not self.merged:
            raise RuntimeError("adapter is not merged; nothing to unmerge")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}, lean={self.lean}"


class LoRAConv2d(_LoRAConvBase):
    """LoRA around a frozen ``nn.Conv2d`` (weight layout ``(out, in, kh, kw)``).

    Parameters
    ----------
    base : nn.Conv2d
        Pretrained layer; frozen in place.
    rank : int
        Rank r of the update; ``lora_A`` has r output channels.
    alpha : float
        The update is scaled by ``alpha / rank``.
    dropout : float, default 0.0
        Dropout applied to the input of the adapter branch only.
    lean : bool, default True
        Compute the layer as one convolution with the merged weight, which keeps less for
        backward (:func:`fwi_teach.models.lean.merged_lora_conv`); ``False`` is the textbook
        two-branch form ``base(x) + scaling * B(A(x))``. Same outputs up to rounding;
        with dropout the textbook form is used.
    """

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float, dropout: float = 0.0, lean: bool = True):
        super().__init__(base, rank, alpha, dropout, nn.Conv2d, lean)
        self.lora_A = nn.Conv2d(base.in_channels, self.rank, base.kernel_size, base.stride, base.padding,
                                dilation=base.dilation, padding_mode=base.padding_mode, bias=False)
        self.lora_B = nn.Conv2d(self.rank, base.out_channels, 1, bias=False)
        self._init_adapters()

    def delta_weight(self) -> torch.Tensor:
        # B(A(x)): out[o] = sum_r B[o, r] (A[r] * x), so delta[o, i] = sum_r B[o, r] A[r, i].
        return torch.einsum("or,rihw->oihw", self.lora_B.weight[:, :, 0, 0], self.lora_A.weight) * self.scaling


class LoRAConvTranspose2d(_LoRAConvBase):
    """LoRA around a frozen ``nn.ConvTranspose2d`` (weight layout ``(in, out, kh, kw)``).

    ``lora_A`` is a transposed convolution ``in -> rank`` with the base kernel,
    stride, padding and output padding; ``lora_B`` a 1 x 1 transposed convolution
    ``rank -> out`` (weight ``(rank, out, 1, 1)``). Parameters as :class:`LoRAConv2d`.
    """

    def __init__(self, base: nn.ConvTranspose2d, rank: int, alpha: float, dropout: float = 0.0, lean: bool = True):
        super().__init__(base, rank, alpha, dropout, nn.ConvTranspose2d, lean)
        self.lora_A = nn.ConvTranspose2d(base.in_channels, self.rank, base.kernel_size, base.stride,
                                         base.padding, output_padding=base.output_padding,
                                         dilation=base.dilation, bias=False)
        self.lora_B = nn.ConvTranspose2d(self.rank, base.out_channels, 1, bias=False)
        self._init_adapters()

    def delta_weight(self) -> torch.Tensor:
        # Transposed layout: delta[i, o] = sum_r A[i, r] B[r, o], a matrix product over the rank axis.
        return torch.einsum("irhw,ro->iohw", self.lora_A.weight, self.lora_B.weight[:, :, 0, 0]) * self.scaling


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its stored running statistics (stays in eval mode).

    With a frozen scale it is computed as the affine map ``x * s + t``
    (:func:`fwi_teach.models.lean.frozen_batch_norm`), so autograd keeps no copy of its
    input; set the attribute ``lean = False`` for ``F.batch_norm`` (which keeps one).
    """

    lean = True

    def train(self, mode: bool = True) -> "FrozenStatsBatchNorm2d":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lean and lean_batch_norm_supported(self):
            return frozen_batch_norm(x, self)
        return super().forward(x)


@dataclass
class LoraSettings:
    """What to adapt and how.

    Attributes
    ----------
    rank : int, default 16
    alpha : float, default 16.0
        Scaling is ``alpha / rank`` (1.0 at the defaults).
    dropout : float, default 0.0
    target : str or sequence of str, default "all"
        ``"all"`` (every Conv2d and ConvTranspose2d), ``"encoder"`` (``convblock*``),
        ``"decoder"`` (``deconv*``), or names of blocks (``"convblock8"``) or of
        conv modules (``"deconv1_1.layers.0"``).
    train_batchnorm : bool, default False
        See the module docstring.
    lean : bool, default True
        The memory-lean computation (:mod:`fwi_teach.models.lean`): merged-weight
        convolutions and frozen batch norms that keep no copy of their input. ``False``
        is the textbook form (for teaching and for comparison); the outputs agree to
        float rounding and the adapter weights are the same.
    bias : {"none", "all", "lora_only"}, default "none"
        ``"all"``: every parameter called ``bias`` is trained (conv biases and BN
        shifts); ``"lora_only"``: the biases of the adapted convolutions.
    """

    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    target: Union[str, Sequence[str]] = "all"
    train_batchnorm: bool = False
    bias: str = "none"
    lean: bool = True

    def __post_init__(self):
        _check_rank_dropout(self.rank, self.dropout)
        if not self.alpha > 0:
            raise ValueError(f"alpha={self.alpha}; expected a positive number (the scaling is alpha / rank)")
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"bias={self.bias!r}; expected 'none', 'all' or 'lora_only'")
        if isinstance(self.target, str) and self.target not in ("all", "encoder", "decoder"):
            self.target = (self.target,)


def _target_names(model: nn.Module, target) -> list[str]:
    """Full names of the Conv2d / ConvTranspose2d modules selected by ``target``."""
    convs = [n for n, m in model.named_modules() if type(m) in _CONVS and ".lora_" not in n
             and not n.endswith(".base") and "base_layer" not in n]
    if target == "all":
        chosen = convs
    elif target in ("encoder", "decoder"):
        prefix = "convblock" if target == "encoder" else "deconv"
        chosen = [n for n in convs if n.startswith(prefix)]
    else:
        chosen = []
        for entry in target:
            hits = [n for n in convs if n == entry or n.startswith(entry + ".")]
            if not hits:
                blocks = sorted({n.split(".")[0] for n in convs})
                raise ValueError(f"LoRA target {entry!r} matches no convolution; use 'all', 'encoder', "
                                 f"'decoder' or block names such as {blocks[:4]} (all: {blocks})")
            chosen += [n for n in hits if n not in chosen]
    if not chosen:
        raise ValueError(f"LoRA target {target!r} selects no Conv2d/ConvTranspose2d in this model")
    return chosen


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _freeze_batchnorm_stats(model: nn.Module, lean: bool = True) -> None:
    for m in model.modules():
        if type(m) in (nn.BatchNorm2d, FrozenStatsBatchNorm2d):
            m.__class__ = FrozenStatsBatchNorm2d
            m.lean = bool(lean)
            m.eval()


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Add from-scratch LoRA adapters to ``model`` in place and freeze everything else.

    Parameters
    ----------
    model : nn.Module
        Usually a pretrained :class:`~fwi_teach.models.InversionNet`.
    settings : LoraSettings, optional
        Defaults to ``LoraSettings()`` (rank 16 on every convolution).

    Returns
    -------
    nn.Module
        ``model``; only adapter weights (plus biases / BN per ``settings``) are trainable.

    Raises
    ------
    ValueError
        If ``model`` already has LoRA layers or ``settings.target`` matches nothing.
    """
    settings = settings or LoraSettings()
    if any(isinstance(m, _LoRAConvBase) for m in model.modules()):
        raise ValueError("model already has LoRA layers; apply_lora once to a fresh pretrained model")
    names = _target_names(model, settings.target)
    model.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        cls = LoRAConv2d if type(base) is nn.Conv2d else LoRAConvTranspose2d
        _set_submodule(model, name, cls(base, settings.rank, settings.alpha, settings.dropout, settings.lean))
        if settings.bias == "lora_only" and base.bias is not None:
            base.bias.requires_grad_(True)
    if settings.bias == "all":
        for pname, p in model.named_parameters():
            if pname.endswith("bias"):
                p.requires_grad_(True)
    for m in model.modules():
        if isinstance(m, _LoRAConvBase):
            m.lora_A.requires_grad_(True)
            m.lora_B.requires_grad_(True)
        elif isinstance(m, nn.BatchNorm2d) and settings.train_batchnorm:
            m.requires_grad_(True)
    if not settings.train_batchnorm:
        _freeze_batchnorm_stats(model, settings.lean)
    return model


def set_lora_train_mode(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, then put every BatchNorm whose parameters are all frozen in eval mode.

    :func:`apply_lora` already makes frozen BN layers ignore ``train()``; this
    helper also covers models whose BN layers were frozen by hand.
    """
    model.train(mode)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every from-scratch LoRA layer by its base layer with the delta merged in, in place.

    The result is a plain network again: original module names (its
    ``state_dict()`` loads into a plain InversionNet), ordinary BatchNorm2d
    layers and all parameters trainable.
    """
    for name, m in list(model.named_modules()):
        if isinstance(m, _LoRAConvBase):
            if not m.merged:
                m.merge()
            _set_submodule(model, name, m.base)
    for m in model.modules():
        if type(m) is FrozenStatsBatchNorm2d:
            m.__class__ = nn.BatchNorm2d
            m.__dict__.pop("lean", None)
    return model.requires_grad_(True)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Everything fine-tuning changed: trainable parameters, plus running statistics of trainable BN layers.

    Load it back with ``model.load_state_dict(sd, strict=False)`` into a model
    prepared by :func:`apply_lora` with the same settings.
    """
    out = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and any(p.requires_grad for p in m.parameters()):
            for b, t in m.named_buffers():
                out[f"{name}.{b}"] = t.detach().clone()
    return out


def trainable_parameter_report(model: nn.Module, base_model: nn.Module | None = None) -> dict:
    """Trainable parameters of an adapted model compared with full fine-tuning.

    Parameters
    ----------
    model : nn.Module
        Model after :func:`apply_lora` or :func:`apply_peft_lora`.
    base_model : nn.Module, optional
        The un-adapted model; its parameter count is the full fine-tuning
        figure. Without it, all parameters of ``model`` that are not adapter
        weights (names without ``lora_``, peft copies in ``modules_to_save`` excluded) are counted.

    Returns
    -------
    dict
        ``trainable``, ``lora`` (adapter weights), ``other_trainable``, ``total``,
        ``full_finetune``, ``percent_of_full`` and ``reduction_percent``.
    """
    named = list(model.named_parameters())
    lora = sum(p.numel() for n, p in named if "lora_" in n)
    trainable = count_parameters(model, trainable_only=True)
    total = count_parameters(model, trainable_only=False)
    if base_model is not None:
        full = count_parameters(base_model, trainable_only=False)
    else:
        full = sum(p.numel() for n, p in named if "lora_" not in n and "modules_to_save" not in n)
    pct = 100.0 * trainable / full
    return {"trainable": trainable, "lora": lora, "other_trainable": trainable - lora, "total": total,
            "full_finetune": full, "percent_of_full": pct, "reduction_percent": 100.0 - pct}
