"""The experiment chain on a tiny test-only profile: runs, caching, resuming, results files, CLI.

The profile ``tiny`` (4 training and 2 test samples per family, 100 time samples, two
pretraining families) runs the whole chain once per module (~20 s on 2 idle cores); the
tests then check what it left in the cache.
"""

import csv
import dataclasses
import json

import pytest
import torch

import fwi_teach
from fwi_teach import experiments as ex
from fwi_teach.experiments import cache as artifacts
from fwi_teach.cli import main
from fwi_teach.experiments.profiles import PROFILES, get_profile

TINY = dataclasses.replace(
    get_profile("smoke"), name="tiny", n_train=4, n_val=2, n_test=3, nt=100, batch_size=2,
    pretrain_families=("flatvel-a", "curvevel-a"), baseline_families=("flatvel-a", "style-a"),
    finetune_families=("style-a",), low_data_families=("style-a",), low_data_fractions=(0.5, 1.0))
METRICS = ("mae", "rmse", "ssim", "mae_mps", "rmse_mps")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("cache")
    record = ex.run_chain(TINY, cache_dir=root, device="cpu", progress=False)
    return root, record


def _results(root, name):
    return json.loads((root / "tiny" / "results" / f"{name}.json").read_text())


def test_chain_times_every_stage_and_writes_every_results_file(cache):
    root, record = cache
    assert [r["stage"] for r in record["rows"]] == ["data", "pretrain", "baselines", "finetune", "matrix", "lowdata"]
    assert all(r["wall_time_s"] >= 0 and r["estimated_s"] > 0 for r in record["rows"])
    assert record["total_s"] >= sum(r["wall_time_s"] for r in record["rows"]) * 0.99
    names = {p.stem for p in (root / "tiny" / "results").glob("*.json")}
    assert names == {"chain-s0", "pfm-s0", "baseline-flatvel-a-s0", "baseline-style-a-s0", "fft-style-a-s0",
                     "lora-style-a-s0", "baseline-style-a-f0.5-s0", "fft-style-a-f0.5-s0", "lora-style-a-f0.5-s0",
                     "matrix-s0", "lowdata-s0"}
    assert sorted(p.name for p in (root / "tiny" / "data").iterdir()) == sorted(fwi_teach.data.FAMILIES)
    assert not list(root.rglob("checkpoints")), "training checkpoints are removed once a run is finished"
    assert not list(root.rglob("*.partial")) and not list(root.rglob(".*tmp*"))


