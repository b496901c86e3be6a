"""Reproduce the paper's experiments at one profile and keep their compact results.

:func:`reproduce` runs the whole chain (:func:`fwi_teach.experiments.run_chain`: data,
PFM, baselines, FFT and LoRA fine-tuning, the evaluation matrix, the low-data sweep) once
per training seed on shared data, and then :func:`export_results` gathers the cached
results into one small folder, ``results/<profile>/``, meant to be committed (its files
are listed in :mod:`fwi_teach.experiments.results`). Seeds may run in separate calls: each export
merges into the folder, which then holds every seed. The verdicts on the paper's claims
are recomputed from all of them (:func:`fwi_teach.experiments.claims.evaluate_claims`).

:func:`load_reference_results` reads a folder back; the book's "reference results"
sections use it, so a book built with the quick ``smoke`` profile still shows the
findings of a larger run, labelled with its profile.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from . import cache as art
from .claims import claims_markdown, evaluate_claims, openfwi_comparison
from ..evaluation.evidence import MEAN_MAP
from .costs import stage_seconds
from .profiles import LOW_DATA_METHODS, METHODS, get_profile
from .results import (PER_SAMPLE_FILE, PHYSICS_LOOP_DIR, PREDICTIONS_FILE, RAW_TABLES, RESULTS_FORMAT, ReferenceResults,
                      check_mergeable, default_results_dir, load_reference_results, per_sample_bytes,
                      read_predictions, round_metrics)
from .tuning import TUNING_FILE

__all__ = ["reproduce", "export_results", "refresh_memory", "check_seeds", "collect_results", "PREDICTED_SAMPLES"]

#: Test samples per family whose predictions are kept in ``predictions.npz``.
PREDICTED_SAMPLES = 4


def check_seeds(seeds) -> list:
    """``seeds`` as a list of distinct non-negative ints; ValueError (naming the problem) otherwise."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seed given; pass at least one, e.g. --seeds 0 1 2")
    bad = [s for s in seeds if isinstance(s, bool) or not (isinstance(s, int) or str(s).lstrip("-").isdigit())]
    values = [int(s) for s in seeds if s not in bad]
    if bad or any(v < 0 for v in values):
        raise ValueError(f"seeds {seeds}: every seed must be a non-negative integer, e.g. --seeds 0 1 2")
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(f"seeds {seeds} repeat {dup}; give each seed once")
    return values


def _record(pdir, name, profile, data_dir):
    record = art.read_results(pdir / f"{name}.json", profile, data_dir)
    if record is None:
        raise FileNotFoundError(f"no results for {name!r} in {pdir}; run `fwi-teach reproduce --profile "
                                f"{profile.name} --seeds {name.rsplit('-s', 1)[-1]}` (or the missing experiment) first")
    return record


def _spec(row) -> str:
    return "pfm" if row["kind"] == "pfm" else f"{row['kind']}:{row['train_family']}"


