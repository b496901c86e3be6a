"""InversionNet: the encoder-decoder CNN that OpenFWI uses as its reference model.

The network maps five shot gathers, shape ``(N, 5, 1000, 70)`` (shots, time
samples, receivers), to one normalised velocity map, shape ``(N, 1, 70, 70)`` in
``[-1, 1]``. The layer table follows the OpenFWI reference implementation, and
the submodule names (``convblock1``, ``convblock2_1``, ..., ``deconv6``, each
holding a ``layers`` ``nn.Sequential`` of conv / batch norm / activation) match
OpenFWI's, so a checkpoint trained with OpenFWI loads by name
(:func:`load_openfwi_checkpoint`).

Encoder: blocks 1 to 4 convolve along time only (kernel ``(k, 1)``) and halve the
time axis; blocks 5 to 7 halve both axes; block 8 is a "dense" convolution whose
kernel covers the whole remaining ``(time, receiver)`` map, so the encoder
always ends at ``1 x 1``. Its kernel size is computed from ``input_length`` and
``n_receivers``: ``(8, 9)`` at the OpenFWI size ``1000 x 70`` and ``(2, 9)`` for
data decimated 4x in time (``input_length=250``).

Decoder: five transposed convolutions grow ``1 x 1`` to ``80 x 80``
(5, 10, 20, 40, 80), each followed by a 3x3 convolution; the map is centre
cropped to ``output_shape`` (80 -> 70) and a last 3x3 convolution + batch norm +
tanh gives the velocity in ``[-1, 1]``.

Trainable parameter counts (computed with :func:`count_parameters`; the input
length changes only the block-8 kernel):

=================  =================  ================
width_multiplier   input_length=1000  input_length=250
=================  =================  ================
1.0                24,409,123         17,331,235
0.5                6,105,875          4,336,403
0.25               1,528,267          1,085,899
=================  =================  ================

The full-size count, 24,409,123, is the figure OpenFWI reports.
"""
from __future__ import annotations

import argparse
import collections
import os
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn

from ..runtime import load_tensors

__all__ = [
    "ConvBlock",
    "DeconvBlock",
    "ConvBlockTanh",
    "InversionNet",
    "INVERSIONNET_BLOCKS",
    "count_parameters",
    "load_openfwi_checkpoint",
    "encoder_output_size",
    "layer_table",
]

#: Names of the 25 blocks of InversionNet, in forward order (OpenFWI's names).
INVERSIONNET_BLOCKS: tuple[str, ...] = (
    "convblock1", "convblock2_1", "convblock2_2", "convblock3_1", "convblock3_2",
    "convblock4_1", "convblock4_2", "convblock5_1", "convblock5_2", "convblock6_1",
    "convblock6_2", "convblock7_1", "convblock7_2", "convblock8",
    "deconv1_1", "deconv1_2", "deconv2_1", "deconv2_2", "deconv3_1", "deconv3_2",
    "deconv4_1", "deconv4_2", "deconv5_1", "deconv5_2", "deconv6",
)

_BASE_WIDTHS = (32, 64, 128, 256, 512)
_DECODER_SIZE = 80  # spatial size the decoder produces before the centre crop


