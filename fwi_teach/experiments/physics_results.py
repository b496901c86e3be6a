"""The physics loop's results: summaries with confidence intervals, and the results folder.

===========================  ===============================================================
:func:`summarise_misfit`      mean data misfit, MAE and SSIM per model kind and family, with CIs
:func:`summarise_hybrid`      per FWI start: start and final errors with CIs, paired differences
                              against the smoothed-truth start, iterations to a target error
:func:`export_physics_loop`   run both experiments of :mod:`~fwi_teach.experiments.physics_loop`
                              and write ``results/<profile>/physics_loop/``
:func:`load_physics_loop`     read that folder back
===========================  ===============================================================
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from . import cache as art
from ..evaluation.stats import paired_interval
from .physics_loop import SMOOTH_START, _write_json, data_misfit_rows, hybrid_rows, loop_config
from .profiles import get_profile
from .results import PHYSICS_LOOP_DIR

__all__ = ["summarise_misfit", "summarise_hybrid", "misfit_by_kind", "readme_lines", "export_physics_loop",
           "load_physics_loop"]


def _kind(model: str) -> str:
    return model.split(":")[0]


def _iterations_to(curve, target) -> float:
    hits = np.flatnonzero(np.asarray(curve) <= target)
    return float(hits[0]) if hits.size else float("nan")


def summarise_hybrid(rows, target_rmse_mps=None) -> list:
    """Per start: start and final model error and data misfit with 95 % CIs over samples (and seeds).

    Differences are paired with the smoothed-truth start on the same samples (negative:
    the start ends closer to the truth, or explains the data better). ``iterations_to_target``
    is the median number of iterations to reach ``target_rmse_mps`` (None: on each sample
    the final error of the smoothed-truth start; NaN: not reached by
    half of the samples), with the count of samples that reached it.
    """
    if not rows:
        raise ValueError("no hybrid-inversion rows; run hybrid_rows first (or the profile has hybrid_samples=0)")
    by = {}
    for r in rows:
        by.setdefault(r["start"], {})[(r["eval_family"], r["sample"], r.get("seed"))] = r
    base = by.get(SMOOTH_START, {})
    out = []
    for start, runs in by.items():
        keys = sorted(runs)
        fams = sorted({k[0] for k in keys})
        summary = {"start": start, "n_samples": len(keys), "n_iterations": len(runs[keys[0]]["model_rmse_mps"]) - 1}
        for metric in ("model_rmse_mps", "model_mae", "data_misfit"):
            for when, idx in (("start", 0), ("final", -1)):
                strata = [np.array([runs[k][metric][idx] for k in keys if k[0] == f]) for f in fams]
                summary[f"{when}_{metric}"] = paired_interval(strata).to_dict()
            if start != SMOOTH_START and all(k in base for k in keys):
                strata = [np.array([runs[k][metric][-1] - base[k][metric][-1] for k in keys if k[0] == f])
                          for f in fams]
                summary[f"final_{metric}_minus_{SMOOTH_START}"] = paired_interval(strata).to_dict()
        if target_rmse_mps is None and not all(k in base for k in keys):
            raise ValueError("target_rmse_mps=None needs the smoothed-truth start on the same samples; "
                             "give a target in m/s")
        targets = {k: (base[k]["model_rmse_mps"][-1] if target_rmse_mps is None else float(target_rmse_mps))
                   for k in keys}
        its = np.array([_iterations_to(runs[k]["model_rmse_mps"], targets[k] + 1e-9) for k in keys])
        reached = np.isfinite(its)
        summary["target_rmse_mps"] = None if target_rmse_mps is None else float(target_rmse_mps)
        summary["reached_target"] = int(reached.sum())
        # median over samples, a sample that never reached the target counting as the slowest
        summary["iterations_to_target"] = (float(np.median(np.where(reached, its, np.inf)))
                                           if reached.mean() >= 0.5 else float("nan"))
        out.append(summary)
    return out


def summarise_misfit(rows) -> list:
    """Mean data misfit (and MAE, SSIM) per model kind and family with 95 % CIs over samples and seeds."""
    groups = {}
    for r in rows:
        groups.setdefault((_kind(r["model"]), r["eval_family"]), {}).setdefault(r["seed"], {})[r["sample"]] = r
    out = []
    for (kind, fam), by_seed in sorted(groups.items()):
        seeds = sorted(by_seed, key=lambda s: -1 if s is None else s)
        samples = sorted(set.intersection(*(set(v) for v in by_seed.values())))
        row = {"model": kind, "eval_family": fam, "n_seeds": len(seeds), "n_samples": len(samples)}
        for metric in ("data_misfit", "mae", "ssim"):
            values = np.array([[by_seed[s][i][metric] for i in samples] for s in seeds])
            ci = paired_interval(values)
            row.update({metric: ci.mean, f"{metric}_low": ci.low, f"{metric}_high": ci.high})
        out.append(row)
    return out


def misfit_by_kind(rows) -> dict:
    """Data misfit per model kind over all families: ``{kind: Interval}``, each family weighing the same.

    The mean and 95 % CI come from :func:`fwi_teach.evaluation.stats.paired_interval` with
    one stratum per family (resampling seeds, then samples).
    """
    out = {}
    for kind in dict.fromkeys(_kind(r["model"]) for r in rows):
        strata = []
        for fam in sorted({r["eval_family"] for r in rows}):
            by_seed = {}
            for r in rows:
                if _kind(r["model"]) == kind and r["eval_family"] == fam:
                    by_seed.setdefault(r["seed"], {})[r["sample"]] = r["data_misfit"]
            if by_seed:
                samples = sorted(set.intersection(*(set(v) for v in by_seed.values())))
                strata.append(np.array([[v[i] for i in samples] for v in by_seed.values()]))
        out[kind] = paired_interval(strata)
    return out


def readme_lines(loop) -> list:
    """Sentences for the README's reference block, every number read from :func:`load_physics_loop`'s dict."""
    if loop is None:
        return []
    kinds = misfit_by_kind(loop["data_misfit"])
    names = {"truth": "true model (the floor)", "mean-map": "training-mean map", "pfm": "zero-shot PFM",
             "baseline": "task-specific", "fft": "FFT-PFM", "lora": "LoRA-PFM"}
    cfg = loop["config"]
    fams = sorted({r["eval_family"] for r in loop["data_misfit"]})
    text = (f"Beyond the paper (`fwi-teach physics-loop`, models of seed(s) "
            f"{', '.join(map(str, cfg['seeds']))}; {cfg['description']}): the relative L2 data misfit of the test "
            f"predictions, mean over {len(fams)} families (95 % CI), is "
            + "; ".join(f"{names.get(k, k)} {iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]" for k, iv in kinds.items())
            + ".")
    lines = [text]
    if loop["hybrid_summary"]:
        parts = []
        for r in loop["hybrid_summary"]:
            a, b = r["start_model_rmse_mps"], r["final_model_rmse_mps"]
            part = f"{r['start']} {a['mean']:.0f} -> {b['mean']:.0f} [{b['low']:.0f}, {b['high']:.0f}]"
            d = r.get(f"final_model_rmse_mps_minus_{SMOOTH_START}")
            if d is not None:
                verdict = "better" if d["high"] < 0 else "worse" if d["low"] > 0 else "inconclusive"
                part += f" (vs smoothed truth {d['mean']:+.0f} [{d['low']:+.0f}, {d['high']:+.0f}], {verdict})"
            parts.append(part)
        n = loop["hybrid_summary"][0]
        lines.append(f"Hybrid FWI ({n['n_iterations']} iterations of multiscale FWI on {n['n_samples']} test "
                     "samples), model RMSE in m/s at the start and after the last iteration (95 % CI): "
                     + "; ".join(parts) + ".")
    return lines


def export_physics_loop(profile, results_dir=None, cache_dir=None, seeds=(0,), device="auto", data_dir=None,
                        config=None, progress=True):
    """Run (or read from the cache) both experiments and write ``<results_dir>/<profile>/physics_loop/``.

    The data misfit runs for every seed; hybrid FWI for the first seed only (its cost is
    per inversion, not per sample). The folder holds ``data_misfit.csv`` (per sample),
    ``data_misfit_summary.csv``, ``hybrid.json`` (every curve), ``hybrid_summary.json``,
    ``hybrid_models.npz`` (start and final model of the first sample per family and start,
    float16 m/s, keys ``<family>/<start>/start`` and ``.../final``) and ``config.json``; it is written beside its place and renamed in.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    import os
    import shutil
    from pathlib import Path

    from .reproduce import check_seeds
    from .results import default_results_dir

    p, cfg = get_profile(profile), loop_config(profile, config)
    seeds = check_seeds(seeds)
    misfit = [r for s in seeds for r in data_misfit_rows(p, cfg, cache_dir, s, device, data_dir, progress)
              if r["seed"] is not None or s == seeds[0]]
    hybrid = hybrid_rows(p, cfg, cache_dir, seeds[0], device, data_dir, progress) if cfg.hybrid_samples else []
    final = Path(results_dir or default_results_dir()) / p.name / PHYSICS_LOOP_DIR
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    art.write_results(tmp / "data_misfit.json", {"profile": p.name, "name": "data_misfit", "rows": misfit})
    art.write_results(tmp / "data_misfit_summary.json", {"profile": p.name, "name": "data_misfit_summary",
                                                         "rows": summarise_misfit(misfit)})
    maps = {f"{r['eval_family']}/{r['start']}/{when}": np.asarray(r[f"{when}_mps"], dtype=np.float16)
            for r in hybrid if r["sample"] == 0 for when in ("start", "final")}
    with open(tmp / "hybrid_models.npz", "wb") as fh:  # first sample of each family: a few hundred kB
        np.savez_compressed(fh, **maps)
    curves = [{k: v for k, v in r.items() if not k.endswith("_mps") or k == "model_rmse_mps"} for r in hybrid]
    _write_json(tmp / "hybrid.json", {"profile": p.name, "seed": seeds[0], "rows": curves})
    summary = summarise_hybrid(hybrid, cfg.target_rmse_mps) if hybrid else []
    _write_json(tmp / "hybrid_summary.json", {"profile": p.name, "seed": seeds[0], "rows": summary})
    _write_json(tmp / "config.json", {"profile": p.name, "seeds": seeds, "config": dataclasses.asdict(cfg),
                                      "description": cfg.describe()})
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_physics_loop(profile="cpu", results_dir=None) -> dict | None:
    """The committed physics-loop results of a profile, or None if the folder has none.

    Returns a dict with ``config``, ``data_misfit`` (per-sample rows), ``data_misfit_summary``,
    ``hybrid`` (curves), ``hybrid_summary`` and ``hybrid_models`` (``{"<family>/<start>/start"
    or ".../final": (nz, nx) m/s}``).
    """
    from pathlib import Path

    from .results import default_results_dir

    name = getattr(profile, "name", None) or str(profile)  # a results folder of any profile name
    folder = Path(results_dir or default_results_dir()) / name / PHYSICS_LOOP_DIR
    if not (folder / "config.json").is_file():
        return None
    out = {"config": json.loads((folder / "config.json").read_text())}
    for name in ("data_misfit", "data_misfit_summary", "hybrid", "hybrid_summary"):
        path = folder / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; export the physics loop again "
                                    f"(`fwi-teach physics-loop --profile {name}`)")
        out[name] = json.loads(path.read_text())["rows"]
    if not (folder / "hybrid_models.npz").is_file():
        raise FileNotFoundError(f"{folder / 'hybrid_models.npz'} is missing; export the physics loop again "
                                f"(`fwi-teach physics-loop --profile {name}`)")
    with np.load(folder / "hybrid_models.npz") as z:
        out["hybrid_models"] = {k: z[k].astype(np.float32) for k in z.files}
    return out