def _seed_tables(p, cache_dir, seed, data_dir, strict=True) -> dict:
    """The raw tables of one seed, from the cache (see :data:`fwi_teach.experiments.results.RAW_TABLES`).

    ``strict``: every run of the chain must be there (an export); otherwise whatever is
    cached is collected (a chapter's live run)."""
    pdir = art.profile_dir(p, cache_dir) / "results"
    names = [art.run_name(*art.parse_spec(s), seed=seed) for s in art.model_specs(p)]
    for fam in p.low_data_families:
        for method in LOW_DATA_METHODS:
            for x in p.low_data_fractions:
                if x != 1.0:
                    names.append(art.run_name("baseline" if method == "scratch" else method, fam, x, seed))

    def get(name):
        return _record(pdir, name, p, data_dir) if strict else art.read_results(pdir / f"{name}.json", p, data_dir)

    records = [r for r in (get(n) for n in names) if r is not None]
    if not records:
        raise FileNotFoundError(f"no trained run of profile {p.name!r} with seed {seed} in {pdir}; train one first")
    matrix_rec = get(f"matrix-s{int(seed)}") or {"rows": []}
    lowdata = (get(f"lowdata-s{int(seed)}") or {"rows": []})["rows"]
    chain = get(f"chain-s{int(seed)}") or {"rows": []}
    samples, histories = {}, []
    for rec in records:
        row = rec["rows"][0]
        if "per_sample" not in rec:
            raise ValueError(f"run {rec['name']} in {pdir} has no per-sample test metrics (made by an older version); "
                             "delete its results file to re-run it")
        for fam, values in rec["per_sample"].items():
            samples[(_spec(row), float(row["fraction"]), fam)] = values
        histories += [{"experiment": rec["name"], "model": _spec(row), "fraction": float(row["fraction"]),
                       "seed": int(seed), **h} for h in rec["train"]["history"]]
    for key, values in matrix_rec.get("per_sample", {}).items():
        spec, fam = key.split("|")
        samples.setdefault((spec, 1.0, fam), values)
    per_sample = [{"model": spec, "fraction": x, "eval_family": fam, "split": "test", "seed": int(seed), "sample": i,
                   **{m: values[m][i] for m in ("mae", "rmse", "ssim")}}
                  for (spec, x, fam), values in sorted(samples.items()) for i in range(len(values["mae"]))]
    for rec in records:
        per_sample += _val_rows(p, cache_dir, data_dir, seed, rec)

    try:
        estimate = stage_seconds(p, records[0]["environment"]["device"].split(":")[0])
    except ValueError:  # all of the real data: no sample counts to estimate from
        estimate = dict.fromkeys(("data", "pretrain", "baselines", "finetune", "matrix", "lowdata"), 0.0)
    kinds = {"pretrain": ("pfm",), "baselines": ("baseline",), "finetune": METHODS}
    last = {r["stage"]: r["wall_time_s"] for r in chain["rows"]}
    # Data and matrix times come from the last chain call; if it found them done (an earlier,
    # since overwritten call did the work), they were not recorded: None, not a false zero.
    measured = {s: last.get(s) if last.get(s, 0.0) >= 0.01 * estimate.get(s, 0.0) else None for s in ("data", "matrix")}
    for stage, ks in kinds.items():  # training stages: each run's own wall time, whenever it ran
        measured[stage] = sum(rec["rows"][0]["wall_time_s"] for rec in records
                              if rec["rows"][0]["kind"] in ks and float(rec["rows"][0]["fraction"]) == 1.0)
    measured["lowdata"] = sum(rec["rows"][0]["wall_time_s"] for rec in records
                              if float(rec["rows"][0]["fraction"]) != 1.0)
    timings = [{"seed": int(seed), "stage": s, "measured_s": measured.get(s), "estimated_s": estimate.get(s),
                "source": ("sum of the runs' wall times" if s not in ("data", "matrix") else
                           "the last chain call's stage time" if measured.get(s) is not None else
                           "not recorded: done by an earlier chain call (data is shared by every seed)")}
               for s in estimate]
    runs = [row for rec in records for row in rec["rows"]]
    return {"runs": runs, "matrix": matrix_rec["rows"], "lowdata": lowdata, "timings": timings,
            "histories": histories, "per_sample": per_sample, "environment": records[0]["environment"],
            "data_source": records[0]["data_source"], "estimate_s": sum(estimate.values())}


def collect_results(profile, cache_dir=None, seeds=(0,), data_dir=None) -> ReferenceResults:
    """The results of whatever runs of ``seeds`` are cached, as a :class:`ReferenceResults` (nothing written).

    For a chapter's live verdict: train the runs a claim needs, then
    ``evaluate_claims(collect_results(p), only=["1"])``. Includes the mean-map
    references of every tested family.
    """
    p = get_profile(profile)
    seeds = check_seeds(seeds)
    per_seed = {s: _seed_tables(p, cache_dir, s, data_dir, strict=False) for s in seeds}
    tables = {t: [r for s in seeds for r in per_seed[s][t]] for t in RAW_TABLES}
    per_sample = [r for s in seeds for r in per_seed[s]["per_sample"]]
    mean_rows, _ = _mean_map(p, cache_dir, data_dir, sorted({r["eval_family"] for r in per_sample}))
    first = per_seed[seeds[0]]
    meta = {"format": RESULTS_FORMAT, "profile": p.name, "profile_settings": p.settings(), "seeds": seeds,
            "data_source": first["data_source"], "environment": first["environment"], "git_commits": [],
            "timing": {"total_s": 0.0, "estimated_s": first["estimate_s"]}}
    ref = ReferenceResults(p.name, art.profile_dir(p, cache_dir), meta, tables["runs"], tables["matrix"],
                           tables["lowdata"], tables["timings"], [], histories=tables["histories"],
                           per_sample_rows=per_sample + mean_rows)
    ref.openfwi = openfwi_comparison(ref)
    return ref


