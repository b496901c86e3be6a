"""The physics loop's results: summaries with confidence intervals, and the results folder.

=============================  ===============================================================
:func:`summarise_misfit`        mean data misfit, MAE and SSIM per model kind and family, with CIs
:func:`summarise_hybrid`        per FWI start: start and final errors with CIs, paired differences
                                against the smoothed-truth start, iterations to a target error
:func:`versus_smoothed_truth`   better, worse or inconclusive than the textbook start, by that CI
:func:`export_physics_loop`     run both experiments of :mod:`~fwi_teach.experiments.physics_loop`
                                and write ``results/<profile>/physics_loop/``
:func:`load_physics_loop`       read that folder back
=============================  ===============================================================
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from . import cache as art
from ..evaluation.stats import Interval, paired_interval
from .physics_loop import SMOOTH_START, _write_json, data_misfit_rows, hybrid_rows, loop_config, test_samples
from .profiles import get_profile
from .results import PHYSICS_LOOP_DIR

__all__ = ["summarise_misfit", "summarise_hybrid", "misfit_by_kind", "versus_smoothed_truth", "readme_lines",
           "export_physics_loop", "load_physics_loop"]


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


def _by_seed_and_sample(rows, metric: str) -> dict:
    """``{(model kind, family): array (seeds, samples)}`` of ``metric``, on the samples every seed has.

    Seeds are in order (``None``, the seedless references, first), samples by index.
    """
    groups = {}
    for r in rows:
        groups.setdefault((_kind(r["model"]), r["eval_family"]), {}).setdefault(r["seed"], {})[r["sample"]] = r[metric]
    out = {}
    for key, by_seed in groups.items():
        seeds = sorted(by_seed, key=lambda s: -1 if s is None else s)
        samples = sorted(set.intersection(*(set(v) for v in by_seed.values())))
        out[key] = np.array([[by_seed[s][i] for i in samples] for s in seeds])
    return out


def summarise_misfit(rows) -> list:
    """Mean data misfit (and MAE, SSIM) per model kind and family with 95 % CIs over samples and seeds."""
    tables = {metric: _by_seed_and_sample(rows, metric) for metric in ("data_misfit", "mae", "ssim")}
    out = []
    for kind, fam in sorted(tables["data_misfit"]):
        shape = tables["data_misfit"][(kind, fam)].shape
        row = {"model": kind, "eval_family": fam, "n_seeds": shape[0], "n_samples": shape[1]}
        for metric, table in tables.items():
            ci = paired_interval(table[(kind, fam)])
            row.update({metric: ci.mean, f"{metric}_low": ci.low, f"{metric}_high": ci.high})
        out.append(row)
    return out


def misfit_by_kind(rows) -> dict:
    """Data misfit per model kind over all families: ``{kind: Interval}``, each family weighing the same.

    The mean and 95 % CI come from :func:`fwi_teach.evaluation.stats.paired_interval` with
    one stratum per family (resampling seeds, then samples).
    """
    table = _by_seed_and_sample(rows, "data_misfit")
    kinds = dict.fromkeys(_kind(r["model"]) for r in rows)
    return {kind: paired_interval([v for (k, _), v in sorted(table.items()) if k == kind]) for kind in kinds}


#: How a start's final model error compares with the smoothed truth's, by the outcome of its interval.
VERSUS_SMOOTHED_TRUTH = {"won": "worse", "lost": "better", "tied": "inconclusive"}


def versus_smoothed_truth(summary_row, metric: str = "model_rmse_mps"):
    """A start's final ``metric`` minus the smoothed-truth start's, and what it says.

    Parameters
    ----------
    summary_row : dict
        One row of :func:`summarise_hybrid`.
    metric : str, default "model_rmse_mps"
        ``"model_rmse_mps"``, ``"model_mae"`` or ``"data_misfit"``.

    Returns
    -------
    (Interval, str) or None
        The paired difference (negative: closer to the truth than the textbook start) and
        ``"better"`` when its 95 % CI lies below zero, ``"worse"`` above, else
        ``"inconclusive"``. None for the smoothed-truth start itself, or when the two were
        not run on the same samples.
    """
    d = summary_row.get(f"final_{metric}_minus_{SMOOTH_START}")
    if d is None:
        return None
    interval = Interval(**d)
    return interval, VERSUS_SMOOTHED_TRUTH[interval.outcome()]


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
            versus = versus_smoothed_truth(r)
            if versus is not None:
                d, verdict = versus
                part += f" (vs smoothed truth {d.mean:+.0f} [{d.low:+.0f}, {d.high:+.0f}], {verdict})"
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
    float16 m/s, keys ``<family>/<start>/start`` and ``.../final``, and its true model
    ``<family>/truth``) and ``config.json``; it is written beside its place and renamed in.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    from pathlib import Path

    from ..runtime import folder_swap
    from .reproduce import check_seeds
    from .results import default_results_dir

    p, cfg = get_profile(profile), loop_config(profile, config)
    seeds = check_seeds(seeds)
    misfit = [r for s in seeds for r in data_misfit_rows(p, cfg, cache_dir, s, device, data_dir, progress)
              if r["seed"] is not None or s == seeds[0]]
    hybrid = hybrid_rows(p, cfg, cache_dir, seeds[0], device, data_dir, progress) if cfg.hybrid_samples else []
    final = Path(results_dir or default_results_dir()) / p.name / PHYSICS_LOOP_DIR
    with folder_swap(final) as tmp:
        art.write_results(tmp / "data_misfit.json", {"profile": p.name, "name": "data_misfit", "rows": misfit})
        art.write_results(tmp / "data_misfit_summary.json", {"profile": p.name, "name": "data_misfit_summary",
                                                             "rows": summarise_misfit(misfit)})
        maps = {f"{r['eval_family']}/{r['start']}/{when}": np.asarray(r[f"{when}_mps"], dtype=np.float16)
                for r in hybrid if r["sample"] == 0 for when in ("start", "final")}
        for fam in dict.fromkeys(r["eval_family"] for r in hybrid):  # the true model of that sample
            maps[f"{fam}/truth"] = test_samples(fam, p, cache_dir, data_dir, n=1)[1][0].astype(np.float16)
        with open(tmp / "hybrid_models.npz", "wb") as fh:  # first sample of each family: a few hundred kB
            np.savez_compressed(fh, **maps)
        curves = [{k: v for k, v in r.items() if not k.endswith("_mps") or k == "model_rmse_mps"} for r in hybrid]
        _write_json(tmp / "hybrid.json", {"profile": p.name, "seed": seeds[0], "rows": curves})
        summary = summarise_hybrid(hybrid, cfg.target_rmse_mps) if hybrid else []
        _write_json(tmp / "hybrid_summary.json", {"profile": p.name, "seed": seeds[0], "rows": summary})
        _write_json(tmp / "config.json", {"profile": p.name, "seeds": seeds, "config": dataclasses.asdict(cfg),
                                          "description": cfg.describe()})
    return final


def load_physics_loop(profile="cpu", results_dir=None) -> dict | None:
    """The committed physics-loop results of a profile, or None if the folder has none.

    Returns a dict with ``config``, ``data_misfit`` (per-sample rows), ``data_misfit_summary``,
    ``hybrid`` (curves), ``hybrid_summary`` and ``hybrid_models`` (``{"<family>/<start>/start"
    or ".../final" or "<family>/truth": (nz, nx) m/s}``, the first hybrid sample of each family).
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
