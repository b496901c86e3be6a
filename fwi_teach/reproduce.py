"""Reproduce the paper's experiments at one profile and keep their compact results.

:func:`reproduce` runs the whole chain (:func:`fwi_teach.experiments.run_chain`: data,
PFM, baselines, FFT and LoRA fine-tuning, the evaluation matrix, the low-data sweep) and
then :func:`export_results` gathers the cached results into one small folder,
``results/<profile>/``, meant to be committed:

=====================  ==================================================================
``meta.json``          profile and its settings, seed, data source, git commits, machine,
                       timings of each stage and of the whole chain
``runs.csv``           every training run on its own test set(s): metrics, trainable and
                       total parameters, peak training memory, wall time
``matrix.csv``         every model on every family's test set (out of distribution)
``lowdata.csv``        scratch / FFT / LoRA at each share of the training data
``timings.csv``        measured and estimated seconds of each stage
``openfwi.csv``        our baselines next to OpenFWI's published InversionNet numbers and
                       the score of a structureless prediction (the training mean map)
``memory.csv``         the training-memory account per step of FFT and LoRA at the
                       profile's setting and at full width, batch 256
                       (:func:`fwi_teach.memory.claim_memory_rows`; claim 3 uses it)
``claims.json``        the verdicts of :func:`fwi_teach.claims.evaluate_claims`
``summary.md``         the verdicts in words
``figures/*.png``      the figures drawn from these files
=====================  ==================================================================

Every table is also written as ``.json``. :func:`load_reference_results` reads a folder
back; the book's "reference results" sections use it, so a book built with the quick
``smoke`` profile still shows the findings of a larger run, labelled with its profile.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import artifacts as art
from .claims import claims_markdown, evaluate_claims, openfwi_comparison
from .profiles import LOW_DATA_METHODS, get_profile, stage_seconds

__all__ = ["reproduce", "export_results", "load_reference_results", "refresh_memory", "default_results_dir", "ReferenceResults",
           "RESULTS_FORMAT", "readme_block", "update_readme"]

RESULTS_FORMAT = 1
_TABLES = ("runs", "matrix", "lowdata", "timings", "openfwi")


@dataclass
class ReferenceResults:
    """The tables of one results folder (see the module docstring), as lists of row dicts."""

    profile: str
    folder: Path
    meta: dict
    runs: list
    matrix: list
    lowdata: list
    timings: list
    openfwi: list
    claims_saved: list = field(default_factory=list)
    memory: list = field(default_factory=list)

    @property
    def settings(self) -> dict:
        """The profile settings the results were made with."""
        return self.meta["profile_settings"]

    def metric(self, kind, family, key="ssim", eval_family=None, fraction=1.0):
        """A value of ``runs``: model ``kind`` ("pfm", "baseline", "fft", "lora") trained on
        ``family`` (ignored for the PFM), tested on ``eval_family`` (default ``family``)."""
        eval_family = eval_family or family
        for r in self.runs:
            if (r["kind"] == kind and r["eval_family"] == eval_family and float(r["fraction"]) == float(fraction)
                    and (kind == "pfm" or r["train_family"] == family)):
                return r[key]
        raise KeyError(f"no run of {kind!r} on {family!r} tested on {eval_family!r} in {self.folder}")

    def claims(self) -> list:
        """Evaluate the paper's claims from these tables (:func:`fwi_teach.claims.evaluate_claims`)."""
        return evaluate_claims(self)

    def describe(self) -> str:
        """One paragraph: which profile, sizes, seed, commit, machine and time made these results."""
        s, env, t = self.settings, self.meta["environment"], self.meta["timing"]
        commits = ", ".join(c[:10] for c in self.meta["git_commits"]) or "unknown"
        return (f"Reference results of profile '{self.profile}' (seed {self.meta['seed']}, data: "
                f"{self.meta['data_source']}): {s['n_train']} training and {s['n_val']} test samples per family, "
                f"InversionNet width {s['width_multiplier']:g} with {s['nt'] // s['time_decimation']} time samples, "
                f"{s['epochs_pretrain']} / {s['epochs_baseline']} / {s['epochs_finetune']} epochs (pretraining / "
                f"baseline / fine-tuning), LoRA rank {s['lora_rank']}. Made by commit(s) {commits} on "
                f"{env['device']} ({env['device_name']}, {env['torch_threads']} thread(s), torch "
                f"{env['torch_version']}); its recorded stage times add up to {t['total_s'] / 3600:.2f} h "
                + (f"(not recorded: {', '.join(t['unrecorded_stages'])}) " if t.get("unrecorded_stages") else "")
                + f"against a cost-model estimate of {t['estimated_s'] / 3600:.2f} h for the whole chain "
                  "(see timings.csv).")