def _velocities(ds):
    """Normalised velocity maps of a split of :func:`fwi_teach.experiments.cache.load_split` (an OpenFWIDataset or a
    Subset of one), without reading the seismic."""
    import torch
    from torch.utils.data import Subset

    if isinstance(ds, Subset):
        return torch.from_numpy(ds.dataset.velocity_maps(ds.indices))
    return torch.from_numpy(ds.velocity_maps())


def _mean_map(p, cache_dir, data_dir, families):
    """Per-sample metrics of the training-mean map on each family's validation and test splits, and the maps."""
    from ..evaluation.metrics import per_sample_metrics

    rows, maps = [], {}
    kw = dict(profile=p, cache_dir=cache_dir, data_dir=data_dir, device="cpu", progress=False)
    for fam in families:
        mean = _velocities(art.load_split(fam, "train", **kw)).mean(0)
        for split in ("val", "test"):
            truth = _velocities(art.load_split(fam, split, **kw))
            values = per_sample_metrics(mean.expand_as(truth), truth)
            rows += [{"model": f"{MEAN_MAP}:{fam}", "fraction": 1.0, "eval_family": fam, "split": split, "seed": None,
                      "sample": i, **{m: float(values[m][i]) for m in values}} for i in range(len(truth))]
            if split == "test":
                maps[fam] = (mean[0].numpy(), truth[:PREDICTED_SAMPLES, 0].numpy())
    return rows, maps


def _val_rows(p, cache_dir, data_dir, seed, record) -> list:
    """Per-sample rows (split "val") of a run on its own families' validation splits.

    Taken from the run's record (``per_sample_val``); records written before it existed
    are evaluated again from the saved weights.
    """
    row = record["rows"][0]
    spec, fraction = _spec(row), float(row["fraction"])
    values = record.get("per_sample_val")
    if values is None:
        from ..training.engine import evaluate

        model = art.load_model(spec, p, cache_dir, seed, fraction)
        values = {r["eval_family"]: evaluate(model, art.load_split(r["eval_family"], "val", p, cache_dir, data_dir,
                                                                   device="cpu", progress=False),
                                             batch_size=max(p.batch_size, 32), device="cpu",
                                             per_sample=True)["per_sample"] for r in record["rows"]}
    return [{"model": spec, "fraction": fraction, "eval_family": fam, "split": "val", "seed": int(seed), "sample": i,
             **{m: v[m][i] for m in ("mae", "rmse", "ssim")}} for fam, v in values.items() for i in range(len(v["mae"]))]


def _predictions(p, cache_dir, data_dir, seed, maps) -> dict:
    """Float16 arrays: truth, mean map and the reference models' predictions of a few test samples."""
    import numpy as np
    import torch

    from ..training.engine import predict

    out = {}
    for fam, (mean, truth) in maps.items():
        out[f"{fam}/truth"], out[f"{fam}/mean-map"] = truth.astype(np.float16), mean.astype(np.float16)
        test = art.load_split(fam, "test", p, cache_dir, data_dir, device="cpu", progress=False)
        subset = [test[i][0] for i in range(min(PREDICTED_SAMPLES, len(test)))]
        specs = ["pfm", f"baseline:{fam}"] + ([f"{m}:{fam}" for m in METHODS] if fam in p.finetune_families else [])
        for spec in specs:
            if spec.startswith("baseline") and fam not in p.baseline_families:
                continue
            model = art.load_model(spec, p, cache_dir, seed)
            pred = predict(model, torch.stack(subset), device="cpu")[:, 0].numpy()
            out[f"{fam}/{spec.split(':')[0]}"] = pred.astype(np.float16)
    return out


