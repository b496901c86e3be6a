"""LoRA with Hugging Face peft: ``peft.LoraConfig`` / ``PeftModel`` for InversionNet, and the layers peft lacks.

peft 0.21 has no LoRA layer for ``nn.ConvTranspose2d``, so a small custom layer
(:func:`peft_conv_transpose_class`, exposed lazily as ``PeftLoraConvTranspose2d``)
is registered through peft's experimental ``LoraConfig._register_custom_module``.
That registration is not saved with the adapter: load with
:func:`load_peft_adapter`, which registers it again. peft is imported only when
one of these functions is called. Every public name here is also importable from
:mod:`fwi_teach.models`; :func:`apply_peft_lora` computes what the from-scratch
:func:`fwi_teach.models.lora.apply_lora` computes.
"""
from __future__ import annotations

import functools
import os
import re

import torch
from torch import nn

from .lora import FrozenStatsBatchNorm2d, LoraSettings, _freeze_batchnorm_stats, _LoRAConvBase, _target_names
from .lean import lean_conv_supported, merged_lora_conv
from .inversionnet import INVERSIONNET_BLOCKS

__all__ = ["peft_lora_config", "apply_peft_lora", "load_peft_adapter", "peft_conv_transpose_class",
           "peft_conv2d_class", "set_lean"]


def _lean_forward(layer, x, args, kwargs):
    """The lean computation of a peft conv LoRA layer, or ``None`` where peft's own forward must run.

    It applies when exactly one adapter is active, is plain LoRA (no DoRA), has no
    dropout, and the layer is neither merged nor disabled: then the output is
    :func:`fwi_teach.models.lean.merged_lora_conv` of that adapter, the function peft computes
    as ``base(x) + scaling * B(A(dropout(x)))``.
    """
    if not getattr(layer, "lean", False) or args or kwargs or layer.disable_adapters or layer.merged:
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A.keys()]
    if len(active) != 1 or active[0] in layer.lora_variant:
        return None
    name, base = active[0], layer.get_base_layer()
    if not lean_conv_supported(base, layer.lora_dropout[name]):
        return None
    return merged_lora_conv(x, base, layer.lora_A[name].weight, layer.lora_B[name].weight, layer.scaling[name])


@functools.lru_cache(maxsize=None)
def peft_conv2d_class() -> type:
    """peft's LoRA layer for ``nn.Conv2d`` with the lean forward (builds on first use; imports peft).

    Same adapter weights, names and file format as ``peft.tuners.lora.layer.Conv2d``;
    only the computation differs (set the attribute ``lean = False`` for peft's own).
    """
    from peft.tuners.lora.layer import Conv2d

    class PeftLeanConv2d(Conv2d):
        lean = True

        def forward(self, x, *args, **kwargs):
            out = _lean_forward(self, x, args, kwargs)
            return super().forward(x, *args, **kwargs) if out is None else out

        def __repr__(self) -> str:
            return "lora.Conv2d(" + super().__repr__().split("(", 1)[1]

    PeftLeanConv2d.__qualname__ = "PeftLeanConv2d"
    PeftLeanConv2d.__module__ = __name__
    return PeftLeanConv2d


@functools.lru_cache(maxsize=None)
def peft_conv_transpose_class() -> type:
    """The peft LoRA layer class for ``nn.ConvTranspose2d`` (built on first use; imports peft).

    It reuses peft's ``_ConvNd`` LoRA layer, which already builds ``lora_A`` and
    ``lora_B`` as layers of the base type (here ConvTranspose2d, with kernel,
    stride and padding of the base, and 1 x 1) and handles forward, merge and
    unmerge; only the channel bookkeeping and the delta-weight formula need the
    transposed layout ``(in, out, kh, kw)``.
    """
    from peft.tuners.lora.layer import _ConvNd

    class PeftLoraConvTranspose2d(_ConvNd):
        lean = True

        def __init__(self, base_layer, adapter_name, config, r=0, lora_alpha=1, **kwargs):
            base = base_layer.get_base_layer() if hasattr(base_layer, "get_base_layer") else base_layer
            if base.groups != 1:
                raise ValueError(f"ConvTranspose2d with groups={base.groups} is not supported by this LoRA layer")
            super().__init__(base_layer, adapter_name, config=config, r=r, lora_alpha=lora_alpha, **kwargs)

        def _get_in_out_features(self, module):
            return module.in_channels, module.out_channels

        @property
        def lora_variants(self):
            return {(): None}  # plain LoRA only (no DoRA)

        def update_layer(self, adapter_name, r, lora_alpha, config, **kwargs):
            super().update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)
            base = self.get_base_layer()
            self.lora_A[adapter_name].output_padding = base.output_padding
            self.lora_A[adapter_name].dilation = base.dilation

        def forward(self, x, *args, **kwargs):
            out = _lean_forward(self, x, args, kwargs)
            return super().forward(x, *args, **kwargs) if out is None else out

        def get_delta_weight(self, adapter) -> torch.Tensor:
            a = self.lora_A[adapter].weight
            b = self.lora_B[adapter].weight[:, :, 0, 0]
            return torch.einsum("irhw,ro->iohw", a, b) * self.scaling[adapter]

        def __repr__(self) -> str:
            return "lora.ConvTranspose2d(" + super().__repr__().split("(", 1)[1]

    # Make the class importable (and picklable) as fwi_teach.models.peft_bridge.PeftLoraConvTranspose2d.
    PeftLoraConvTranspose2d.__qualname__ = "PeftLoraConvTranspose2d"
    PeftLoraConvTranspose2d.__module__ = __name__
    return PeftLoraConvTranspose2d