class ConvBlock(nn.Module):
    """Conv2d (with bias) + BatchNorm2d + LeakyReLU(0.2), stored as ``self.layers``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DeconvBlock(nn.Module):
    """ConvTranspose2d (with bias) + BatchNorm2d + LeakyReLU(0.2), stored as ``self.layers``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=4, stride=2, padding=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvBlockTanh(nn.Module):
    """Conv2d (with bias) + BatchNorm2d + tanh: the output block."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            nn.BatchNorm2d(out_channels),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _halve(n: int) -> int:
    # Output size of a stride-2 conv with kernel 3 / padding 1 (or kernel 7 / padding 3).
    return (n - 1) // 2 + 1


def encoder_output_size(input_length: int, n_receivers: int) -> tuple[int, int]:
    """Size ``(time, receivers)`` of the feature map that enters block 8.

    Blocks 1-7 halve the time axis seven times (rounding up) and blocks 5-7
    halve the receiver axis three times. Block 8 uses this size as its kernel.

    Parameters
    ----------
    input_length : int
        Number of time samples per trace (1000 for OpenFWI).
    n_receivers : int
        Number of receivers (70 for OpenFWI).

    Returns
    -------
    tuple of int
        ``(8, 9)`` for ``(1000, 70)``; ``(2, 9)`` for ``(250, 70)``.
    """
    t, r = int(input_length), int(n_receivers)
    for _ in range(7):
        t = _halve(t)
    for _ in range(3):
        r = _halve(r)
    return t, r


class InversionNet(nn.Module):
    """OpenFWI's InversionNet with adjustable width and input length.

    Parameters
    ----------
    in_channels : int, default 5
        Number of shots (input channels).
    width_multiplier : float, default 1.0
        Multiplies the widths 32, 64, 128, 256, 512 (rounded, at least 1).
        0.25 gives a model about 16x smaller that trains on a laptop CPU.
    input_length : int, default 1000
        Number of time samples per trace; sets the block-8 kernel height.
    n_receivers : int, default 70
        Number of receivers; sets the block-8 kernel width.
    output_shape : tuple of int, default (70, 70)
        Velocity map size ``(depth, width)``; the 80 x 80 decoder output is
        centre cropped to it, so each entry must be at most 80.

    Raises
    ------
    ValueError
        If a size is not positive or ``output_shape`` exceeds 80 x 80.

    Examples
    --------
    >>> net = InversionNet(width_multiplier=0.25, input_length=250)
    >>> net(torch.zeros(2, 5, 250, 70)).shape
    torch.Size([2, 1, 70, 70])
    """

    def __init__(self, in_channels: int = 5, width_multiplier: float = 1.0, input_length: int = 1000,
                 n_receivers: int = 70, output_shape: Sequence[int] = (70, 70)):
        super().__init__()
        if int(in_channels) < 1:
            raise ValueError(f"in_channels={in_channels}; expected a positive number of shots, e.g. 5")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier={width_multiplier}; expected a positive number such as 1.0 or 0.25")
        if int(n_receivers) < 1:
            raise ValueError(f"n_receivers={n_receivers}; expected a positive number of receivers, e.g. 70")
        if int(input_length) < 1:
            raise ValueError(f"input_length={input_length}; expected a positive number of time samples "
                             f"(OpenFWI uses 1000; 250 after 4x decimation)")
        output_shape = tuple(int(s) for s in output_shape)
        if len(output_shape) != 2 or not all(1 <= s <= _DECODER_SIZE for s in output_shape):
            raise ValueError(f"output_shape={output_shape}; expected two sizes between 1 and {_DECODER_SIZE}, "
                             f"e.g. (70, 70)")
        self.in_channels = int(in_channels)
        self.width_multiplier = float(width_multiplier)
        self.input_length = int(input_length)
        self.n_receivers = int(n_receivers)
        self.output_shape = output_shape
        d1, d2, d3, d4, d5 = (max(1, int(round(w * self.width_multiplier))) for w in _BASE_WIDTHS)
        self.widths = (d1, d2, d3, d4, d5)
        self.block8_kernel = encoder_output_size(self.input_length, self.n_receivers)

        t_only = dict(kernel_size=(3, 1), padding=(1, 0))
        self.convblock1 = ConvBlock(self.in_channels, d1, kernel_size=(7, 1), stride=(2, 1), padding=(3, 0))
        self.convblock2_1 = ConvBlock(d1, d2, stride=(2, 1), **t_only)
        self.convblock2_2 = ConvBlock(d2, d2, **t_only)
        self.convblock3_1 = ConvBlock(d2, d2, stride=(2, 1), **t_only)
        self.convblock3_2 = ConvBlock(d2, d2, **t_only)
        self.convblock4_1 = ConvBlock(d2, d3, stride=(2, 1), **t_only)
        self.convblock4_2 = ConvBlock(d3, d3, **t_only)
        self.convblock5_1 = ConvBlock(d3, d3, stride=2)
        self.convblock5_2 = ConvBlock(d3, d3)
        self.convblock6_1 = ConvBlock(d3, d4, stride=2)
        self.convblock6_2 = ConvBlock(d4, d4)
        self.convblock7_1 = ConvBlock(d4, d4, stride=2)
        self.convblock7_2 = ConvBlock(d4, d4)
        self.convblock8 = ConvBlock(d4, d5, kernel_size=self.block8_kernel, padding=0)

        self.deconv1_1 = DeconvBlock(d5, d5, kernel_size=5, stride=2, padding=0)
        self.deconv1_2 = ConvBlock(d5, d5)
        self.deconv2_1 = DeconvBlock(d5, d4)
        self.deconv2_2 = ConvBlock(d4, d4)
        self.deconv3_1 = DeconvBlock(d4, d3)
        self.deconv3_2 = ConvBlock(d3, d3)
        self.deconv4_1 = DeconvBlock(d3, d2)
        self.deconv4_2 = ConvBlock(d2, d2)
        self.deconv5_1 = DeconvBlock(d2, d1)
        self.deconv5_2 = ConvBlock(d1, d1)
        self.deconv6 = ConvBlockTanh(d1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map seismic data ``(N, in_channels, input_length, n_receivers)`` to velocity ``(N, 1, H, W)``."""
        expected = (self.in_channels, self.input_length, self.n_receivers)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"input has shape {tuple(x.shape)}; expected (N, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}) = (samples, shots, time, receivers). Build the model with "
                             f"matching in_channels / input_length / n_receivers, or decimate the data.")
        for name in INVERSIONNET_BLOCKS[:-1]:
            x = getattr(self, name)(x)
        x = self._centre_crop(x)
        return self.deconv6(x)

    def _centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        out_h, out_w = self.output_shape
        top = (x.shape[-2] - out_h) // 2
        left = (x.shape[-1] - out_w) // 2
        return x[..., top:top + out_h, left:left + out_w]

    def load_openfwi_checkpoint(self, path: str | os.PathLike, strict: bool = True,
                                weights_only: bool = True) -> "InversionNet":
        """Load OpenFWI weights into this model; see :func:`load_openfwi_checkpoint`."""
        return load_openfwi_checkpoint(self, path, strict=strict, weights_only=weights_only)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model``.

    Parameters
    ----------
    model : nn.Module
        Any module.
    trainable_only : bool, default True
        Count only parameters with ``requires_grad=True``.

    Returns
    -------
    int
        24,409,123 for ``InversionNet()``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def layer_table(net: "InversionNet") -> list[tuple]:
    """The layer table of an InversionNet, one row per block in forward order.

    Parameters
    ----------
    net : InversionNet
        Any width and input length; built on the ``meta`` device it costs no memory.

    Returns
    -------
    list of tuple
        ``(block, operation, kernel/stride/padding, output shape, parameters)`` with
        the operation as ``"Conv 5->32"`` or ``"ConvT 512->512"`` and the output shape
        of one sample as ``"CxHxW"`` (found by a forward pass on the ``meta`` device).
    """
    shapes = {}
    hooks = [getattr(net, name).register_forward_hook(
        lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for name in INVERSIONNET_BLOCKS]
    was_training = net.training
    try:
        with torch.no_grad():
            device = next(net.parameters()).device  # "meta" costs nothing; a real network runs one sample
            net.eval()(torch.zeros(1, net.in_channels, net.input_length, net.n_receivers, device=device))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    rows = []
    for name in INVERSIONNET_BLOCKS:
        block = getattr(net, name)
        conv = next(m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
        op = ("ConvT" if isinstance(conv, nn.ConvTranspose2d) else "Conv") + f" {conv.in_channels}->{conv.out_channels}"
        geometry = f"{tuple(conv.kernel_size)}/{tuple(conv.stride)}/{tuple(conv.padding)}"
        rows.append((name, op, geometry, "x".join(map(str, shapes[name])), count_parameters(block)))
    return rows


def _clean_state_dict(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    # Strip DataParallel/DDP 'module.' prefixes and rename OpenFWI's legacy block attribute names.
    cleaned = OrderedDict()
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        for legacy in ("Conv2DwithBN_Tanh", "Deconv2DwithBN", "Conv2DwithBN"):
            key = key.replace(f".{legacy}.", ".layers.")
        cleaned[key] = value
    return cleaned


def load_openfwi_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True,
                            weights_only: bool = True) -> nn.Module:
    """Load an OpenFWI (or fwi_teach) checkpoint into ``model`` by parameter name.

    Parameters
    ----------
    model : nn.Module
        Usually an :class:`InversionNet` built with the checkpoint's settings.
    path : str or os.PathLike
        A file written by ``torch.save`` holding either a state dict or a dict
        with key ``'model'`` (OpenFWI's training script saves the latter).
        ``'module.'`` prefixes (DataParallel / DDP) are stripped.
    strict : bool, default True
        Require the names to match exactly.
    weights_only : bool, default True
        Unpickle safely: tensors and plain containers only, plus the
        ``argparse.Namespace`` and ``collections.Counter`` that OpenFWI's
        training script stores beside the weights. Set False only for files
        from a source you trust.

    Returns
    -------
    nn.Module
        ``model``, with the weights loaded, for chaining.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file holds no state dict, names are missing or unexpected
        (listed in the message), or a tensor has the wrong shape (usually a
        different ``width_multiplier`` or ``input_length``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; download the OpenFWI InversionNet "
                                f"checkpoint by hand and pass its path")
    with torch.serialization.safe_globals([argparse.Namespace, collections.Counter]):
        obj = load_tensors(path, fix="download the checkpoint again", weights_only=weights_only)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path!r} holds neither a state dict nor a dict with key 'model'; "
                         f"save checkpoints with torch.save(model.state_dict(), path)")
    state = _clean_state_dict(obj)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if bad_shape:
        raise ValueError(f"{len(bad_shape)} tensors in {path!r} have other shapes than the model "
                         f"(build the model with the checkpoint's width_multiplier / input_length): "
                         + "; ".join(bad_shape[:10]))
    if strict and (missing or unexpected):
        raise ValueError(f"checkpoint {path!r} does not match the model by name. Missing keys "
                         f"({len(missing)}): {missing[:20]}. Unexpected keys ({len(unexpected)}): "
                         f"{unexpected[:20]}. Check that it is an InversionNet checkpoint, or pass strict=False.")
    model.load_state_dict(state, strict=strict)
    return model


if __name__ == "__main__":  # print the parameter-count table of the module docstring
    for width in (1.0, 0.5, 0.25):
        counts = [count_parameters(InversionNet(width_multiplier=width, input_length=n)) for n in (1000, 250)]
        print(f"{width:<5} {counts[0]:>12,} {counts[1]:>12,}")