def _write_folder(final: Path, ref: ReferenceResults, tables: dict, per_sample: list, predictions, claims, figures):
    """Write the folder beside its place and rename it in, so a reader never sees half of it."""
    import numpy as np

    from ..runtime import atomic_write_bytes, folder_swap

    with folder_swap(final) as tmp:
        (tmp / "figures").mkdir(parents=True)
        (tmp / "meta.json").write_text(json.dumps({**ref.meta, "rows": []}, indent=1, default=str) + "\n")
        for name, rows in tables.items():
            art.write_results(tmp / f"{name}.json", {"format": RESULTS_FORMAT, "profile": ref.profile, "name": name,
                                                     "rows": rows})
        art.write_results(tmp / "claims.json", {"format": RESULTS_FORMAT, "profile": ref.profile, "name": "claims",
                                                "rows": [c.to_dict() for c in claims]})
        atomic_write_bytes(tmp / PER_SAMPLE_FILE, per_sample_bytes(per_sample))
        if predictions is not None:
            with open(tmp / PREDICTIONS_FILE, "wb") as fh:
                np.savez_compressed(fh, **predictions)
        (tmp / "summary.md").write_text(f"# Results of profile `{ref.profile}`\n\n{ref.describe()}\n\n"
                                        + claims_markdown(claims, ref.profile))
        if figures:
            from ..plotting.results import save_reference_figures

            ref.folder = tmp
            save_reference_figures(ref, tmp / "figures")
        # written on their own (physics_results, benchmarks/tune_cpu.py --record): keep them
        if (final / PHYSICS_LOOP_DIR).is_dir():
            shutil.copytree(final / PHYSICS_LOOP_DIR, tmp / PHYSICS_LOOP_DIR)
        if (final / TUNING_FILE).is_file():
            shutil.copy2(final / TUNING_FILE, tmp / TUNING_FILE)
    ref.folder = final


def export_results(profile, results_dir=None, cache_dir=None, seeds=(0,), data_dir=None, figures=True,
                   merge=True, seed=None) -> Path:
    """Gather the cached results of finished chains into ``<results_dir>/<profile>/``.

    Parameters
    ----------
    profile : str or Profile
    results_dir, cache_dir : path, optional
    seeds : sequence of int, default (0,)
        Training seeds to export (each must have finished its chain).
    data_dir : path, optional
    figures : bool
    merge : bool, default True
        Keep the other seeds of an existing folder of the same profile and settings
        (rows of the exported seeds are replaced); False replaces the folder.
    seed : int, optional
        Shorthand for ``seeds=[seed]``.

    Returns
    -------
    Path
        The folder (written beside its place and renamed in).

    Raises
    ------
    FileNotFoundError
        If an experiment of a seed has no results yet; the message names it.
    ValueError
        For bad seeds, or an existing folder of another profile, settings or data
        (:func:`fwi_teach.experiments.results.check_mergeable`).
    """
    p = get_profile(profile)
    seeds = check_seeds([seed] if seed is not None else seeds)
    per_seed = {s: _seed_tables(p, cache_dir, s, data_dir) for s in seeds}
    first = per_seed[seeds[0]]
    final = Path(results_dir or default_results_dir()) / p.name
    meta = {"format": RESULTS_FORMAT, "profile": p.name, "profile_settings": p.settings(),
            "description": p.description, "data_source": first["data_source"]}
    tables = {t: [r for s in seeds for r in per_seed[s][t]] for t in RAW_TABLES}
    per_sample = [r for s in seeds for r in per_seed[s]["per_sample"]]
    old_meta, per_seed_s = {}, {}
    if merge and (final / "meta.json").is_file():
        old_meta = json.loads((final / "meta.json").read_text())
        check_mergeable(old_meta, meta, final)
        try:
            old = load_reference_results(p.name, final.parent)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"cannot merge into {final}: {err}. Pass merge=False (--no-merge) to replace the "
                             "folder, exporting every seed it should hold") from None
        keep = [s for s in old.seeds if s not in seeds]
        for t in RAW_TABLES:
            tables[t] = [r for r in getattr(old, t) if r.get("seed") in keep] + tables[t]
        per_sample = [r for r in old.per_sample_rows if r["seed"] in keep] + per_sample
        per_seed_s = {int(k): v for k, v in old_meta["timing"].get("per_seed_s", {}).items() if int(k) in keep}
    mean_rows, maps = _mean_map(p, cache_dir, data_dir, sorted({r["eval_family"] for r in per_sample}))
    per_sample = round_metrics([r for r in per_sample if not r["model"].startswith(MEAN_MAP)] + mean_rows)
    for s in seeds:
        per_seed_s[s] = sum(r["measured_s"] or 0.0 for r in per_seed[s]["timings"])
    all_seeds = sorted(per_seed_s)
    commits = sorted({r.get("git_commit") for t in ("runs", "matrix", "lowdata") for r in tables[t]
                      if r.get("git_commit")})
    meta.update({"seeds": all_seeds, "git_commits": commits, "environment": first["environment"],
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "timing": {"per_seed_s": {str(k): v for k, v in sorted(per_seed_s.items())},
                            "total_s": sum(per_seed_s.values()), "estimated_s": first["estimate_s"]},
                 "note": "stage times per seed: training stages sum the runs' own wall times; data and matrix "
                         "times are those of the seed's last `run_chain` call (data is generated once, by the first "
                         "seed, and shared)"})
    ref = ReferenceResults(p.name, final, meta, tables["runs"], tables["matrix"], tables["lowdata"],
                           tables["timings"], [], histories=tables["histories"], per_sample_rows=per_sample)
    ref.openfwi = openfwi_comparison(ref)
    from ..training.memory import claim_memory_rows

    ref.memory = claim_memory_rows(p.settings())
    claims = evaluate_claims(ref)
    pred_seed = min(all_seeds)
    predictions = (_predictions(p, cache_dir, data_dir, pred_seed, maps) if pred_seed in seeds
                   else read_predictions(final) or None)
    _write_folder(final, ref, {**tables, "openfwi": ref.openfwi, "memory": ref.memory}, per_sample, predictions,
                  claims, figures)
    return final