def __getattr__(name: str):
    # Lazy module attribute (PEP 562): importing this module (or fwi_teach.models.lora) does not import peft.
    if name == "PeftLoraConvTranspose2d":
        return peft_conv_transpose_class()
    if name == "PeftLeanConv2d":
        return peft_conv2d_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _peft_target(settings: LoraSettings, model: nn.Module | None):
    if model is not None:
        return _target_names(model, settings.target)
    blocks = [b for b in INVERSIONNET_BLOCKS if settings.target == "all" or
              (settings.target == "encoder" and b.startswith("convblock")) or
              (settings.target == "decoder" and b.startswith("deconv"))]
    if settings.target in ("all", "encoder", "decoder"):
        return [f"{b}.layers.0" for b in blocks]
    alternatives = "|".join(re.escape(t) for t in settings.target)
    return rf"^(?:{alternatives})(?:\.layers\.0)?$"  # peft full-matches a string target as a regex


def peft_lora_config(settings: LoraSettings | None = None, model: nn.Module | None = None):
    """A ``peft.LoraConfig`` equivalent to ``settings``, with the ConvTranspose2d layer registered.

    Parameters
    ----------
    settings : LoraSettings, optional
        Defaults to ``LoraSettings()``.
    model : nn.Module, optional
        If given, target names are resolved on it (any model); otherwise
        InversionNet's module names are assumed.

    Returns
    -------
    peft.LoraConfig
    """
    from peft import LoraConfig

    settings = settings or LoraSettings()
    bn_names = None
    if settings.train_batchnorm:
        bn_names = ([n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)] if model is not None
                    else [f"{b}.layers.1" for b in INVERSIONNET_BLOCKS])
    config = LoraConfig(r=int(settings.rank), lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=_peft_target(settings, model), bias=settings.bias,
                        modules_to_save=bn_names)
    _register_layers(config)
    return config


def _register_layers(config) -> None:
    # peft's experimental custom-module registry is consulted before its own layer table.
    config._register_custom_module({nn.Conv2d: peft_conv2d_class(), nn.ConvTranspose2d: peft_conv_transpose_class()})


def set_lean(model: nn.Module, lean: bool = True) -> nn.Module:
    """Switch every LoRA conv layer and frozen batch norm of ``model`` to the lean (or textbook) computation.

    Works on peft models and on models adapted with :func:`fwi_teach.models.lora.apply_lora`;
    the outputs agree to float rounding either way (see :mod:`fwi_teach.models.lean`).
    """

    for m in model.modules():
        if isinstance(m, (FrozenStatsBatchNorm2d, _LoRAConvBase)) or type(m) in (peft_conv2d_class(),
                                                                                 peft_conv_transpose_class()):
            m.lean = bool(lean)
    return model


def apply_peft_lora(model: nn.Module, settings: LoraSettings | None = None):
    """Wrap ``model`` with peft LoRA on every selected Conv2d and ConvTranspose2d.

    Parameters
    ----------
    model : nn.Module
        Pretrained model; modified in place (peft injects its layers).
    settings : LoraSettings, optional
        Same meaning as for :func:`apply_lora`.

    Returns
    -------
    peft.PeftModel
        Save the adapter with ``.save_pretrained(dir)``; reload it with :func:`load_peft_adapter`.
        With ``train_batchnorm=False`` the BN layers become :class:`FrozenStatsBatchNorm2d`.
    """
    from peft import get_peft_model

    settings = settings or LoraSettings()
    config = peft_lora_config(settings, model)
    if not settings.train_batchnorm:
        _freeze_batchnorm_stats(model, settings.lean)
    return set_lean(get_peft_model(model, config), settings.lean)


def load_peft_adapter(base_model: nn.Module, path: str | os.PathLike, is_trainable: bool = False,
                      adapter_name: str = "default"):
    """Load an adapter saved by ``PeftModel.save_pretrained`` onto ``base_model``.

    Re-registers the ConvTranspose2d LoRA layer (peft does not save that
    registration) and calls ``PeftModel.from_pretrained``. ``base_model`` must
    hold exactly the pretrained weights the adapter was trained on. If the
    adapter was trained with frozen BatchNorm (no ``modules_to_save``), the BN
    layers of ``base_model`` become :class:`FrozenStatsBatchNorm2d` (same weights).
    The LoRA layers use the lean computation (:func:`set_lean`). To attach several
    adapters to one PFM, checked against it, see :func:`fwi_teach.models.adapters.load_adapters`.

    Raises
    ------
    FileNotFoundError
        If ``path`` has no ``adapter_config.json``.
    """
    from peft import LoraConfig, PeftModel

    if not os.path.isfile(os.path.join(os.fspath(path), "adapter_config.json")):
        raise FileNotFoundError(f"{os.fspath(path)!r} has no adapter_config.json; pass the directory given "
                                f"to save_pretrained()")
    config = LoraConfig.from_pretrained(os.fspath(path))
    _register_layers(config)
    if not config.modules_to_save:
        _freeze_batchnorm_stats(base_model)
    model = PeftModel.from_pretrained(base_model, os.fspath(path), adapter_name=adapter_name, config=config,
                                      is_trainable=is_trainable)
    return set_lean(model, True)
