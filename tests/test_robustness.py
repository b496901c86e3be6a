"""Failures a user meets end in one clear message; processes that share a cache never corrupt each other.

Concurrency is tested with real processes; corrupt files by damaging real ones; the command
line by asserting a non-zero exit code and no Python traceback.
"""

import errno
import os
import re
import stat
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fwi_teach.experiments.lock import LockTimeout, run_lock
from fwi_teach.physics import Acquisition, simulate
from fwi_teach.runtime import (CorruptFileError, atomic_write_bytes, folder_swap, load_tensors, process_alive,
                               process_fingerprint, remove_stale_temporaries)

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _python(code, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(path, timeout_s=60):
    start = time.monotonic()
    while not Path(path).exists():
        assert time.monotonic() - start < timeout_s, f"{path} never appeared"
        time.sleep(0.05)


# -------------------------------------------------------------------------------- processes
def test_process_fingerprints_survive_pid_reuse():
    me = process_fingerprint()
    assert process_alive(me) and process_alive(str(os.getpid()))
    pid, boot, start = me.split(":")
    if start:  # Linux: another start time under the same PID is another process
        assert not process_alive(f"{pid}:{boot}:{int(start) + 1}")
    if boot:  # a lock from before a reboot
        assert not process_alive(f"{pid}:not-this-boot:{start}")
    child = _python("pass")
    child.wait()
    assert not process_alive(str(child.pid)) and not process_alive("") and not process_alive("x:y")


def test_temporary_files_of_live_writers_are_kept(tmp_path):
    sleeper = _python("import time; time.sleep(30)")
    dead = _python("pass")
    dead.wait()
    try:
        live_tmp = tmp_path / f".data1.npy.{sleeper.pid}.abcd1234.partial"
        dead_tmp = tmp_path / f".data2.npy.{dead.pid}.abcd1234.partial"
        old_tmp = tmp_path / ".data3.npy.abcd1234.partial"  # written before temporary names held a PID
        for p in (live_tmp, dead_tmp, old_tmp):
            p.write_bytes(b"x")
        assert sorted(remove_stale_temporaries(tmp_path)) == sorted([dead_tmp, old_tmp])
        assert live_tmp.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_files_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "shared.bin", b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.bin").stat().st_mode) == 0o644


def test_a_second_process_waits_for_the_run_then_proceeds(tmp_path):
    folder, held, done = tmp_path / "models" / "baseline-style-a-s0", tmp_path / "held", tmp_path / "done"
    child = _python(f"""
        import time
        from pathlib import Path
        from fwi_teach.experiments.lock import run_lock
        with run_lock(Path({str(folder)!r})):
            Path({str(held)!r}).touch()
            time.sleep(1.5)
            Path({str(done)!r}).touch()
    """)
    _wait_for(held)
    with pytest.raises(LockTimeout, match=rf"being trained by process {child.pid} "):
        with run_lock(folder, wait=False):
            pass
    with run_lock(folder, poll_s=0.05):
        assert done.exists(), "the lock was taken while the other process still held it"
    assert child.wait(timeout=60) == 0, child.stderr.read()


def test_a_lock_of_a_killed_process_is_free_at_once(tmp_path):
    folder, held = tmp_path / "models" / "pfm-s0", tmp_path / "held"
    child = _python(f"""
        import time
        from pathlib import Path
        from fwi_teach.experiments.lock import run_lock
        with run_lock(Path({str(folder)!r})):
            Path({str(held)!r}).touch()
            time.sleep(60)
    """)
    _wait_for(held)
    child.kill()  # no clean-up runs: the kernel releases the lock
    child.wait()
    start = time.monotonic()
    with run_lock(folder, timeout_s=5):
        pass
    assert time.monotonic() - start < 5


def test_two_processes_never_hold_one_lock_together(tmp_path):
    folder, log = tmp_path / "models" / "fft-style-a-s0", tmp_path / "log"
    code = f"""
        import os, time
        from pathlib import Path
        from fwi_teach.experiments.lock import run_lock
        for _ in range(5):
            with run_lock(Path({str(folder)!r}), poll_s=0.01):
                with open({str(log)!r}, "a") as fh:
                    fh.write(f"in {{os.getpid()}}\\n"); fh.flush()
                    time.sleep(0.02)
                    fh.write(f"out {{os.getpid()}}\\n")
    """
    procs = [_python(code) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs), [p.stderr.read() for p in procs]
    lines = log.read_text().split()
    events = list(zip(lines[0::2], lines[1::2]))
    assert len(events) == 30
    for (kind_in, pid_in), (kind_out, pid_out) in zip(events[0::2], events[1::2]):
        assert kind_in == "in" and kind_out == "out" and pid_in == pid_out  # no interleaving


# -------------------------------------------------------------------------------- corrupt files
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", None])
def test_damaged_torch_files_name_the_file_and_the_fix(tmp_path, content):
    path = tmp_path / "model.pt"
    if content is None:  # a real file, cut in half
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CorruptFileError, match=rf"{re.escape(str(path))} is damaged or incomplete .*; retrain it"):
        load_tensors(path, fix="retrain it")