def refresh_memory(profile="cpu", results_dir=None) -> Path:
    """Recompute a results folder's derived tables with the current code; re-judge its claims.

    The memory account does not depend on training, and the baselines' table
    (:func:`~fwi_teach.experiments.claims.openfwi_comparison`) is computed from the
    folder's per-sample metrics, so both can be redone without the cache: writes
    ``memory`` and ``openfwi`` (``.csv`` / ``.json``) and rewrites ``claims.json`` and
    ``summary.md`` (each file atomically). Returns the folder.
    """
    from ..runtime import atomic_write_bytes
    from ..training.memory import claim_memory_rows

    ref = load_reference_results(profile, results_dir)
    ref.memory, ref.openfwi = claim_memory_rows(ref.settings), openfwi_comparison(ref)
    claims = evaluate_claims(ref)
    art.write_results(ref.folder / "openfwi.json", {"format": RESULTS_FORMAT, "profile": ref.profile,
                                                    "name": "openfwi", "rows": ref.openfwi})
    art.write_results(ref.folder / "memory.json", {"format": RESULTS_FORMAT, "profile": ref.profile,
                                                   "name": "memory", "rows": ref.memory})
    art.write_results(ref.folder / "claims.json", {"format": RESULTS_FORMAT, "profile": ref.profile, "name": "claims",
                                                   "rows": [c.to_dict() for c in claims]})
    atomic_write_bytes(ref.folder / "summary.md", (f"# Results of profile `{ref.profile}`\n\n{ref.describe()}\n\n"
                                                   + claims_markdown(claims, ref.profile)).encode())
    return ref.folder


def reproduce(profile="cpu", results_dir=None, cache_dir=None, seeds=(0,), device="auto", data_dir=None,
              progress=True, figures=True, merge=True, seed=None) -> Path:
    """Run every experiment of the paper at ``profile`` once per seed and export the compact results.

    Resumable: finished runs are read from the cache (``cache_dir``), so an interrupted
    call, or a call split over several sessions, continues where it stopped. Seeds run
    one after the other on the same data; each seed is exported (merged into the
    folder) as soon as it finishes, so a long call that stops keeps its finished seeds.
    Other parameters as :func:`export_results` and :func:`fwi_teach.experiments.run_chain`.

    Parameters
    ----------
    seeds : sequence of int, default (0,)
        Distinct non-negative training seeds (``seed=`` is shorthand for one).
    merge : bool, default True
        Merge into an existing folder of the same profile and settings (see
        :func:`export_results`).

    Returns
    -------
    Path
        The results folder, ``<results_dir>/<profile>``.
    """
    from .runs import run_chain

    seeds = check_seeds([seed] if seed is not None else seeds)
    folder = None
    for i, s in enumerate(seeds):
        run_chain(profile, cache_dir=cache_dir, seed=s, device=device, data_dir=data_dir, progress=progress)
        folder = export_results(profile, results_dir, cache_dir, [s], data_dir, figures and i == len(seeds) - 1,
                                merge=merge or i > 0)
    return folder
