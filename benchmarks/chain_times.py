"""Print the measured time of the whole chain per seed and per stage, from a results folder.

    python benchmarks/chain_times.py            # results/cpu (or $FWI_TEACH_RESULTS/cpu)
    python benchmarks/chain_times.py --profile gpu

The figures are those recorded by the runs themselves (``timings.csv`` of
``fwi-teach reproduce``): training stages sum the runs' own wall times; data and matrix
are the seed's last ``run_chain`` call (data is generated once, by the first seed, and
shared). The cost model's estimate per seed is printed beside them.
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    from fwi_teach.experiments.results import load_reference_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--results-dir", default=None)
    args = ap.parse_args(argv)
    ref = load_reference_results(args.profile, args.results_dir)
    stages = list(dict.fromkeys(r["stage"] for r in ref.timings))
    print(f"profile {ref.profile}: measured minutes per seed and stage (estimate: cost model)")
    print(f"{'seed':<6}" + "".join(f"{s:>11}" for s in stages) + f"{'total':>9}")
    for seed in ref.seeds:
        rows = {r["stage"]: r for r in ref.timings if r["seed"] == seed}
        cells = [rows[s]["measured_s"] for s in stages]
        total = sum(c or 0.0 for c in cells)
        print(f"{seed:<6}" + "".join(f"{c / 60:>11.1f}" if c is not None else f"{'-':>11}" for c in cells)
              + f"{total / 60:>9.1f}")
    first = {r["stage"]: r for r in ref.timings if r["seed"] == ref.seeds[0]}
    print(f"{'est.':<6}" + "".join(f"{first[s]['estimated_s'] / 60:>11.1f}" for s in stages)
          + f"{sum(first[s]['estimated_s'] for s in stages) / 60:>9.1f}")
    print("('-': not recorded, done by an earlier call; data is generated once and shared by every seed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