def test_a_pickle_that_safe_loading_refuses_is_a_clear_error(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"fn": os.getcwd}, path)  # a reference to a function: refused by weights_only
    with pytest.raises(CorruptFileError, match=r"refuses .*not written by fwi_teach"):
        load_tensors(path)


def test_damaged_checkpoint_of_fit_is_reported(tmp_path):
    from fwi_teach.models import InversionNet
    from fwi_teach.training import TrainConfig, fit

    x, y = torch.randn(4, 5, 100, 70), torch.rand(4, 1, 70, 70) * 2 - 1
    data = torch.utils.data.TensorDataset(x, y)
    cfg = dict(batch_size=2, device="cpu", progress=False, checkpoint_dir=tmp_path)
    net = InversionNet(width_multiplier=0.125, input_length=100)
    fit(net, data, data, TrainConfig(epochs=1, **cfg))
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and best["step"] == 2  # what OpenFWI's test.py prints
    theirs = InversionNet(width_multiplier=0.125, input_length=100).eval()
    theirs.load_state_dict(best["model"])  # OpenFWI's test.py: model.load_state_dict(checkpoint['model'])
    with torch.no_grad():
        assert torch.equal(theirs(x), net.eval()(x))  # the round trip gives the trained network back
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"last\.pt is damaged .*resume=False"):
        fit(InversionNet(width_multiplier=0.125, input_length=100), data, data, TrainConfig(**cfg, epochs=2))


# -------------------------------------------------------------------------------- physics inputs
@pytest.mark.parametrize("kwargs, message", [
    ({"velocity_mps": np.zeros((0, 20, 20), np.float32) + 2000}, "holds no models"),
    ({"wavelet": np.full(50, np.nan, np.float32)}, "wavelet contains NaN"),
    ({"boundary_velocity_mps": -1.0}, "boundary_velocity_mps=-1.0"),
    ({"device": "nope"}, "device 'nope' is not known"),
])
def test_simulate_rejects_bad_input(kwargs, message):
    acq = Acquisition(((1, 5),), tuple((1, c) for c in range(20)), nt=50)
    args = {"velocity_mps": np.full((1, 20, 20), 2000, np.float32), "acquisition": acq, **kwargs}
    with pytest.raises(ValueError, match=message):
        simulate(**args)


def test_acquisition_rejects_infinite_values():
    with pytest.raises(ValueError, match="finite"):
        Acquisition.openfwi(freq_hz=float("inf"))


# -------------------------------------------------------------------------------- command line
def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fwi_teach", *args], capture_output=True, text=True, env=ENV,
                          timeout=300, cwd=cwd)


def test_cli_device_errors_leave_nothing_behind(tmp_path):
    for device in ("nope", "cuda:7" if torch.cuda.is_available() else "cuda"):
        root = tmp_path / f"set-{device}"
        out = _cli("data", "generate", "flatvel-a", "--root", str(root), "--train", "2", "--device", device)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("error: device") and not root.exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root can write into read-only folders")
def test_cli_read_only_folder_is_a_clear_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        out = _cli("data", "generate", "flatvel-a", "--root", str(root), "--train", "2")
    finally:
        root.chmod(0o755)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "cannot write" in out.stderr, out.stderr


def test_folder_swap_replaces_a_folder_whole_or_not_at_all(tmp_path):
    final = tmp_path / "results" / "cpu"
    with folder_swap(final) as tmp:  # a new folder: the parent is created
        assert tmp.is_dir() and tmp.parent == final.parent and not final.exists()
        (tmp / "a.json").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["a.json"]
    with folder_swap(final) as tmp:  # an existing one: the old files are gone, not merged
        (tmp / "b.json").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b.json"]
    with pytest.raises(RuntimeError, match="half-way"):
        with folder_swap(final) as tmp:
            (tmp / "c.json").write_text("3")
            raise RuntimeError("failed half-way")
    assert sorted(p.name for p in final.iterdir()) == ["b.json"]  # the old folder, untouched
    assert sorted(p.name for p in final.parent.iterdir()) == ["cpu"]  # no temporary left behind


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "the disk is full: could not write"),
                                           (errno.EROFS, "the folder is read-only or belongs to someone else")])
def test_full_disk_and_read_only_folders_say_so(tmp_path, monkeypatch, capsys, code, message):
    import fwi_teach.runtime as runtime
    from fwi_teach.cli import main

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(runtime.tempfile, "mkstemp", refuse)
    with pytest.raises(OSError, match=message):
        atomic_write_bytes(tmp_path / "x.bin", b"1")
    assert main(["data", "generate", "flatvel-a", "--root", str(tmp_path / "set"), "--train", "2",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and str(tmp_path / "set") in err


def test_cli_interrupt_says_how_to_resume(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "fwi_teach", "data", "generate", "flatvel-a", "--root",
                             str(tmp_path / "set"), "--train", "4000", "--no-progress"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a runner started in the background ignores SIGINT, and
                            # its children would inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(tmp_path / "set" / "fwi_teach.json")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "run the same command again" in err, err
