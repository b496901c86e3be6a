"""Wall time of the whole experiment chain with the ``smoke`` profile, from an empty cache.

Runs :func:`fwi_teach.experiments.run_chain` in a fresh temporary cache (data generation
included) and prints the wall time of each stage and the total. Target: under 10 minutes
on 2 CPU cores, the CI budget of the ``smoke`` profile.

Usage::

    python benchmarks/chain_smoke.py                 # CPU, 2 threads, temporary cache
    python benchmarks/chain_smoke.py --device cuda   # on a GPU
    python benchmarks/chain_smoke.py --keep DIR      # keep the cache in DIR (must not exist)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 600.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke", help="profile to time (default: smoke)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--keep", default=None, help="cache folder to create and keep (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fwi_teach.experiments import run_chain

    with tempfile.TemporaryDirectory(prefix="fwi_teach_chain_") as tmp:
        cache = Path(args.keep) if args.keep else Path(tmp)
        if args.keep and cache.exists():
            parser.error(f"--keep {cache} exists; pass a new folder so that the chain starts from nothing")
        start = time.perf_counter()
        record = run_chain(args.profile, cache_dir=cache, device=args.device, progress=sys.stderr.isatty())
        total = time.perf_counter() - start
    print(f"\nchain {args.profile!r} on {record['environment']['device']} with {args.threads} thread(s), "
          f"{os.cpu_count()} CPU(s) visible, load average {os.getloadavg()[0]:.1f}:")
    print(f"{'stage':<10} {'wall s':>8} {'estimate s':>11}")
    for row in record["rows"]:
        est = row["estimated_s"]
        print(f"{row['stage']:<10} {row['wall_time_s']:8.1f} {'-' if est is None else f'{est:.0f}':>11}")
    print(f"{'total':<10} {total:8.1f}   ({total / 60:.1f} min; target {TARGET_S / 60:.0f} min"
          f"{'' if args.profile != 'smoke' else ': ' + ('met' if total <= TARGET_S else 'MISSED')})")
    return 0 if args.profile != "smoke" or total <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
