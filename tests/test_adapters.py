"""Tests for fwi_teach.models.adapters: one PFM serving several LoRA adapters, saved with metadata and checked."""
import copy
import json

import pytest
import torch
from torch import nn

from fwi_teach.models.adapters import (METADATA_FILE, adapter_footprint, check_adapter, load_adapters, pfm_fingerprint,
                                save_adapter, use_adapter)
from fwi_teach.models import LoraSettings, apply_peft_lora
from fwi_teach.models import InversionNet

torch.set_num_threads(2)
SHAPE = (5, 100, 70)


@pytest.fixture(scope="module")
def pfm():
    torch.manual_seed(0)
    net = InversionNet(width_multiplier=0.25, input_length=SHAPE[1])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _fine_tuned(pfm, seed):
    """A peft LoRA model on a copy of the PFM with distinct, non-zero adapters (as after training)."""
    model = apply_peft_lora(copy.deepcopy(pfm), LoraSettings(rank=2))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def saved(pfm, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    x = torch.randn(2, *SHAPE)
    expected, dirs = {}, {}
    for i, name in enumerate(["flatvel-b", "curvevel-b", "flatfault-b"]):
        model = _fine_tuned(pfm, i)
        with torch.no_grad():
            expected[name] = model(x)
        dirs[name] = save_adapter(model, root / name, family=name)
    return x, expected, dirs


def test_fingerprint_is_the_pfms_inside_a_peft_model(pfm):
    model = _fine_tuned(pfm, 0)
    assert pfm_fingerprint(model) == pfm_fingerprint(pfm)
    other = copy.deepcopy(pfm)
    with torch.no_grad():
        other.convblock1.layers[0].weight.add_(1e-3)
    assert pfm_fingerprint(other) != pfm_fingerprint(pfm)


def test_each_adapter_of_one_pfm_gives_its_own_models_outputs(pfm, saved):
    x, expected, dirs = saved
    served = load_adapters(copy.deepcopy(pfm), dirs)
    assert sorted(served.peft_config) == sorted(dirs) and served.active_adapter == "flatvel-b"
    for name in ["curvevel-b", "flatvel-b", "flatfault-b", "curvevel-b"]:  # switching back and forth
        use_adapter(served, name)
        with torch.no_grad():
            assert torch.equal(served(x), expected[name]), name
    # the PFM is held once: one base weight per layer, one adapter pair per layer and task
    base_weights = [n for n, _ in served.named_parameters() if "base_layer.weight" in n]
    assert len(base_weights) == 25
    assert sum("lora_A.curvevel-b" in n for n, _ in served.named_parameters()) == 25


def test_metadata_round_trip_and_footprint(pfm, saved, tmp_path):
    _, _, dirs = saved
    meta = json.loads((dirs["flatvel-b"] / METADATA_FILE).read_text())
    assert meta["width_multiplier"] == 0.25 and meta["input_length"] == SHAPE[1] and meta["in_channels"] == 5
    assert meta["family"] == "flatvel-b" and meta["pfm_fingerprint"] == pfm_fingerprint(pfm)
    assert not list(dirs["flatvel-b"].parent.glob(".*tmp*"))  # nothing half-written left beside it
    torch.save(pfm.state_dict(), tmp_path / "pfm.pt")
    served = load_adapters(copy.deepcopy(pfm), dirs)
    fp = adapter_footprint(tmp_path / "pfm.pt", dirs.values(), model=served)
    assert fp["tasks"] == 3 and fp["disk_fft"] == 3 * (tmp_path / "pfm.pt").stat().st_size
    assert fp["disk_pfm_plus_adapters"] < 0.6 * fp["disk_fft"]
    assert fp["memory_pfm_plus_adapters"] < 0.6 * fp["memory_fft"]


def test_bad_adapters_fail_with_the_fix(pfm, saved, tmp_path):
    _, _, dirs = saved
    served = load_adapters(copy.deepcopy(pfm), dirs)
    with pytest.raises(KeyError, match=r"no adapter named 'style-b'.*load_adapters"):
        use_adapter(served, "style-b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapters(copy.deepcopy(pfm), {"style-b": tmp_path / "nowhere"})
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapters(copy.deepcopy(pfm), {"style-b": tmp_path})
    with pytest.raises(ValueError, match="adapters is empty"):
        load_adapters(copy.deepcopy(pfm), {})
    wide = InversionNet(width_multiplier=0.5, input_length=SHAPE[1])
    with pytest.raises(ValueError, match=r"width multiplier 0.25.*this PFM has 0.5"):
        check_adapter(wide, dirs["flatvel-b"])
    longer = InversionNet(width_multiplier=0.25, input_length=250)
    with pytest.raises(ValueError, match=r"input length \(time samples\) 100.*has 250"):
        load_adapters(longer, {"flatvel-b": dirs["flatvel-b"]})
    other = copy.deepcopy(pfm)
    with torch.no_grad():
        other.convblock1.layers[0].weight.mul_(1.01)
    with pytest.raises(ValueError, match="other PFM weights|not on these"):
        load_adapters(copy.deepcopy(other), {"flatvel-b": dirs["flatvel-b"]})
    assert load_adapters(other, {"flatvel-b": dirs["flatvel-b"]}, check_weights=False) is not None
