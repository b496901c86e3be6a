"""Tests for fwi_teach.models (InversionNet, parameter counts, OpenFWI checkpoint loading)."""
import argparse
import re
from collections import Counter

import pytest
import torch

from fwi_teach import models
from fwi_teach.models import (INVERSIONNET_BLOCKS, InversionNet, count_parameters, encoder_output_size,
                              load_openfwi_checkpoint)

torch.set_num_threads(2)
SMALL = dict(width_multiplier=0.25, input_length=250)


@pytest.fixture(scope="module")
def small_pair():
    torch.manual_seed(0)
    return InversionNet(**SMALL).eval(), torch.randn(2, 5, 250, 70)


def test_full_size_parameter_count_matches_openfwi():
    assert count_parameters(InversionNet()) == 24_409_123


def test_docstring_parameter_table_is_computed():
    rows = re.findall(r"^(1\.0|0\.5|0\.25)\s+([\d,]+)\s+([\d,]+)\s*$", models.inversionnet.__doc__, flags=re.M)
    assert len(rows) == 3
    for width, n1000, n250 in rows:
        for length, documented in ((1000, n1000), (250, n250)):
            got = count_parameters(InversionNet(width_multiplier=float(width), input_length=length))
            print(f"width {width} input_length {length}: {got:,}")
            assert got == int(documented.replace(",", ""))


def test_encoder_output_and_block8_kernel_adapt_to_input_length():
    assert encoder_output_size(1000, 70) == (8, 9)
    assert encoder_output_size(250, 70) == (2, 9)
    assert InversionNet(**SMALL).convblock8.layers[0].kernel_size == (2, 9)
    assert InversionNet(width_multiplier=0.25).convblock8.layers[0].kernel_size == (8, 9)


@pytest.mark.parametrize("length", [250, 333])
def test_encoder_ends_at_one_by_one(length):
    net = InversionNet(width_multiplier=0.25, input_length=length).eval()
    seen = {}
    net.convblock8.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    with torch.no_grad():
        out = net(torch.randn(1, 5, length, 70))
    assert seen["shape"] == (1, 128, 1, 1)
    assert out.shape == (1, 1, 70, 70)


def test_forward_shape_and_tanh_range(small_pair):
    net, x = small_pair
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 1, 70, 70)
    assert y.abs().max() <= 1.0


def test_widths_rounded_and_at_least_one():
    assert InversionNet(width_multiplier=0.25).widths == (8, 16, 32, 64, 128)
    assert InversionNet(width_multiplier=0.01, input_length=100).widths == (1, 1, 1, 3, 5)


def test_output_shape_centre_crop():
    net = InversionNet(width_multiplier=0.25, input_length=100, output_shape=(64, 66)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 5, 100, 70)).shape == (1, 1, 64, 66)


def test_wrong_input_shape_names_expected_shape(small_pair):
    net, _ = small_pair
    with pytest.raises(ValueError, match=r"expected \(N, 5, 250, 70\)"):
        net(torch.randn(1, 5, 1000, 70))


@pytest.mark.parametrize("kwargs", [dict(width_multiplier=0), dict(input_length=0), dict(in_channels=0),
                                    dict(output_shape=(90, 70)), dict(output_shape=(70,))])
def test_invalid_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        InversionNet(**kwargs)


def test_module_names_match_openfwi():
    net = InversionNet(**SMALL)
    assert tuple(name for name, _ in net.named_children()) == INVERSIONNET_BLOCKS
    keys = set(net.state_dict())
    for key in ("convblock1.layers.0.weight", "convblock8.layers.1.running_var",
                "deconv1_1.layers.0.weight", "deconv6.layers.1.num_batches_tracked"):
        assert key in keys
    assert isinstance(net.deconv5_1.layers[0], torch.nn.ConvTranspose2d)
    assert isinstance(net.deconv6.layers[2], torch.nn.Tanh)


def test_count_parameters_trainable_only():
    net = InversionNet(**SMALL)
    total = count_parameters(net)
    net.convblock1.requires_grad_(False)
    frozen = sum(p.numel() for p in net.convblock1.parameters())
    assert count_parameters(net) == total - frozen
    assert count_parameters(net, trainable_only=False) == total


def test_construction_is_deterministic_given_seed():
    torch.manual_seed(3)
    a = InversionNet(**SMALL)
    torch.manual_seed(3)
    b = InversionNet(**SMALL)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("wrap", ["model", "plain", "legacy"])
def test_load_openfwi_checkpoint_round_trip(tmp_path, small_pair, wrap):
    net, x = small_pair
    state = {"module." + k: v for k, v in net.state_dict().items()}  # as saved from DataParallel
    if wrap == "legacy":
        state = {k.replace(".layers.", ".Conv2DwithBN."): v for k, v in state.items()}
    path = tmp_path / "checkpoint.pth"
    # OpenFWI's train.py also stores its argparse arguments and scheduler state
    extras = {"epoch": 3, "args": argparse.Namespace(lr=1e-4), "lr_scheduler": {"milestones": Counter([1])}}
    torch.save({"model": state, **extras} if wrap == "model" else state, path)
    torch.manual_seed(1)
    other = InversionNet(**SMALL).eval()
    assert other.load_openfwi_checkpoint(path) is other
    with torch.no_grad():
        assert torch.equal(other(x), net(x))


def test_load_checkpoint_lists_missing_and_unexpected_keys(tmp_path, small_pair):
    net, _ = small_pair
    state = dict(net.state_dict())
    del state["deconv6.layers.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"deconv6\.layers\.0\.bias.*extra\.weight"):
        load_openfwi_checkpoint(InversionNet(**SMALL), path)


def test_load_checkpoint_shape_mismatch_and_bad_files(tmp_path, small_pair):
    net, _ = small_pair
    path = tmp_path / "small.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(ValueError, match="width_multiplier"):
        load_openfwi_checkpoint(InversionNet(width_multiplier=0.5, input_length=250), path)
    with pytest.raises(FileNotFoundError):
        load_openfwi_checkpoint(net, tmp_path / "missing.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="state dict"):
        load_openfwi_checkpoint(net, tmp_path / "list.pth")
    torch.save({"model": net.state_dict(), "fn": _Opaque()}, tmp_path / "opaque.pth")
    with pytest.raises(ValueError, match="weights_only=False"):
        load_openfwi_checkpoint(net, tmp_path / "opaque.pth")
    assert load_openfwi_checkpoint(net, tmp_path / "opaque.pth", weights_only=False) is net


class _Opaque:
    """An arbitrary picklable object, as some checkpoints carry."""


def test_layer_table_lists_every_block_with_its_output_and_parameters():
    from fwi_teach.evaluation import OPENFWI_PARAMETERS
    from fwi_teach.models import INVERSIONNET_BLOCKS, layer_table

    with torch.device("meta"):
        full = InversionNet()
    rows = layer_table(full)
    assert [r[0] for r in rows] == list(INVERSIONNET_BLOCKS)
    assert sum(r[4] for r in rows) == count_parameters(full) == OPENFWI_PARAMETERS  # OpenFWI's published count
    first, dense, last = rows[0], rows[INVERSIONNET_BLOCKS.index("convblock8")], rows[-1]
    assert first[1] == "Conv 5->32" and first[2] == "(7, 1)/(2, 1)/(3, 0)" and first[3] == "32x500x70"
    assert dense[2].startswith("(8, 9)/") and dense[3] == "512x1x1"  # block 8 covers the whole map
    assert last[3] == "1x70x70"
    net = InversionNet(**SMALL).train()
    layer_table(net)
    assert net.training  # the mode is restored
