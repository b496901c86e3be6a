"""generate_dataset: layout, round trip through OpenFWIDataset, resumability, determinism."""

import json

import numpy as np
import pytest

import fwi_teach.data.generate as gen
from fwi_teach.data import OpenFWIDataset, generate_dataset, plan_files, velocity_models
from fwi_teach.runtime import TEMP_SUFFIX
from fwi_teach.physics import Acquisition, simulate

TINY = Acquisition(source_locations=((1, 0), (1, 69)), receiver_locations=tuple((1, c) for c in range(70)), nt=100)


def fake_simulate(models, acquisition=None, boundary="thin", device=None, batch_size=None, progress=False):
    """Fast stand-in: a deterministic function of each model with the right shape."""
    v = np.asarray(models, dtype=np.float32)[:, 0]
    t = np.linspace(0, 1, acquisition.nt, dtype=np.float32)
    trace = v.mean(axis=1)[:, None, None, :] / 100.0 * np.sin(7 * t)[None, None, :, None]
    return np.broadcast_to(trace, (len(v), acquisition.n_shots, acquisition.nt, 70)).astype(np.float32)


class Interrupt(RuntimeError):
    pass


def counting(fn, fail_after=None):
    calls = []

    def wrapped(models, *args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise Interrupt("simulated crash")
        calls.append(len(models))
        return fn(models, *args, **kwargs)

    wrapped.calls = calls
    return wrapped


def file_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.npy"))}


def test_plan_files_splits_train_then_val_then_test():
    plan = plan_files(5, 3, 2, n_test=3)
    assert [(f["split"], f["start"], f["samples"]) for f in plan] == [
        ("train", 0, 2), ("train", 2, 2), ("train", 4, 1), ("val", 5, 2), ("val", 7, 1), ("test", 8, 2),
        ("test", 10, 1)]
    assert [f["index"] for f in plan] == list(range(7))


@pytest.mark.parametrize("family", ["flatvel-a", "curvefault-b", "style-a"])
def test_no_velocity_map_is_in_two_splits(tmp_path, monkeypatch, family):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    root = generate_dataset(family, tmp_path / family, n_train=60, n_val=20, n_test=20, samples_per_file=25,
                            acquisition=TINY, progress=False)
    splits = {s: OpenFWIDataset(root, split=s, normalize=False) for s in ("train", "val", "test")}
    assert [len(d) for d in splits.values()] == [60, 20, 20]
    maps = {s: {d.raw_sample(i)[1].tobytes() for i in range(len(d))} for s, d in splits.items()}
    assert not (maps["train"] & maps["val"]) and not (maps["train"] & maps["test"]) and not (maps["val"] & maps["test"])
    assert json.loads((root / "fwi_teach.json").read_text())["splits_disjoint"]


def test_a_map_repeated_across_splits_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    monkeypatch.setattr(gen, "velocity_models", lambda family, n, seed=0, start=0: np.full((n, 1, 70, 70), 2000.0,
                                                                                          np.float32))
    with pytest.raises(ValueError, match="not be disjoint"):
        generate_dataset("flatvel-a", tmp_path / "same", n_train=2, n_val=1, n_test=1, acquisition=TINY,
                         progress=False)


def test_a_set_without_test_split_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    root = generate_dataset("flatvel-a", tmp_path / "old", n_train=2, n_val=1, acquisition=TINY, progress=False)
    assert not (root / "test.txt").exists()
    with pytest.raises(ValueError, match="n_test > 0"):
        OpenFWIDataset(root, split="test")


def test_round_trip_with_real_physics(tmp_path):
    root = generate_dataset("FlatVel-A", tmp_path / "fv", n_train=3, n_val=2, seed=4, samples_per_file=2,
                            acquisition=TINY, progress=False)
    assert sorted(p.name for p in (root / "data").iterdir()) == ["data1.npy", "data2.npy", "data3.npy"]
    assert (root / "train.txt").read_text() == "data/data1.npy\tmodel/model1.npy\ndata/data2.npy\tmodel/model2.npy\n"
    assert (root / "val.txt").read_text() == "data/data3.npy\tmodel/model3.npy\n"
    manifest = json.loads((root / "fwi_teach.json").read_text())
    assert manifest["complete"] and manifest["family"] == "flatvel-a" and manifest["seed"] == 4
    assert manifest["acquisition"]["nt"] == 100 and manifest["boundary"] == "thin"
    assert all(f["complete"] for f in manifest["files"])
    seis_val = np.load(root / "data" / "data3.npy")
    assert seis_val.shape == (2, 2, 100, 70) and seis_val.dtype == np.float32
    assert manifest["data_min"] <= seis_val.min() and manifest["data_max"] >= seis_val.max()

    models = velocity_models("flatvel-a", 5, seed=4)
    train, val = OpenFWIDataset(root), OpenFWIDataset(root, split="val")
    assert train.family == "flatvel-a" and len(train) == 3 and len(val) == 2
    np.testing.assert_allclose(val.denormalize_velocity(val[1][1]).numpy(), models[4], rtol=1e-6)
    np.testing.assert_array_equal(val.raw_sample(0)[0], simulate(models[3:4], TINY)[0])
    np.testing.assert_allclose(train.denormalize_seismic(train[2][0]).numpy(), train.raw_sample(2)[0],
                               rtol=1e-4, atol=1e-4)


def test_fault_file_names(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    root = generate_dataset("flatfault-a", tmp_path / "ff", 7, 2, samples_per_file=2, acquisition=TINY, progress=False)
    seis = sorted(p.name for p in root.glob("seis*.npy"))
    assert seis == ["seis2_1_0.npy", "seis2_1_1.npy", "seis3_1_0.npy", "seis3_1_1.npy", "seis4_1_0.npy"]
    lines = (root / "train.txt").read_text().splitlines()
    assert lines[:4] == ["seis2_1_0.npy\tvel2_1_0.npy", "seis3_1_0.npy\tvel3_1_0.npy",
                         "seis4_1_0.npy\tvel4_1_0.npy", "seis2_1_1.npy\tvel2_1_1.npy"]
    assert (root / "val.txt").read_text() == "seis3_1_1.npy\tvel3_1_1.npy\n"
    b = generate_dataset("curvefault-b", tmp_path / "cb", 2, 0, samples_per_file=1, acquisition=TINY, progress=False)
    assert sorted(p.name for p in b.glob("vel*.npy")) == ["vel6_1_0.npy", "vel7_1_0.npy"]
    assert (b / "val.txt").read_text() == ""
    with pytest.raises(ValueError, match="split 'val' .* has no files"):
        OpenFWIDataset(b, split="val")


def test_resume_after_interruption_is_byte_identical(tmp_path, monkeypatch):
    kwargs = dict(n_train=5, n_val=2, seed=1, samples_per_file=2, acquisition=TINY, progress=False)
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    reference = generate_dataset("curvevel-b", tmp_path / "ref", **kwargs)

    crashing = counting(fake_simulate, fail_after=1)
    monkeypatch.setattr(gen, "simulate", crashing)
    root = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        generate_dataset("curvevel-b", root, **kwargs)
    manifest = json.loads((root / "fwi_teach.json").read_text())
    assert [f["complete"] for f in manifest["files"]] == [True, False, False, False]
    assert not manifest["complete"] and not (root / "train.txt").exists()
    with pytest.raises(ValueError, match=r"incomplete \(1 of 4 files\).*rerun"):
        OpenFWIDataset(root)
    stale = root / "data" / f".data2.npy.abc123{TEMP_SUFFIX}"
    stale.write_bytes(b"half a file")

    resumed = counting(fake_simulate)
    monkeypatch.setattr(gen, "simulate", resumed)
    generate_dataset("curvevel-b", root, **kwargs)
    assert not stale.exists()
    assert resumed.calls == [2, 1, 2]  # the finished first file was not simulated again
    assert file_bytes(root) == file_bytes(reference)
    assert (root / "train.txt").read_text() == (reference / "train.txt").read_text()
    assert (root / "val.txt").read_text() == (reference / "val.txt").read_text()
    assert json.loads((root / "fwi_teach.json").read_text())["complete"]


def test_half_written_pair_is_completed_without_simulating(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    root = generate_dataset("style-a", tmp_path / "st", 4, 0, samples_per_file=2, acquisition=TINY, progress=False)
    before = file_bytes(root)
    (root / "model" / "model2.npy").unlink()  # as if killed between the two renames
    np.save(root / "data" / "data1.npy", np.zeros((1, 2, 100, 70), np.float32))  # wrong shape: redo
    calls = counting(fake_simulate)
    monkeypatch.setattr(gen, "simulate", calls)
    generate_dataset("style-a", root, 4, 0, samples_per_file=2, acquisition=TINY, progress=False)
    assert calls.calls == [2]
    assert file_bytes(root) == before
    seis2 = root / "data" / "data2.npy"
    seis2.write_bytes(seis2.read_bytes()[:-7])  # truncated by a failing disk: redo
    generate_dataset("style-a", root, 4, 0, samples_per_file=2, acquisition=TINY, progress=False)
    assert calls.calls == [2, 2]
    assert file_bytes(root) == before


def test_real_physics_is_deterministic(tmp_path):
    a = generate_dataset("curvefault-a", tmp_path / "a", 1, 0, seed=9, samples_per_file=1, acquisition=TINY,
                         progress=False)
    b = generate_dataset("curvefault-a", tmp_path / "b", 1, 0, seed=9, samples_per_file=1, acquisition=TINY,
                         progress=False)
    assert file_bytes(a) == file_bytes(b) and len(file_bytes(a)) == 2


def test_refuses_other_settings_and_foreign_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    root = generate_dataset("flatvel-b", tmp_path / "x", 2, 1, samples_per_file=2, acquisition=TINY, progress=False)
    with pytest.raises(ValueError, match=r"different settings \(seed: 0 there vs 1 now\).*another root or delete"):
        generate_dataset("flatvel-b", root, 2, 1, seed=1, samples_per_file=2, acquisition=TINY, progress=False)
    with pytest.raises(ValueError, match="different settings.*acquisition"):
        generate_dataset("flatvel-b", root, 2, 1, samples_per_file=2, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*no fwi_teach.json"):
        generate_dataset("flatvel-b", foreign, 2, 1, acquisition=TINY, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_train=0, n_val=1), "n_train must be an integer >= 1"),
    (dict(n_train=2, n_val=-1), "n_val must be an integer >= 0"),
    (dict(n_train=2, n_val=0, samples_per_file=0), "samples_per_file must be"),
    (dict(n_train=2, n_val=0, boundary="pml"), "boundary must be one of"),
    (dict(n_train=2, n_val=0, seed=-3), "seed must be a non-negative integer"),
    (dict(n_train=2, n_val=0, acquisition=Acquisition(((1, 0),), ((1, 80),), nt=10)), "receiver 0 .* outside"),
    (dict(n_train=2, n_val=0, acquisition=Acquisition(((1, 0),), ((1, 5),), nt=10, dt_s=2e-3)), "unstable"),
])
def test_invalid_arguments(tmp_path, kwargs, match):
    kwargs = {"acquisition": TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_dataset("flatvel-a", tmp_path / "r", progress=False, **kwargs)
    assert not (tmp_path / "r").exists()  # nothing written before the arguments are checked


def test_unknown_family(tmp_path):
    with pytest.raises(ValueError, match="unknown velocity family 'marmousi'"):
        generate_dataset("marmousi", tmp_path / "r", 1, 0)


def test_file_tree_lists_sizes_and_array_shapes(tmp_path):
    from fwi_teach.data.layout import file_tree

    root = tmp_path / "set"
    (root / "data").mkdir(parents=True)
    np.save(root / "data" / "data1.npy", np.zeros((2, 5, 10, 7), dtype=np.float32))
    (root / "train.txt").write_text("x\n")
    lines = file_tree(root).splitlines()
    assert lines[0] == "set/" and len(lines) == 3
    assert lines[1].split()[0] == "data/data1.npy" and lines[1].endswith("float32 (2, 5, 10, 7)")
    assert lines[2].split()[0] == "train.txt" and "KiB" in lines[2]
    with pytest.raises(NotADirectoryError, match="not a folder"):
        file_tree(root / "train.txt")
