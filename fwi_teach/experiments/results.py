"""A results folder: its tables, how it is read back, and how exports of several seeds merge.

:func:`fwi_teach.experiments.reproduce.export_results` writes ``results/<profile>/``; this module reads
it (:func:`load_reference_results`) and holds the rules that keep it consistent:

=======================  ==================================================================
``meta.json``             profile, settings, seeds, data source, commits, machine, timings
``runs.csv``              every training run (every seed) on its own test set(s)
``matrix.csv``            every model on every family's test set (out of distribution)
``lowdata.csv``           scratch / FFT / LoRA at each share of the training data
``histories.csv``         train and validation loss (and validation metrics) per epoch
``per_sample.csv.gz``     MAE, RMSE, SSIM of every test sample in every evaluation, and of
                          the training-mean map (``mean-map:<family>``): the evidence; also
                          each model on its own validation split (``split`` "val"), which
                          decides whether it learned
``predictions.npz``       a few test samples per family: truth, mean map and the reference
                          models' predictions (float16), for the book's figures
``timings.csv``           measured and estimated seconds of each stage, per seed
``openfwi.csv``           baselines beside the mean map (with CIs) and OpenFWI's numbers
``memory.csv``            training-memory account of FFT and LoRA (claim 3)
``claims.json``           :func:`fwi_teach.experiments.claims.evaluate_claims` with every comparison
``summary.md``            the verdicts in words; ``figures/*.png`` drawn from these files
=======================  ==================================================================

Seeds can be exported in separate calls: an export merges into an existing folder of the
same profile and settings, replacing the rows of the seeds it brings. Every table has a
``seed`` column; :meth:`ReferenceResults.mean_rows` averages over seeds.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ReferenceResults", "load_reference_results", "default_results_dir", "RESULTS_FORMAT", "RAW_TABLES",
           "read_per_sample", "read_predictions", "per_sample_bytes", "round_metrics", "check_mergeable", "PER_SAMPLE_FILE", "PREDICTIONS_FILE"]

#: Version of the folder layout; 2 added the test split, seeds, per-sample metrics and histories.
RESULTS_FORMAT = 2
#: Tables exported per seed (merged across exports); the others are derived from them.
RAW_TABLES = ("runs", "matrix", "lowdata", "timings", "histories")
PER_SAMPLE_FILE = "per_sample.csv.gz"
PREDICTIONS_FILE = "predictions.npz"
#: Sub-folder with the physics loop (:mod:`fwi_teach.experiments.physics_results`), written on its own.
PHYSICS_LOOP_DIR = "physics_loop"
_PER_SAMPLE_COLUMNS = ("model", "fraction", "eval_family", "split", "seed", "sample", "mae", "rmse", "ssim")
_METRIC_KEYS = ("mae", "rmse", "ssim", "mae_mps", "rmse_mps")


def _stored(value) -> str:
    """A metric as ``per_sample.csv.gz`` stores it: 8 significant digits."""
    return f"{float(value):.8g}"


def round_metrics(rows) -> list:
    """``rows`` with each metric rounded as :func:`per_sample_bytes` stores it, so that what is computed
    from them before writing equals what is computed after reading."""
    return [{**r, **{m: float(_stored(r[m])) for m in ("mae", "rmse", "ssim")}} for r in rows]


def per_sample_bytes(rows) -> bytes:
    """``rows`` as gzip-compressed CSV (deterministic: no time stamp)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_PER_SAMPLE_COLUMNS)
    for r in rows:
        writer.writerow([r["model"], repr(float(r["fraction"])), r["eval_family"], r.get("split") or "test",
                         "" if r.get("seed") is None else int(r["seed"]), int(r["sample"]),
                         *(_stored(r[m]) for m in ("mae", "rmse", "ssim"))])
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue().encode())
    return out.getvalue()