def default_results_dir() -> Path:
    """Where results folders live by default.

    ``$FWI_TEACH_RESULTS`` if set; else the first existing ``results`` folder of the
    repository found from the working directory or of the clone the package was imported
    from (the book's staging tree has none of its own); else ``./results``.
    """
    if os.environ.get("FWI_TEACH_RESULTS"):
        return Path(os.environ["FWI_TEACH_RESULTS"]).expanduser().resolve()
    from .book import find_book_root

    candidates = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        try:
            candidates.append(find_book_root(start) / "results")
        except FileNotFoundError:
            pass
    return next((c for c in candidates if c.is_dir()), candidates[0] if candidates else Path.cwd() / "results")


def _record(pdir, name, profile, data_dir):
    record = art.read_results(pdir / f"{name}.json", profile, data_dir)
    if record is None:
        raise FileNotFoundError(f"no results for {name!r} in {pdir}; run `fwi-teach reproduce --profile "
                                f"{profile.name}` (or the missing experiment) first")
    return record


def _mean_map_metrics(family, profile, cache_dir, data_dir) -> dict:
    """MAE / RMSE / SSIM of predicting the training set's mean velocity map for every test sample."""
    import torch

    from .metrics import evaluate_metrics

    kw = dict(profile=profile, cache_dir=cache_dir, data_dir=data_dir, device="cpu", progress=False)
    train, test = art.load_split(family, "train", **kw), art.load_split(family, "val", **kw)
    mean = torch.stack([train[i][1] for i in range(len(train))]).mean(0)
    truth = torch.stack([test[i][1] for i in range(len(test))])
    metrics = evaluate_metrics(mean.expand_as(truth), truth)
    return {k: metrics[k] for k in ("mae", "rmse", "ssim")}


