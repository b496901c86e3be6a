"""The fwi-teach command line, in process via main() and as `python -m fwi_teach`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fwi_teach.data.generate as gen
from fwi_teach.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def fake_simulate(models, acquisition=None, boundary="thin", device=None, batch_size=None, progress=False):
    v = np.asarray(models, dtype=np.float32)[:, 0]
    trace = (v[:, :1, :] - 3000.0) / 100.0  # (N, 1, 70)
    return np.broadcast_to(trace[:, None], (len(v), acquisition.n_shots, acquisition.nt, 70)).astype(np.float32)


def run_module(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "fwi_teach", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def generated(tmp_path, monkeypatch):
    """A FlatVel-B set made through the CLI with the OpenFWI acquisition and a fast fake simulator."""
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    root = tmp_path / "flatvel_b_small"
    code = main(["data", "generate", "FlatVel-B", "--root", str(root), "--train", "3", "--val", "1",
                 "--seed", "2", "--samples-per-file", "2", "--no-progress"])
    assert code == 0
    return root


def test_generate_then_info_in_process(generated, capsys):
    manifest = json.loads((generated / "fwi_teach.json").read_text())
    assert manifest["family"] == "flatvel-b" and manifest["seed"] == 2 and manifest["n_train"] == 3
    assert manifest["acquisition"]["nt"] == 1000 and len(manifest["acquisition"]["source_locations"]) == 5
    assert np.load(generated / "data" / "data1.npy").shape == (2, 5, 1000, 70)
    capsys.readouterr()
    assert main(["data", "info", str(generated)]) == 0
    out = capsys.readouterr().out
    assert "family:  flatvel-b" in out
    assert "train:   3 samples in 2 files; seismic sample (5, 1000, 70), velocity sample (1, 70, 70)" in out
    assert "val:   1 samples in 1 files" in out
    assert f"{manifest['data_min']:.6g} .. {manifest['data_max']:.6g} (from manifest)" in out


def test_info_scan_on_download_without_manifest(tmp_path, capsys):
    root = tmp_path / "CurveVel_A"
    (root / "data").mkdir(parents=True)
    (root / "model").mkdir()
    for k in range(1, 61):
        np.save(root / "data" / f"data{k}.npy", np.full((1, 5, 4, 70), k, np.float32))
        np.save(root / "model" / f"model{k}.npy", np.full((1, 1, 70, 70), 2000, np.float32))
    assert main(["data", "info", str(root)]) == 0
    assert "not recorded (no manifest); rerun with --scan" in capsys.readouterr().out
    assert main(["data", "info", str(root), "--scan"]) == 0
    out = capsys.readouterr().out
    assert "family:  curvevel-a" in out and "1 .. 60 (from scan)" in out
    assert "train:   48 samples in 48 files" in out


def test_errors_return_one_with_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gen, "simulate", fake_simulate)
    assert main(["data", "generate", "flatvel-q", "--root", str(tmp_path / "r"), "--train", "1"]) == 1
    assert "error: unknown velocity family 'flatvel-q'" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["data", "generate", "flatvel-a", "--root", str(tmp_path / "r"), "--train", "1", "--boundary", "pml"])
    assert exc.value.code == 2


def test_parser_lists_data_commands():
    parser = build_parser()
    args = parser.parse_args(["data", "generate", "style-a", "--root", "x", "--train", "5", "--boundary", "openfwi"])
    assert (args.family, args.train, args.val, args.seed, args.samples_per_file, args.boundary) == (
        "style-a", 5, 0, 0, 500, "openfwi")
    assert callable(args.func)


def test_python_dash_m(generated):
    help_run = run_module("--help")
    assert help_run.returncode == 0 and "data" in help_run.stdout
    info = run_module("data", "info", str(generated))
    assert info.returncode == 0, info.stderr
    assert "family:  flatvel-b" in info.stdout and "train:   3 samples" in info.stdout
    clash = run_module("data", "generate", "flatvel-b", "--root", str(generated), "--train", "4", "--val", "1",
                       "--seed", "2", "--samples-per-file", "2")
    assert clash.returncode == 1 and "different settings (n_train: 3 there vs 4 now)" in clash.stderr
