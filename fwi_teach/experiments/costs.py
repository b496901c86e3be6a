"""What a profile costs: the work of its chain, its estimated time, and the table of the profiles.

The cost model counts the work of :func:`fwi_teach.experiments.run_chain` for a
:class:`~fwi_teach.experiments.profiles.Profile` (:func:`chain_workload`: simulated
samples, training sample passes, evaluations, runs) and prices it with throughputs that
the benchmarks measured and recorded in ``benchmark_rates.json`` beside this module
(``python benchmarks/forward.py --record``, ``python benchmarks/training.py --record``),
so the estimates follow the code. :func:`stage_seconds` and :func:`estimate_minutes`
give the times; :func:`profile_table` prints every profile with its estimate.
"""

from __future__ import annotations

from pathlib import Path

from .profiles import _ALL, LOW_DATA_METHODS, PROFILES, get_profile

__all__ = ["RATES_FILE", "benchmark_rates", "record_benchmark_rates", "chain_workload", "stage_seconds",
           "estimate_minutes", "profile_table"]

#: Where the benchmarks record the throughputs the cost model uses (package data, committed):
#: ``benchmark_rates.json`` beside this module.
#:
#: :meta hide-value:
RATES_FILE = Path(__file__).with_name("benchmark_rates.json")
#: Seconds per training run for model set-up, checkpoints and results (not a throughput).
_RUN_OVERHEAD_S = {"cpu": 1.0, "cuda": 2.0}
#: CUDA throughputs, used until a GPU run of the benchmarks records its own: a Colab T4
#: guessed as 5x slower than an H100 measured earlier (sim 0.007 s per sample; width 0.5 /
#: 500 samples 1,700 training samples/s in bf16). Unverified by this code version.
_CUDA_FALLBACK = {"sim_s_per_sample": 0.04, "train_s_per_sample": {"0.25x250": 0.0017, "1.0x1000": 0.0065}}


def benchmark_rates() -> dict:
    """The throughputs recorded by ``benchmarks/forward.py --record`` and ``benchmarks/training.py --record``.

    ``{"cpu": {"sim_s_per_sample": s, "train_s_per_sample": {"WIDTHxLENGTH": s, ...},
    "recorded": {...}}, "cuda": {...}}``: seconds to simulate one OpenFWI sample (5 shots x
    1000 steps, thin boundary, default engine) and to train on one sample (FFT, TrainConfig
    defaults) at the measured width and input length.
    """
    import json

    try:
        return json.loads(RATES_FILE.read_text())
    except FileNotFoundError:
        return {}