def read_per_sample(path) -> list:
    """Rows of a ``per_sample.csv.gz`` (numbers converted; ``seed`` None for the mean map)."""
    with gzip.open(Path(path), "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["fraction"], r["sample"] = float(r["fraction"]), int(r["sample"])
        r["seed"] = None if r["seed"] == "" else int(r["seed"])
        r["split"] = r.get("split") or "test"
        for m in ("mae", "rmse", "ssim"):
            r[m] = float(r[m])
    return rows


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
    histories: list = field(default_factory=list)
    per_sample_rows: list = field(default_factory=list)
    _index: object = field(default=None, repr=False)

    @property
    def settings(self) -> dict:
        """The profile settings the results were made with."""
        return self.meta["profile_settings"]

    @property
    def seeds(self) -> list:
        """Training seeds in these results."""
        return sorted({int(r["seed"]) for r in self.runs})

    @property
    def per_sample(self):
        """The per-sample metrics as a :class:`fwi_teach.evaluation.evidence.SampleIndex` (built once)."""
        if self._index is None:
            from ..evaluation.evidence import SampleIndex

            self._index = SampleIndex(self.per_sample_rows)
        return self._index

    def mean_rows(self, table: str, keys=None) -> list:
        """Rows of ``table`` ("runs", "matrix", "lowdata") averaged over seeds.

        Rows that differ only in ``seed`` become one, with the mean of each metric and
        ``seeds`` (how many). ``keys`` default: every non-metric column but the
        seed-specific ones (times, memory, commit).
        """
        rows = getattr(self, table)
        skip = set(_METRIC_KEYS) | {"seed", "experiment", "wall_time_s", "train_wall_time_s", "samples_per_s", "peak_memory_mb",
                                    "best_epoch", "git_commit", "device", "package_version", "torch_version",
                                    "n_samples", "memory_kind"}
        groups = {}
        for r in rows:
            key = tuple((k, r[k]) for k in (keys or [k for k in r if k not in skip]))
            groups.setdefault(key, []).append(r)
        out = []
        for key, group in groups.items():
            row = dict(key)
            for m in _METRIC_KEYS:
                if all(m in g for g in group):
                    row[m] = float(np.mean([g[m] for g in group]))
            row["seeds"] = len(group)
            out.append(row)
        return out

    def metric(self, kind, family, key="ssim", eval_family=None, fraction=1.0):
        """Mean over seeds of a value of ``runs``: model ``kind`` ("pfm", "baseline", "fft",
        "lora") trained on ``family`` (ignored for the PFM), tested on ``eval_family``
        (default ``family``)."""
        eval_family = eval_family or family
        values = [r[key] for r in self.runs
                  if r["kind"] == kind and r["eval_family"] == eval_family and float(r["fraction"]) == float(fraction)
                  and (kind == "pfm" or r["train_family"] == family)]
        if not values:
            raise KeyError(f"no run of {kind!r} on {family!r} tested on {eval_family!r} in {self.folder}")
        return float(np.mean(values))

    def predictions(self) -> dict:
        """``predictions.npz`` as a dict of float32 arrays (``<family>/truth``, ``<family>/mean-map``,
        ``<family>/<model kind>``); empty if the folder has none."""
        return {k: v.astype(np.float32) for k, v in read_predictions(self.folder).items()}

    def claims(self) -> list:
        """Judge the paper's claims from these tables (:func:`fwi_teach.experiments.claims.evaluate_claims`)."""
        from .claims import evaluate_claims

        return evaluate_claims(self)

    def describe(self) -> str:
        """One paragraph: profile, sizes, seeds, commits, machine and time behind these results."""
        s, env, t = self.settings, self.meta["environment"], self.meta["timing"]
        commits = ", ".join(c[:10] for c in self.meta["git_commits"]) or "unknown"
        seeds = self.seeds
        per_seed = t.get("per_seed_s") or {}
        times = ", ".join(f"seed {k} {v / 60:.0f} min" for k, v in sorted(per_seed.items(), key=lambda kv: int(kv[0])))
        return (f"Reference results of profile '{self.profile}' ({len(seeds)} seed(s): "
                f"{', '.join(map(str, seeds))}; data: {self.meta['data_source']}): {s['n_train']} training, "
                f"{s['n_val']} validation and {s.get('n_test', s['n_val'])} test samples per family; every number "
                f"is measured on the test split, which training and model selection never read. InversionNet width "
                f"{s['width_multiplier']:g} with {s['nt'] // s['time_decimation']} time samples, "
                f"{s['epochs_pretrain']} / {s['epochs_baseline']} / {s['epochs_finetune']} epochs (pretraining / "
                f"baseline / fine-tuning), {s.get('schedule', 'constant')} learning rate, LoRA rank "
                f"{s['lora_rank']}. Made by commit(s) {commits} on {env['device']} ({env['device_name']}, "
                f"{env['torch_threads']} thread(s), torch {env['torch_version']}); recorded chain time "
                + (f"per seed: {times} " if times else f"{t['total_s'] / 3600:.2f} h ")
                + f"against a cost-model estimate of {t['estimated_s'] / 60:.0f} min per seed (see timings.csv).")


def read_predictions(folder) -> dict:
    """The arrays of ``folder/predictions.npz`` as stored (float16); empty if the folder has none."""
    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def default_results_dir() -> Path:
    """Where results folders live by default.

    ``$FWI_TEACH_RESULTS`` if set; else the first existing ``results`` folder of the
    repository found from the working directory or of the clone the package was imported
    from (the book's staging tree has none of its own); else ``./results``.
    """
    import os

    if os.environ.get("FWI_TEACH_RESULTS"):
        return Path(os.environ["FWI_TEACH_RESULTS"]).expanduser().resolve()
    from ..runtime import find_book_root

    candidates = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        try:
            candidates.append(find_book_root(start) / "results")
        except FileNotFoundError:
            pass
    return next((c for c in candidates if c.is_dir()), candidates[0] if candidates else Path.cwd() / "results")


def _table(folder: Path, name: str, required=True) -> list:
    path = folder / f"{name}.json"
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} is missing: the results folder {folder} is incomplete; re-export it "
                                    f"from the cache with `fwi-teach reproduce --profile {folder.name} --seeds ... "
                                    "--no-merge` (every seed it should hold)")
        return []
    return json.loads(path.read_text())["rows"]


