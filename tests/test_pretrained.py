"""The PFM shipped with the package: safetensors round trip, metadata, clear errors."""

import pytest
import torch

from fwi_teach.models import InversionNet
from fwi_teach.experiments.pretrained import REFERENCE_PFM, load_reference_pfm, save_reference_pfm
from fwi_teach.experiments.profiles import get_profile


def test_save_and_load_round_trip_without_pickles(tmp_path, monkeypatch):
    from fwi_teach.experiments import cache as artifacts

    torch.manual_seed(0)
    net = InversionNet(width_multiplier=0.25, input_length=250).eval()
    monkeypatch.setattr(artifacts, "load_model", lambda *a, **k: net)
    path = save_reference_pfm("cpu", cache_dir=tmp_path, path=tmp_path / "pfm.safetensors")
    assert path.read_bytes()[:8] != b"\x80\x02\x8a\x0a" and not list(tmp_path.glob("*.tmp"))  # not a pickle
    back, info = load_reference_pfm(path)
    assert info["profile"] == "cpu" and info["input_length"] == 250 and info["width_multiplier"] == 0.25
    assert info["pretrain_families"] == list(get_profile("cpu").pretrain_families)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    x = torch.randn(2, 5, 250, 70)
    assert torch.equal(net(x), back(x))


def test_missing_or_foreign_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="save_reference_pfm"):
        load_reference_pfm(tmp_path / "nothing.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not written by save_reference_pfm"):
        load_reference_pfm(tmp_path / "other.safetensors")


@pytest.mark.skipif(not REFERENCE_PFM.is_file(), reason="the reference PFM is committed with the cpu results")
def test_the_shipped_pfm_fits_the_smoke_profile_input():
    model, info = load_reference_pfm()
    assert info["profile"] == "cpu" and info["input_length"] == get_profile("smoke").input_length
    assert set(info["test_metrics"]) == set(info["pretrain_families"])
    with torch.no_grad():
        out = model(torch.zeros(1, 5, info["input_length"], 70))
    assert out.shape == (1, 1, 70, 70) and out.abs().max() <= 1