def export_results(profile, results_dir=None, cache_dir=None, seed=0, data_dir=None, figures=True) -> Path:
    """Gather the cached results of a finished chain into ``<results_dir>/<profile>/``.

    The folder is written beside its final place and renamed into it, so a reader never
    sees half of it. Returns the folder.

    Raises
    ------
    FileNotFoundError
        If an experiment of the chain has no results yet; the message names it.
    """
    p = get_profile(profile)
    pdir = art.profile_dir(p, cache_dir) / "results"
    names = [art.run_name(*art.parse_spec(s), seed=seed) for s in art.model_specs(p)]
    for fam in p.low_data_families:
        for method in LOW_DATA_METHODS:
            for x in p.low_data_fractions:
                if x != 1.0:
                    names.append(art.run_name("baseline" if method == "scratch" else method, fam, x, seed))
    records = [_record(pdir, n, p, data_dir) for n in names]
    runs = [row for rec in records for row in rec["rows"]]
    matrix = _record(pdir, f"matrix-s{int(seed)}", p, data_dir)["rows"]
    lowdata = _record(pdir, f"lowdata-s{int(seed)}", p, data_dir)["rows"]
    chain = _record(pdir, f"chain-s{int(seed)}", p, data_dir)

    estimate = stage_seconds(p, records[0]["environment"]["device"].split(":")[0])
    kinds = {"pretrain": ("pfm",), "baselines": ("baseline",), "finetune": ("fft", "lora")}
    last = {r["stage"]: r["wall_time_s"] for r in chain["rows"]}
    # Data and matrix times come from the last chain call; if it found them done (an earlier,
    # since overwritten call did the work), they were not recorded: None, not a false zero.
    measured = {s: last.get(s) if last.get(s, 0.0) >= 0.01 * estimate.get(s, 0.0) else None for s in ("data", "matrix")}
    for stage, ks in kinds.items():  # training stages: each run's own wall time, whenever it ran
        measured[stage] = sum(rec["rows"][0]["wall_time_s"] for rec in records
                              if rec["rows"][0]["kind"] in ks and float(rec["rows"][0]["fraction"]) == 1.0)
    measured["lowdata"] = sum(rec["rows"][0]["wall_time_s"] for rec in records
                              if float(rec["rows"][0]["fraction"]) != 1.0)
    timings = [{"stage": s, "measured_s": measured.get(s), "estimated_s": estimate.get(s),
                "source": ("sum of the runs' wall times" if s not in ("data", "matrix") else
                           "the last chain call's stage time" if measured.get(s) is not None else
                           "not recorded: done by an earlier chain call")}
               for s in estimate]
    total = sum(r["measured_s"] for r in timings if r["measured_s"] is not None)
    unrecorded = [r["stage"] for r in timings if r["measured_s"] is None]
    commits = sorted({r.get("git_commit") for r in runs + matrix + lowdata if r.get("git_commit")})
    meta = {"format": RESULTS_FORMAT, "profile": p.name, "seed": int(seed), "profile_settings": p.settings(),
            "description": p.description, "data_source": records[0]["data_source"], "git_commits": commits,
            "environment": records[0]["environment"], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "timing": {"total_s": total, "estimated_s": sum(estimate.values()), "unrecorded_stages": unrecorded,
                       "last_chain_call_s": chain.get("total_s")},
            "note": "data and matrix times are those of the last `run_chain` call; data generated before that "
                    "call (e.g. by an earlier, interrupted call) is not counted"}
    ref = ReferenceResults(p.name, Path("."), meta, runs, matrix, lowdata, timings, [])
    ref.openfwi = openfwi_comparison(ref)
    for row in ref.openfwi:  # a prediction without structure, to judge a baseline's SSIM against
        row.update({f"mean_map_{k}": v for k, v in _mean_map_metrics(row["family"], p, cache_dir, data_dir).items()})
    from .memory import claim_memory_rows

    ref.memory = claim_memory_rows(p.settings())
    claims = evaluate_claims(ref)

    final = Path(results_dir or default_results_dir()) / p.name
    tmp = final.with_name(f".{p.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    (tmp / "meta.json").write_text(json.dumps({**meta, "rows": []}, indent=1, default=str) + "\n")
    for name in _TABLES + ("memory",):
        art.write_results(tmp / f"{name}.json", {"format": RESULTS_FORMAT, "profile": p.name, "name": name,
                                                 "rows": getattr(ref, name)})
    art.write_results(tmp / "claims.json", {"format": RESULTS_FORMAT, "profile": p.name, "name": "claims",
                                            "rows": [c.to_dict() for c in claims]})
    (tmp / "summary.md").write_text(f"# Results of profile `{p.name}`\n\n{ref.describe()}\n\n"
                                    + claims_markdown(claims, p.name))
    if figures:
        from .plotting_results import save_reference_figures

        ref.folder = tmp
        save_reference_figures(ref, tmp / "figures")
    old = final.with_name(f".{p.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_reference_results(profile="cpu", results_dir=None) -> ReferenceResults:
    """Read a results folder written by :func:`export_results`.

    Parameters
    ----------
    profile : str
        Profile name; its folder is ``<results_dir>/<profile>``.
    results_dir : str or Path, optional
        Default :func:`default_results_dir` (``$FWI_TEACH_RESULTS`` or the repository's
        ``results`` folder).

    Raises
    ------
    FileNotFoundError
        If the folder or one of its tables is missing; the message says how to make it.
    """
    name = str(profile).strip().lower()
    folder = Path(results_dir or default_results_dir()) / name
    tables = {}
    for table in ("meta",) + _TABLES + ("claims",):
        path = folder / f"{table}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: there are no committed results of profile {name!r} here. Clone the repository "
                f"(they live in its results/ folder), point FWI_TEACH_RESULTS at a results folder, or make them "
                f"with `fwi-teach reproduce --profile {name}`")
        tables[table] = json.loads(path.read_text())
    if tables["meta"].get("format") != RESULTS_FORMAT:
        raise ValueError(f"{folder} has results format {tables['meta'].get('format')!r}; this version of fwi_teach "
                         f"reads format {RESULTS_FORMAT}. Re-export them with `fwi-teach reproduce --profile {name}`")
    meta = {k: v for k, v in tables["meta"].items() if k != "rows"}
    memory = folder / "memory.json"  # optional: folders exported before it existed have none
    return ReferenceResults(name, folder, meta, *(tables[t]["rows"] for t in _TABLES),
                            claims_saved=tables["claims"]["rows"],
                            memory=json.loads(memory.read_text())["rows"] if memory.is_file() else [])


def refresh_memory(profile="cpu", results_dir=None) -> Path:
    """Recompute a results folder's memory table with the current code; re-judge its claims.

    The memory account does not depend on training, so it can be redone without the
    cache: writes ``memory.csv`` / ``.json`` and rewrites ``claims.json`` and
    ``summary.md`` (each file atomically). Returns the folder.
    """
    from .data.layout import atomic_write_bytes
    from .memory import claim_memory_rows

    ref = load_reference_results(profile, results_dir)
    ref.memory = claim_memory_rows(ref.settings)
    claims = evaluate_claims(ref)
    art.write_results(ref.folder / "memory.json", {"format": RESULTS_FORMAT, "profile": ref.profile,
                                                   "name": "memory", "rows": ref.memory})
    art.write_results(ref.folder / "claims.json", {"format": RESULTS_FORMAT, "profile": ref.profile, "name": "claims",
                                                   "rows": [c.to_dict() for c in claims]})
    atomic_write_bytes(ref.folder / "summary.md", (f"# Results of profile `{ref.profile}`\n\n{ref.describe()}\n\n"
                                                   + claims_markdown(claims, ref.profile)).encode())
    return ref.folder


def reproduce(profile="cpu", results_dir=None, cache_dir=None, seed=0, device="auto", data_dir=None,
              progress=True, figures=True) -> Path:
    """Run every experiment of the paper at ``profile`` and export the compact results.

    Resumable: finished runs are read from the cache (``cache_dir``), so an interrupted
    call, or a call split over several sessions, continues where it stopped. Shows one
    progress bar with the remaining time, weighted by the cost model.

    Returns
    -------
    Path
        The results folder, ``<results_dir>/<profile>`` (see :func:`export_results`).
    """
    from .experiments import run_chain

    run_chain(profile, cache_dir=cache_dir, seed=seed, device=device, data_dir=data_dir, progress=progress)
    return export_results(profile, results_dir, cache_dir, seed, data_dir, figures)


README_START = "<!-- reference results: generated by `fwi-teach reproduce --update-readme`; do not edit by hand -->"
README_END = "<!-- end of reference results -->"


def readme_block(results: ReferenceResults) -> str:
    """The README's "what reproduces" section, written from a results folder."""
    claims = results.claims()
    held = [c for c in claims if c.verdict == "reproduced"]
    part = [c for c in claims if c.verdict == "partly reproduced"]
    failed = [c for c in claims if c.verdict == "not reproduced"]

    def numbers(cs):
        return ", ".join(str(c.number) for c in cs) or "none"

    fva = next((r for r in results.openfwi if r["family"] == "flatvel-a"), None)
    lines = [README_START, "", results.describe(), "",
             f"Of the paper's five claims, this run reproduces {numbers(held)}, partly reproduces {numbers(part)} "
             f"and does not reproduce {numbers(failed)}:", ""]
    lines += [f"{c.number}. {c.text} **{c.verdict.capitalize()}**: {c.evidence}" for c in claims]
    if fva:
        lines += ["", f"The FlatVel-A baseline reaches SSIM {fva['ssim']:.3f} (the structureless training-mean map: "
                      f"{fva['mean_map_ssim']:.3f}; OpenFWI's published InversionNet: {fva['openfwi_ssim']:.4f} with "
                      f"{fva['openfwi_n_train']:,} training samples and {fva['openfwi_epochs']} epochs)."]
    lines += ["", f"Files: `results/{results.profile}/` (tables as CSV and JSON, `summary.md`, `figures/`).", "",
              README_END]
    return "\n".join(lines)


def update_readme(results: ReferenceResults, readme) -> bool:
    """Replace the generated block of ``readme`` by :func:`readme_block`; return whether it changed.

    Raises
    ------
    ValueError
        If the README has no block delimited by :data:`README_START` and :data:`README_END`.
    """
    from .data.layout import atomic_write_bytes

    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path} has no generated results block; add the two lines {README_START!r} and "
                         f"{README_END!r} where it should go")
    head, rest = text.split(README_START, 1)
    new = head + readme_block(results) + rest.split(README_END, 1)[1]
    if new != text:
        atomic_write_bytes(path, new.encode())
    return new != text
