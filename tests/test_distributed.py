"""fit under torchrun: two CPU processes on gloo train one InversionNet with DistributedDataParallel."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fwi_teach.training.distributed import DistContext, ShardSampler, all_reduce_sum, setup

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from torch.utils.data import TensorDataset
    import fwi_teach.training.engine as training  # fit writes its checkpoints through engine._atomic_save
    from fwi_teach.models import InversionNet
    from fwi_teach.training import TrainConfig, fit

    torch.set_num_threads(1)
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    real_save = training._atomic_save

    def logged_save(obj, path):  # record which rank writes checkpoint files
        with open(os.path.join(out, f"writes{rank}.txt"), "a") as fh:
            fh.write(os.path.basename(path) + "\\n")
        real_save(obj, path)

    training._atomic_save = logged_save
    g = torch.Generator().manual_seed(0)  # every rank builds the same synthetic data
    x = torch.randn(16, 5, 100, 70, generator=g)
    y = torch.tanh(torch.randn(16, 1, 70, 70, generator=g))
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = InversionNet(width_multiplier=0.25, input_length=100)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, checkpoint_dir=os.path.join(out, "ckpt"), progress=True)
    result = fit(model, TensorDataset(x, y), TensorDataset(x[:6], y[:6]), cfg)
    torch.save({"final": model.state_dict(), "initial": initial}, os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"result{rank}.json"), "w") as fh:
        json.dump(result.to_dict(), fh)
""")


def test_fit_under_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    final0, final1 = states[0]["final"], states[1]["final"]
    assert final0.keys() == final1.keys()
    assert all(torch.equal(final0[k], final1[k]) for k in final0)  # weights and BN statistics identical
    assert not all(torch.equal(states[0]["initial"][k], states[1]["initial"][k]) for k in final0)
    assert not all(torch.equal(final0[k], states[0]["initial"][k]) for k in final0)  # it trained

    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.pt", "last.pt"]
    assert not (tmp_path / "writes1.txt").exists()  # only rank 0 writes checkpoints
    writes = (tmp_path / "writes0.txt").read_text().split()
    assert writes.count("last.pt") == 2 and 1 <= writes.count("best.pt") <= 2
    best = torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], final0[k]) for k in final0)

    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)]
    for res in results:
        assert res["world_size"] == 2
        # 16 samples over 2 ranks with batch 4: 2 steps per rank, 16 samples per epoch in all
        assert [(h["steps"], h["samples"]) for h in res["history"]] == [(2, 16), (2, 16)]
    # metrics are all-reduced: both ranks report the same validation numbers
    assert [h["val_loss"] for h in results[0]["history"]] == [h["val_loss"] for h in results[1]["history"]]
    assert "epochs" in proc.stderr  # rank 0's progress bar


def test_single_process_context(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = setup("cpu")
    assert (ctx.world_size, ctx.rank, ctx.is_main, ctx.is_distributed) == (1, 0, True, False)
    assert all_reduce_sum([1.5, 2], ctx) == [1.5, 2.0]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="inconsistent"):
        setup("cpu")


def test_shard_sampler_covers_every_index_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(ShardSampler(11, r, 3)) for r in range(3)] == [4, 4, 3]
    assert DistContext().is_main