def record_benchmark_rates(device: str, **values) -> Path:
    """Merge ``values`` into ``device``'s entry of :data:`RATES_FILE` (atomic write); returns the path."""
    import datetime
    import json
    import os
    import platform

    from ..runtime import atomic_write_bytes

    data = benchmark_rates()
    entry = data.setdefault("cuda" if str(device).startswith("cuda") else "cpu", {})
    for key, value in values.items():
        if isinstance(value, dict):
            entry.setdefault(key, {}).update(value)
        else:
            entry[key] = value
    entry.setdefault("recorded", {}).update({k: {"date": datetime.date.today().isoformat(),
                                                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
                                               for k in values})
    atomic_write_bytes(RATES_FILE, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return RATES_FILE


def _rates(kind: str) -> dict:
    """Cost-model constants of ``kind`` from the recorded benchmark output.

    Training seconds per sample are modelled as ``floor + train * width**1.5 * length / 1000``;
    the two recorded points (the cpu profile's width 0.25 / 250 samples and full width / 1000)
    fix ``floor`` and ``train``.
    """
    got = benchmark_rates().get(kind) or {}
    src = {**_CUDA_FALLBACK, **got} if kind == "cuda" else got
    if "sim_s_per_sample" not in src or len(src.get("train_s_per_sample", {})) < 2:
        raise RuntimeError(f"{RATES_FILE} has no complete {kind!r} entry; run `python benchmarks/forward.py --record` "
                           f"and `python benchmarks/training.py --record` on a {kind} machine")
    points = sorted((float(w) ** 1.5 * int(n) / 1000, t) for w, n, t in
                    ((*k.split("x"), v) for k, v in src["train_s_per_sample"].items()))
    (x1, t1), (x2, t2) = points[0], points[-1]
    train = (t2 - t1) / (x2 - x1)
    return {"sim": src["sim_s_per_sample"], "train": train, "train_floor": max(0.0, t1 - train * x1),
            "run_overhead": _RUN_OVERHEAD_S[kind]}


def chain_workload(profile) -> dict:
    """Count the work of :func:`fwi_teach.experiments.run_chain` for ``profile``.

    Returns
    -------
    dict
        ``simulated_samples`` (data generation), ``train_samples`` (sample passes of
        training, LoRA runs included), ``eval_samples`` (per-epoch validation and test
        evaluations), ``runs`` (training runs), each per stage under ``stages``
        (``data``, ``pretrain``, ``baselines``, ``finetune``, ``matrix``, ``lowdata``).
        Needs ``n_train`` / ``n_val``; profiles on real data (``None``) raise ValueError.
    """
    p = get_profile(profile)
    if p.n_train is None or p.n_val is None:
        raise ValueError(f"profile {p.name!r} uses all of the real data (n_train=None); its workload depends on "
                         "the download, so it cannot be counted here")
    nt, nv, ns = p.n_train, p.n_val, p.n_test

    def runs(n_runs, epochs, share=1.0, sets=1):
        n_used = max(1, round(share * nt)) * sets
        return {"train_samples": n_runs * epochs * n_used, "eval_samples": n_runs * (epochs * nv + ns) * sets,
                "runs": n_runs}

    stages = {"data": {"simulated_samples": len(_ALL) * (nt + nv + ns)},  # every family is a test set
              "pretrain": runs(1, p.epochs_pretrain, sets=len(p.pretrain_families)),
              "baselines": runs(len(p.baseline_families), p.epochs_baseline),
              "finetune": runs(2 * len(p.finetune_families), p.epochs_finetune)}
    n_models = 1 + len(p.baseline_families) + 2 * len(p.finetune_families)
    stages["matrix"] = {"eval_samples": n_models * len(_ALL) * ns}
    low = {"train_samples": 0, "eval_samples": 0, "runs": 0}
    for family in p.low_data_families:
        for method in LOW_DATA_METHODS:
            done = family in (p.baseline_families if method == "scratch" else p.finetune_families)
            epochs = p.epochs_baseline if method == "scratch" else p.epochs_finetune
            for fraction in p.low_data_fractions:
                if fraction == 1.0 and done:
                    continue  # the same run as a baseline / fine-tuning run: reused
                for k, v in runs(1, epochs, fraction).items():
                    low[k] += v
    stages["lowdata"] = low
    totals = {k: sum(s.get(k, 0) for s in stages.values())
              for k in ("simulated_samples", "train_samples", "eval_samples", "runs")}
    return {**totals, "stages": stages}


def stage_seconds(profile, device: str = "cpu") -> dict:
    """Estimated seconds of each stage of the chain on ``device`` ("cpu" or "cuda")."""
    p = get_profile(profile)
    r = _rates("cuda" if str(device).startswith("cuda") else "cpu")
    sim = r["sim"] * p.nt / 1000 * (4.3 if p.boundary == "openfwi" else 1.0)
    train = r["train_floor"] + r["train"] * p.width_multiplier ** 1.5 * p.input_length / 1000
    out = {}
    for name, s in chain_workload(p)["stages"].items():
        out[name] = (s.get("simulated_samples", 0) * sim + s.get("train_samples", 0) * train
                     + s.get("eval_samples", 0) * train / 4 + s.get("runs", 0) * r["run_overhead"])
    return out


def estimate_minutes(profile, device: str = "cpu") -> float:
    """Rough wall time in minutes of the whole chain: a cost model, not a measurement.

    The constants are throughputs measured on 2 CPU cores and on one GPU with
    :mod:`fwi_teach.physics` and InversionNet; real times vary by a factor of two.
    """
    return sum(stage_seconds(profile, device).values()) / 60.0


# -------------------------------------------------------------------------------------- table
def _param_count(width: float, input_length: int) -> int:
    try:
        import torch

        from ..models import InversionNet, count_parameters
        with torch.device("meta"):
            return count_parameters(InversionNet(width_multiplier=width, input_length=input_length))
    except Exception:  # pragma: no cover - torch missing: the table just omits the count
        return 0


def _estimate(p, device, stated):
    """``stated`` if the profile states an estimate, else the cost model's (None where it has none)."""
    if stated is not None:
        return stated
    try:
        return estimate_minutes(p, device)
    except (ValueError, RuntimeError):  # real data (nothing to count), or no recorded rates
        return None


def _minutes(value) -> str:
    if value is None:
        return "-"
    return f"~{value:.0f} min" if value < 90 else f"~{value / 60:.1f} h"


def profile_table(profiles=None) -> str:
    """A Markdown table of the profiles (default: the built-in ones), one row each.

    Columns: samples per family (train / validation / test), network input (time samples
    after decimation), InversionNet width and parameters, epochs (pretraining / baseline /
    fine-tuning), batch size, LoRA rank, and the estimated whole-chain time on a CPU and a GPU.
    """
    rows = ["| profile | samples / family (train / val / test) | input (nt / decimation) | width (parameters) "
            "| epochs (pretrain / baseline / fine-tune) | batch | LoRA rank | chain on 2 CPU cores | chain on 1 GPU "
            "| purpose |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for p in (PROFILES.values() if profiles is None else [get_profile(q) for q in profiles]):
        samples = "all of OpenFWI (data_dir)" if p.n_train is None else f"{p.n_train} / {p.n_val} / {p.n_test}"
        params = _param_count(p.width_multiplier, p.input_length)
        width = f"{p.width_multiplier:g}" + (f" ({params / 1e6:.2f} M)" if params else "")
        rows.append(f"| `{p.name}` | {samples} | {p.input_length} ({p.nt} / {p.time_decimation}) | {width} "
                    f"| {p.epochs_pretrain} / {p.epochs_baseline} / {p.epochs_finetune} | {p.batch_size} "
                    f"| {p.lora_rank} | {_minutes(_estimate(p, 'cpu', p.est_minutes_cpu))} "
                    f"| {_minutes(_estimate(p, 'cuda', p.est_minutes_gpu))} "
                    f"| {p.description} |")
    shown = PROFILES.values() if profiles is None else [get_profile(q) for q in profiles]
    notes = "\n".join(f"- `{p.name}`: {p.est_note}" for p in shown)
    return "\n".join(rows) + "\n\nTimes are estimates for the whole chain, data generation included:\n\n" + notes
