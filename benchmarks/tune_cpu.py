"""Tune the cpu profile's baselines on validation samples only.

Generates (once, cached) a few families with enough samples, from velocity models of
their own data seed (``--data-seed``, default 1, not the profiles' 0), so that tuning
never touches the models of any profile's test split. Trains a task-specific baseline
with the chosen settings through the experiment engine and prints, per family, the best
epoch's validation MAE and SSIM next to the training-mean map's on the same validation
samples, the training throughput and the wall time. (The engine also evaluates each run
on the tuning set's own test split and caches that; this script never prints it.) Every
settings variant is its own profile name (``tune-<hash>``), so runs are cached and a
rerun prints at once.

    python benchmarks/tune_cpu.py --families flatvel-a curvefault-b --n-train 2000 --epochs 12 \
        --lr 2e-3 --schedule cosine --warmup 1

With ``--record`` each family's probe is also written to ``results/cpu/tuning.json``, from
which the README says what the baseline targets would take
(:mod:`fwi_teach.experiments.tuning`).

Tuning must only ever look at validation numbers; this script prints nothing else. The
cpu profile's settings were chosen with it (at that time with data seed 0, the profile's
own: its validation split, never its test split).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time

import torch


def main(argv=None) -> int:
    from fwi_teach.experiments.cache import cache_root, load_split
    from fwi_teach.data import generate_dataset
    from fwi_teach.experiments import train_baseline
    from fwi_teach.evaluation.metrics import evaluate_metrics
    from fwi_teach.physics import Acquisition
    from fwi_teach.experiments.profiles import get_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", nargs="+", default=["flatvel-a", "curvefault-b"])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--data-train", type=int, default=None, help="samples generated (default --n-train)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--loss", default="l1")
    ap.add_argument("--data-seed", type=int, default=1, help="seed of the tuning data (default 1; profiles use 0)")
    ap.add_argument("--force", action="store_true", help="train again even where the probe is cached")
    ap.add_argument("--record", action="store_true",
                    help="also write each family's probe into results/cpu/tuning.json (what the README's "
                         "'what the baseline targets would take' paragraph reads)")
    args = ap.parse_args(argv)

    base = get_profile("cpu")
    n_data = args.data_train or args.n_train
    data_root = cache_root() / f"tune-data-s{args.data_seed}"
    settings = dict(data_seed=args.data_seed, n_train=args.n_train, n_val=args.n_val, n_test=args.n_val, epochs_baseline=args.epochs,
                    lr_baseline=args.lr, batch_size=args.batch, width_multiplier=args.width,
                    schedule=args.schedule, warmup_epochs=args.warmup, weight_decay=args.weight_decay,
                    loss=args.loss)
    tag = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    p = dataclasses.replace(base, name=f"tune-{tag}", **settings)
    print(f"profile tune-{tag}: {json.dumps(settings)}")
    for fam in args.families:
        t0 = time.perf_counter()
        generate_dataset(fam, data_root / fam, n_train=n_data, n_val=args.n_val, n_test=args.n_val,
                         seed=p.data_seed, samples_per_file=p.samples_per_file, boundary=p.boundary,
                         acquisition=Acquisition.openfwi(nt=p.nt), progress=False)
        gen_s = time.perf_counter() - t0
        rec = train_baseline(fam, p, data_dir=data_root, progress=False, force=args.force)
        row, train = rec["rows"][0], rec["train"]
        best = next(h for h in train["history"] if h["epoch"] == train["best_epoch"])
        kw = dict(profile=p, data_dir=data_root, device="cpu", progress=False)
        tr, val = load_split(fam, "train", **kw), load_split(fam, "val", **kw)
        mean = torch.stack([tr[i][1] for i in range(len(tr))]).mean(0)
        truth = torch.stack([val[i][1] for i in range(len(val))])
        ref = evaluate_metrics(mean.expand_as(truth), truth)
        curve = " ".join(f"{h['val_ssim']:.3f}" for h in train["history"])
        print(f"{fam:13s} val SSIM {best['val_ssim']:.3f} (mean map {ref['ssim']:.3f}, +{best['val_ssim'] - ref['ssim']:.3f})"
              f"  val MAE {best['val_mae']:.4f} ({best['val_mae'] / ref['mae']:.2f}x mean map)  best epoch "
              f"{train['best_epoch']}/{args.epochs}  {row['samples_per_s']:.0f} samples/s  train "
              f"{row['train_wall_time_s']:.0f} s (data {gen_s:.0f} s)\n    val SSIM by epoch: {curve}", flush=True)
        if args.record:
            _record({"family": fam, "profile": p.name, **settings, "epochs": args.epochs, "val_ssim": best["val_ssim"],
                     "val_mae": best["val_mae"], "mean_map_ssim": ref["ssim"], "mean_map_mae": ref["mae"],
                     "best_epoch": train["best_epoch"], "samples_per_s": row["samples_per_s"],
                     "train_wall_time_s": row["train_wall_time_s"], "amp": row.get("amp"),
                     "compiled": row.get("compiled"), "git_commit": row.get("git_commit"),
                     "date": time.strftime("%Y-%m-%d")})
    return 0


def _record(probe: dict) -> None:
    """Add ``probe`` to results/cpu/tuning.json, replacing an earlier probe of the same family and settings."""
    from pathlib import Path

    from fwi_teach.experiments.tuning import TUNING_FILE, load_tuning
    from fwi_teach.runtime import atomic_write_bytes

    folder = Path(__file__).resolve().parents[1] / "results" / "cpu"
    probes = [q for q in load_tuning(folder) if (q["family"], q["profile"]) != (probe["family"], probe["profile"])]
    probes.append(probe)
    probes.sort(key=lambda q: (q["family"], q["epochs"], q["n_train"]))
    atomic_write_bytes(folder / TUNING_FILE, (json.dumps(probes, indent=1) + "\n").encode())


if __name__ == "__main__":
    raise SystemExit(main())