def load_reference_results(profile="cpu", results_dir=None) -> ReferenceResults:
    """Read a results folder written by :func:`fwi_teach.experiments.reproduce.export_results`.

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
        If the folder, one of its tables or its per-sample metrics are missing; the
        message says how to make them.
    ValueError
        If the folder has another layout version.
    """
    name = str(profile).strip().lower()
    folder = Path(results_dir or default_results_dir()) / name
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} is missing: there are no results of profile {name!r} here. Clone the repository (they "
            f"live in its results/ folder), point FWI_TEACH_RESULTS at a results folder, or make them with "
            f"`fwi-teach reproduce --profile {name}`")
    meta = {k: v for k, v in json.loads(meta_path.read_text()).items() if k != "rows"}
    if meta.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{folder} has results format {meta.get('format')!r}; this version of fwi_teach reads format "
                         f"{RESULTS_FORMAT} (a held-out test split, seeds and per-sample metrics). Move it away and re-run "
                         f"`fwi-teach reproduce --profile {name} --no-merge` to make them")
    per_sample = folder / PER_SAMPLE_FILE
    if not per_sample.is_file():
        raise FileNotFoundError(f"{per_sample} is missing: without per-sample metrics no confidence interval can be "
                                f"computed. Re-export the folder from the cache with `fwi-teach reproduce --profile "
                                f"{name} --seeds ... --no-merge` (every seed it should hold)")
    return ReferenceResults(name, folder, meta, *(_table(folder, t) for t in ("runs", "matrix", "lowdata", "timings",
                                                                            "openfwi")),
                            claims_saved=_table(folder, "claims", False), memory=_table(folder, "memory", False),
                            histories=_table(folder, "histories", False), per_sample_rows=read_per_sample(per_sample))


def check_mergeable(old_meta: dict, new_meta: dict, folder) -> None:
    """Raise ValueError unless two exports can share one folder: same profile, settings and data.

    Different commits may merge when their profile settings are equal (the settings
    are what changes results); the message of a refusal names what differs.
    """
    if old_meta.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{folder} holds results of format {old_meta.get('format')!r}, not {RESULTS_FORMAT}; "
                         "they cannot be merged with these. Move the folder away (or pass merge=False / "
                         "--no-merge to replace it)")
    if old_meta["profile"] != new_meta["profile"]:
        raise ValueError(f"{folder} holds results of profile {old_meta['profile']!r}, these are of "
                         f"{new_meta['profile']!r}; export each profile into its own folder")
    if old_meta["profile_settings"] != new_meta["profile_settings"]:
        diff = sorted(k for k in set(old_meta["profile_settings"]) | set(new_meta["profile_settings"])
                      if old_meta["profile_settings"].get(k) != new_meta["profile_settings"].get(k))
        raise ValueError(f"{folder} was made with other settings of profile {new_meta['profile']!r} (commits "
                         f"{', '.join(c[:10] for c in old_meta.get('git_commits', [])) or 'unknown'}; differing: "
                         f"{', '.join(diff)}); seeds of different settings cannot be merged. Re-run the old seeds "
                         "with these settings, or pass merge=False / --no-merge to replace the folder")
    if old_meta.get("data_source") != new_meta.get("data_source"):
        raise ValueError(f"{folder} was made from data {old_meta.get('data_source')!r}, these from "
                         f"{new_meta.get('data_source')!r}; results on different data cannot be merged")