def test_run_results_hold_metrics_parameters_memory_and_environment(cache):
    root, _ = cache
    pfm = _results(root, "pfm-s0")
    assert pfm["profile"] == "tiny" and pfm["seed"] == 0 and pfm["profile_settings"] == TINY.settings()
    assert [r["eval_family"] for r in pfm["rows"]] == ["flatvel-a", "curvevel-a"]
    env = pfm["environment"]
    assert env["package_version"] == fwi_teach.__version__ and env["torch_version"] == torch.__version__
    assert env["device"] == "cpu" and "git_commit" in env
    import subprocess
    from pathlib import Path

    head = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:  # a clone: the record names its commit
        assert env["git_commit"] == head.stdout.strip()
    assert len(pfm["train"]["history"]) == TINY.epochs_pretrain
    for row in pfm["rows"]:
        assert row["n_samples"] == TINY.n_test and row["n_train_samples"] == 2 * TINY.n_train
        assert all(isinstance(row[m], float) for m in METRICS) and 0 < row["mae"] <= row["rmse"] < 2
        assert row["mae_mps"] == pytest.approx(1500 * row["mae"])
        assert row["trainable_params"] == row["total_params"] > 0 and row["peak_memory_mb"] > 0
        assert row["wall_time_s"] > 0 and row["package_version"] == fwi_teach.__version__
    with open(root / "tiny" / "results" / "pfm-s0.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["eval_family"] for r in rows] == ["flatvel-a", "curvevel-a"]
    assert float(rows[0]["mae"]) == pytest.approx(pfm["rows"][0]["mae"])


def test_lora_trains_few_weights_and_its_adapter_reloads_to_the_same_metrics(cache):
    root, _ = cache
    lora, fft = _results(root, "lora-style-a-s0")["rows"][0], _results(root, "fft-style-a-s0")["rows"][0]
    assert lora["method"] == "lora" and fft["method"] == "fft"
    assert lora["trainable_params"] < 0.1 * fft["trainable_params"]
    assert lora["total_params"] > fft["total_params"]  # frozen base + adapters
    adapter = root / "tiny" / "models" / "lora-style-a-s0" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    model = ex.load_model("lora:style-a", TINY, cache_dir=root)
    from fwi_teach.training import evaluate

    again = evaluate(model, ex.load_split("style-a", "test", TINY, cache_dir=root, progress=False), device="cpu")
    assert again["mae"] == pytest.approx(lora["mae"], rel=1e-5)


def test_matrix_covers_every_model_on_every_family(cache):
    root, _ = cache
    rows = _results(root, "matrix-s0")["rows"]
    models = ["pfm", "baseline:flatvel-a", "baseline:style-a", "fft:style-a", "lora:style-a"]
    assert {(r["model"], r["eval_family"]) for r in rows} == {(m, f) for m in models for f in fwi_teach.data.FAMILIES}
    by = {(r["model"], r["eval_family"]): r for r in rows}
    assert by[("pfm", "curvevel-a")]["relation"] == "train"
    assert by[("lora:style-a", "flatvel-a")]["relation"] == "pretrain"
    assert by[("baseline:style-a", "flatvel-a")]["relation"] == "unseen"
    own = _results(root, "baseline-style-a-s0")["rows"][0]
    assert by[("baseline:style-a", "style-a")]["mae"] == pytest.approx(own["mae"], rel=1e-5)


def test_low_data_sweep_shares_the_full_data_runs(cache):
    root, _ = cache
    rows = _results(root, "lowdata-s0")["rows"]
    got = {(r["method"], r["fraction"]): r for r in rows}
    assert set(got) == {(m, f) for m in ("scratch", "fft", "lora") for f in (0.5, 1.0)}
    assert got[("lora", 0.5)]["n_train_samples"] == 2 and got[("lora", 1.0)]["n_train_samples"] == 4
    assert got[("scratch", 1.0)]["experiment"] == "baseline-style-a-s0"
    assert got[("fft", 1.0)]["mae"] == _results(root, "fft-style-a-s0")["rows"][0]["mae"]


def test_second_call_reuses_the_cache_without_training(cache, monkeypatch):
    root, _ = cache
    import fwi_teach.training as training

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(training, "fit", no_training)
    monkeypatch.setattr(training, "evaluate", no_training)
    first = _results(root, "fft-style-a-s0")
    assert ex.finetune("style-a", "fft", TINY, cache_dir=root, device="cpu") == first
    assert ex.pretrain_pfm(TINY, cache_dir=root, device="cpu")["rows"] == _results(root, "pfm-s0")["rows"]
    assert ex.evaluation_matrix(TINY, cache_dir=root, device="cpu", progress=False)["rows"]


def test_a_damaged_cached_model_names_its_fix_and_force_retrains_it(cache, tmp_path, capsys, monkeypatch):
    import re
    import shutil

    from fwi_teach.runtime import CorruptFileError

    root, _ = cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    folder = copy / "tiny" / "models" / "baseline-style-a-s0"
    assert (folder / artifacts.CHECKSUMS_FILE).is_file()
    data = bytearray((folder / "model.pt").read_bytes())
    data[-200] ^= 0xFF  # one flipped byte: torch may still read it, the checksum does not match
    (folder / "model.pt").write_bytes(bytes(data))
    advice = "fwi-teach baseline style-a --profile tiny --seed 0 --force"
    with pytest.raises(CorruptFileError, match=rf"model\.pt is damaged: its checksum differs.*{re.escape(advice)}"):
        artifacts.load_model("baseline:style-a", TINY, copy)
    (folder / "model.pt").write_bytes(b"")  # and an empty file
    with pytest.raises(CorruptFileError, match=re.escape(advice)):
        artifacts.load_model("baseline:style-a", TINY, copy)
    # the advice, followed, works: the run is trained again (same weights on CPU) and loads
    monkeypatch.setitem(PROFILES, "tiny", TINY)
    assert main(advice.split()[1:] + ["--cache-dir", str(copy), "--device", "cpu", "--no-progress"]) == 0
    again = _results(copy, "baseline-style-a-s0")
    assert again["rows"][0]["mae"] == _results(root, "baseline-style-a-s0")["rows"][0]["mae"]
    assert artifacts.load_model("baseline:style-a", TINY, copy) is not None


def test_interrupted_run_resumes_from_its_checkpoint(cache, monkeypatch):
    root, _ = cache
    calls = []
    real_save = artifacts.save_model

    def crash(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt("power cut after training")

    monkeypatch.setattr(artifacts, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        ex.train_baseline("flatvel-a", TINY, cache_dir=root, seed=1, device="cpu", progress=False)
    folder = root / "tiny" / "models" / "baseline-flatvel-a-s1"
    assert (folder / "checkpoints" / "last.pt").is_file() and not (folder / "model.pt").exists()
    monkeypatch.setattr(artifacts, "save_model", real_save)
    record = ex.train_baseline("flatvel-a", TINY, cache_dir=root, seed=1, device="cpu", progress=False)
    assert record["train"]["resumed_from_epoch"] == TINY.epochs_baseline and record["train"]["steps_this_call"] == 0
    assert (folder / "model.pt").is_file() and not (folder / "checkpoints").exists()
    assert record["name"] == "baseline-flatvel-a-s1" and calls == [1]


def test_user_errors_are_clear(cache, tmp_path):
    root, _ = cache
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        ex.pretrain_pfm("huge", cache_dir=root)
    with pytest.raises(ValueError, match="saltdome"):
        ex.train_baseline("saltdome", TINY, cache_dir=root)
    with pytest.raises(ValueError, match="method='adapter'"):
        ex.finetune("style-a", "adapter", TINY, cache_dir=root)
    with pytest.raises(ValueError, match=r"fraction=0.0"):
        ex.train_baseline("style-a", TINY, cache_dir=root, fraction=0.0)
    with pytest.raises(ValueError, match="data_dir"):
        ex.pretrain_pfm("paper", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="model 'big:style-a'"):
        ex.evaluation_matrix(TINY, models=["big:style-a"], cache_dir=root)
    with pytest.raises(FileNotFoundError, match="fwi-teach baseline style-b"):
        ex.load_model("baseline:style-b", TINY, cache_dir=root)
    changed = dataclasses.replace(TINY, lr_baseline=0.5)
    with pytest.raises(ValueError, match=r"other settings.*lr_baseline: 0.001 there vs 0.5 now"):
        ex.train_baseline("style-a", changed, cache_dir=root)


def test_real_data_folders_are_found_by_family_name(cache, tmp_path):
    root, _ = cache
    real = tmp_path / "openfwi"
    real.mkdir()
    (real / "Style_A").symlink_to(root / "tiny" / "data" / "style-a", target_is_directory=True)
    assert ex.find_family_dir(real, "style-a") == real / "Style_A"
    with pytest.raises(FileNotFoundError, match=r"no folder for curvefault-b.*Style_A"):
        ex.find_family_dir(real, "CurveFault_B")
    record = ex.train_baseline("style-a", TINY, cache_dir=tmp_path / "c", data_dir=real, device="cpu", progress=False)
    assert record["data_source"] == str(real.resolve()) and record["rows"][0]["n_samples"] == TINY.n_test
    assert not (tmp_path / "c" / "tiny" / "data").exists(), "real data must not be generated again"
    with pytest.raises(ValueError, match="data: generated there"):
        ex.train_baseline("style-a", TINY, cache_dir=root, data_dir=real)


def test_cli_profiles_and_a_cached_experiment(cache, capsys, monkeypatch):
    root, _ = cache
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| profile |") and "| `paper` |" in out
    monkeypatch.setitem(PROFILES, "tiny", TINY)
    code = main(["finetune", "Style_A", "--method", "lora", "--profile", "tiny", "--cache-dir", str(root),
                 "--device", "cpu", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    mae = _results(root, "lora-style-a-s0")["rows"][0]["mae"]
    assert "lora-style-a-s0" in out and f"{mae:.4g}" in out
    assert f"results: {root / 'tiny' / 'results' / 'lora-style-a-s0.json'}" in out
    assert main(["pretrain", "--profile", "huge", "--cache-dir", str(root)]) == 1
    assert "unknown profile 'huge'" in capsys.readouterr().err


def test_a_held_run_is_refused_without_waiting_and_a_stale_lock_file_is_no_obstacle(tmp_path):
    import os

    from fwi_teach.experiments.lock import LockTimeout, run_lock

    folder = tmp_path / "models" / "baseline-style-a-s0"
    lock = folder.with_name(folder.name + ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text("1")  # what a crashed process (or an older version) left: not a lock by itself
    with run_lock(folder) as held:
        assert held == lock and lock.read_text().split(":")[0] == str(os.getpid())
        with pytest.raises(LockTimeout, match=rf"being trained by process {os.getpid()} .*stop that process"):
            with run_lock(folder, wait=False):
                pass
    assert lock.read_text() == ""  # released: the file stays, empty


def test_training_and_selection_never_read_the_test_split(tmp_path, monkeypatch):
    from fwi_teach import training

    reads = {("test", True): 0, ("test", False): 0, ("val", True): 0, ("val", False): 0}
    in_fit = [False]
    real_fit, real_load = training.fit, artifacts.load_split

    def spy_fit(*args, **kwargs):
        in_fit[0] = True
        try:
            return real_fit(*args, **kwargs)
        finally:
            in_fit[0] = False

    class Spy(torch.utils.data.Dataset):
        def __init__(self, ds, split):
            self.ds, self.split = ds, split

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            reads[(self.split, in_fit[0])] += 1
            return self.ds[i]

    def spy_load(family, split, *args, **kwargs):
        ds = real_load(family, split, *args, **kwargs)
        return Spy(ds, split) if split in ("val", "test") else ds

    monkeypatch.setattr(training, "fit", spy_fit)
    monkeypatch.setattr(artifacts, "load_split", spy_load)
    record = ex.train_baseline("flatvel-a", TINY, cache_dir=tmp_path, device="cpu", progress=False)
    assert reads[("test", True)] == 0, "fit (training, best-epoch selection) read the test split"
    assert reads[("val", True)] > 0 and reads[("test", False)] == TINY.n_test  # reported once, after training
    assert record["rows"][0]["n_samples"] == TINY.n_test and len(record["per_sample"]["flatvel-a"]["ssim"]) == TINY.n_test


def test_an_interrupted_chain_keeps_the_time_of_the_stages_it_did(cache, monkeypatch):
    root, _ = cache
    chain = root / "tiny" / "results" / "chain-s0.json"
    record = json.loads(chain.read_text())
    assert record["complete"] is True
    record["complete"] = False  # as left by a call that stopped after some steps
    for row in record["rows"]:
        row["wall_time_s"] = 100.0 if row["stage"] == "data" else 0.0
    record["total_s"] = 100.0
    chain.write_text(json.dumps(record))
    again = ex.run_chain(TINY, cache_dir=root, device="cpu", progress=False)  # everything cached
    times = {r["stage"]: r["wall_time_s"] for r in again["rows"]}
    assert 100.0 <= times["data"] < 110.0 and again["complete"] and again["total_s"] >= 100.0
    fresh = ex.run_chain(TINY, cache_dir=root, device="cpu", progress=False)  # complete before: a new record
    assert {r["stage"]: r["wall_time_s"] for r in fresh["rows"]}["data"] < 10.0
