"""The paper's experiments, one call each, with every artifact cached on disk.

Ghosal et al. (2024) pretrain one InversionNet, the *pretrained foundational model* (PFM),
on six OpenFWI families, compare it with task-specific baselines, fine-tune it on four
other families fully (FFT) or with LoRA, test every model on every family (the
out-of-distribution table) and repeat the fine-tuning with 10-100 % of the data. Here:

===========================  =============================================================
:func:`prepare_data`          generate (or find) the data of every family
:func:`pretrain_pfm`          the PFM on the pretraining families, concatenated
:func:`train_baseline`        a task-specific InversionNet from scratch
:func:`finetune`              the PFM fine-tuned on one family, ``method="fft"`` or ``"lora"``
:func:`evaluation_matrix`     every model on every family's test set
:func:`low_data_sweep`        scratch / FFT / LoRA on shares of the training set
:func:`run_chain`             all of the above in order, with a progress bar
===========================  =============================================================

Sizes come from a :class:`~fwi_teach.experiments.profiles.Profile` (``"smoke"``, ``"cpu"``, ``"gpu"``,
``"paper"``). Every family has three disjoint splits: the training split trains, the
validation split picks the best epoch, and the test split, which neither training nor
selection reads, gives every reported number; each evaluation also keeps the metrics of
every test sample (``per_sample`` in the results records), for paired confidence
intervals (:mod:`fwi_teach.evaluation.stats`), and of every validation sample of the run's own
families (``per_sample_val``), on which the mean-map check decides. Each family is normalised with its own published
seismic bounds, also when the six pretraining sets are concatenated.

Cache layout (``cache_dir`` argument, else ``$FWI_TEACH_CACHE``, else ``~/.cache/fwi_teach``)::

    <cache>/<profile>/data/<family>/         generated OpenFWI-layout sets (resumable)
    <cache>/<profile>/models/<run>/          model.pt (weights) or adapter/ (LoRA, peft format);
                                             checkpoints/ while training (resumes, then removed)
    <cache>/<profile>/results/<name>.json    results; <name>.csv holds the same rows, flat

A run whose results file exists is never retrained; an interrupted one resumes from its
last finished epoch. Run names end in the training seed: ``pfm-s0``,
``baseline-style-a-s0``, ``lora-style-a-f0.25-s0`` (25 % of the training set).

LoRA uses :func:`fwi_teach.models.peft_bridge.apply_peft_lora` (peft, on every Conv2d and ConvTranspose2d,
BatchNorm frozen with its pretrained statistics) and stores the adapter with peft's
``save_pretrained``; reload it with :func:`load_model` or
:func:`fwi_teach.models.peft_bridge.load_peft_adapter` on the PFM weights. (peft's adapter format is the
one other tools read; the from-scratch :func:`fwi_teach.models.lora.apply_lora` computes the same.)

The cache itself (folders, data sets, results files, saved weights) is handled by
:mod:`fwi_teach.experiments.cache`.
"""

from __future__ import annotations

import shutil
import time

import torch
from torch.utils.data import ConcatDataset
from tqdm.auto import tqdm

from . import cache as art
from ..data import FAMILIES, canonical_family
from .costs import stage_seconds
from .lock import run_lock
from .profiles import LOW_DATA_METHODS, METHODS, get_profile
from ..runtime import resolve_device

__all__ = ["prepare_data", "pretrain_pfm", "train_baseline", "finetune", "evaluation_matrix", "low_data_sweep",
           "run_chain", "train_spec"]


# ------------------------------------------------------------------------------------- data
def prepare_data(profile, families=None, cache_dir=None, device="auto", data_dir=None, progress=True) -> dict:
    """Generate (resumably) or locate the data sets of ``families`` (default: all ten).

    Returns
    -------
    dict
        Family name -> data set folder.
    """
    p = get_profile(profile)
    families = FAMILIES if families is None else tuple(canonical_family(f) for f in families)
    return {f: art.family_root(f, p, cache_dir, data_dir, device, progress) for f in families}


# ------------------------------------------------------------------------------- training run
def _run(kind, family, p, cache_dir, seed, device, data_dir, fraction=1.0, progress=True, force=False) -> dict:
    """Train one model unless its results exist (``force``: again); evaluate it on its test set(s); write results."""
    fraction = float(fraction)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}; expected a share of the training set in (0, 1], e.g. 0.25")
    name = art.run_name(kind, family, fraction, seed)
    pdir = art.profile_dir(p, cache_dir)
    cached = None if force else art.read_results(pdir / "results" / f"{name}.json", p, data_dir)
    if cached is not None:
        return cached
    if kind in METHODS:  # the PFM first (cached after its first run)
        _run("pfm", None, p, cache_dir, seed, device, data_dir, progress=progress)
    with run_lock(pdir / "models" / name):  # one process per run; a second one waits, then reads the results
        if force:
            art.forget_run(pdir, name)
        cached = art.read_results(pdir / "results" / f"{name}.json", p, data_dir)  # finished meanwhile?
        return cached if cached is not None else _train(kind, family, p, cache_dir, seed, device, data_dir,
                                                          fraction, progress, name, pdir)


def _train(kind, family, p, cache_dir, seed, device, data_dir, fraction, progress, name, pdir) -> dict:
    """Train, save and evaluate one run of :func:`_run`; write and return its results record."""
    from ..training import TrainConfig, evaluate, fit

    start = time.perf_counter()
    env = art.environment(device)  # now: the git commit recorded is the one whose code runs
    families = p.pretrain_families if kind == "pfm" else (family,)
    kw = dict(profile=p, cache_dir=cache_dir, data_dir=data_dir, device=device, progress=progress)
    train_sets = [art.load_split(f, "train", fraction=fraction, **kw) for f in families]
    val_sets = {f: art.load_split(f, "val", **kw) for f in families}  # best epoch only
    test_sets = {f: art.load_split(f, "test", **kw) for f in families}  # reported only, read after training
    torch.manual_seed(seed)
    model = art.network(p)
    if kind in METHODS:
        from ..training import load_weights

        load_weights(model, pdir / "models" / art.run_name("pfm", seed=seed) / "model.pt")
    if kind == "lora":
        from ..models import apply_peft_lora

        model = apply_peft_lora(model, art.lora_settings(p))
    epochs, lr = {"pfm": (p.epochs_pretrain, p.lr_pretrain), "baseline": (p.epochs_baseline, p.lr_baseline),
                  "fft": (p.epochs_finetune, p.lr_finetune), "lora": (p.epochs_finetune, p.lr_lora)}[kind]
    folder = pdir / "models" / name
    cfg = TrainConfig(epochs=epochs, batch_size=p.batch_size, lr=lr, weight_decay=p.weight_decay, loss=p.loss,
                      schedule=p.schedule, warmup_epochs=p.warmup_epochs, device=device, seed=int(seed),
                      checkpoint_dir=folder / "checkpoints", progress=progress, compile=p.compile_mode,
                      eval_batch_size=max(p.batch_size, 32),
                      num_workers=2 if resolve_device(device).type == "cuda" else 0)  # loading keeps up
    train = train_sets[0] if len(train_sets) == 1 else ConcatDataset(train_sets)
    val = val_sets[family] if family else ConcatDataset(list(val_sets.values()))
    result = fit(model, train, val, cfg)
    saved = art.save_model(model, folder, lora=kind == "lora")
    metrics = {f: evaluate(model, ds, batch_size=cfg.eval_batch_size, device=device, per_sample=True)
               for f, ds in test_sets.items()}
    per_sample = {f: m.pop("per_sample") for f, m in metrics.items()}
    per_sample_val = {f: evaluate(model, ds, batch_size=cfg.eval_batch_size, device=device, per_sample=True)
                      ["per_sample"] for f, ds in val_sets.items()}  # decides whether the model learned
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    base = {"experiment": name, "kind": kind, "method": {"pfm": "pretrain", "baseline": "scratch"}.get(kind, kind),
            "train_family": family or "+".join(families), "fraction": fraction, "n_train_samples": len(train),
            "epochs": epochs, "best_epoch": result.best_epoch, "trainable_params": result.trainable_params,
            "total_params": result.total_params, "peak_memory_mb": result.peak_memory_mb,
            "memory_kind": result.memory_kind, "train_wall_time_s": result.wall_time_s,
            "samples_per_s": result.samples_per_s, "amp": result.amp, "compiled": result.compiled,
            "wall_time_s": time.perf_counter() - start}
    rows = [{**base, "eval_family": f, **m} for f, m in metrics.items()]
    record = art.make_record(name, p, seed, data_dir, env, rows, train=result.to_dict(), artifacts=saved,
                             lora=vars(art.lora_settings(p)) if kind == "lora" else None, per_sample=per_sample,
                             per_sample_val=per_sample_val)
    art.write_results(pdir / "results" / f"{name}.json", record)
    return record


def pretrain_pfm(profile, cache_dir=None, seed=0, device="auto", data_dir=None, progress=True, force=False) -> dict:
    """Pretrain the foundation model (PFM) on the profile's pretraining families, concatenated.

    Each family keeps its own seismic normalisation bounds. The validation sets of all of
    them, concatenated, pick the best epoch; the results hold the test metrics per family.

    Parameters
    ----------
    profile : str or Profile
    cache_dir : path, optional
        Default ``$FWI_TEACH_CACHE`` or ``~/.cache/fwi_teach``.
    seed : int
        Training seed (initial weights, data order).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``; also used for data generation.
    data_dir : path, optional
        Real OpenFWI data, one sub-folder per family; default: generated data.
    progress : bool
    force : bool, default False
        Train again even if the run is cached (its weights and results are replaced),
        for example after :class:`~fwi_teach.runtime.CorruptFileError`.

    Returns
    -------
    dict
        The results record (also in ``<cache>/<profile>/results/pfm-s<seed>.json``):
        ``rows`` (one per test family: mae, rmse, ssim, mae_mps, rmse_mps, trainable
        parameters, peak memory, wall time ...), ``train`` (the :class:`TrainResult`),
        ``artifacts``, ``environment``, ``profile``, ``seed``.
    """
    return _run("pfm", None, get_profile(profile), cache_dir, seed, device, data_dir, progress=progress, force=force)


def train_baseline(family, profile, cache_dir=None, seed=0, device="auto", data_dir=None, fraction=1.0,
                   progress=True, force=False) -> dict:
    """Train a task-specific InversionNet from scratch on ``family`` (or a ``fraction`` of its training set).

    Parameters and return value as :func:`pretrain_pfm`. Raises ValueError for an
    unknown family or a fraction outside (0, 1].
    """
    return _run("baseline", canonical_family(family), get_profile(profile), cache_dir, seed, device, data_dir,
                fraction, progress, force)


def finetune(family, method="lora", profile="smoke", cache_dir=None, seed=0, device="auto", data_dir=None,
             fraction=1.0, progress=True, force=False) -> dict:
    """Fine-tune the PFM on ``family``: ``method="fft"`` (all weights) or ``"lora"`` (adapters only).

    Pretrains the PFM first if it is not cached. Other parameters and the return value as
    :func:`train_baseline`; the LoRA adapter goes to ``models/<run>/adapter``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected one of {METHODS}")
    return _run(method, canonical_family(family), get_profile(profile), cache_dir, seed, device, data_dir,
                fraction, progress, force)


def train_spec(spec, profile, **kwargs) -> dict:
    """Train (or load the cached results of) a model named as in :func:`model_specs`."""
    kind, family = art.parse_spec(spec)
    if kind == "pfm":
        return pretrain_pfm(profile, **kwargs)
    if kind == "baseline":
        return train_baseline(family, profile, **kwargs)
    return finetune(family, kind, profile, **kwargs)


# ------------------------------------------------------------------------- matrix and sweeps
def _relation(kind, trained_on, family, p) -> str:
    if family == trained_on or (kind == "pfm" and family in p.pretrain_families):
        return "train"
    return "pretrain" if kind in METHODS and family in p.pretrain_families else "unseen"


def evaluation_matrix(profile, models=None, families=None, cache_dir=None, seed=0, device="auto", data_dir=None,
                      progress=True) -> dict:
    """Evaluate every model on every family's test set: the out-of-distribution table.

    Models that are not trained yet are trained first (each one cached). Evaluations
    already in ``results/matrix-s<seed>.json`` are reused, so an interrupted matrix resumes
    and a second call computes nothing. Other parameters as :func:`pretrain_pfm`.

    Parameters
    ----------
    models : list of str, optional
        Default :func:`model_specs`: the PFM, every baseline, FFT and LoRA on every
        fine-tuning family.
    families : list of str, optional
        Test sets; default all ten families.

    Returns
    -------
    dict
        Results record; ``rows`` hold one entry per (model, test family) with ``model``,
        ``kind``, ``train_family``, ``eval_family``, ``relation`` (``"train"``: trained on
        it; ``"pretrain"``: seen only in pretraining; ``"unseen"``: out of distribution),
        the metrics, and ``trainable_params`` and ``peak_memory_mb`` of the model's training.
    """
    from ..training import evaluate

    p = get_profile(profile)
    specs = art.model_specs(p) if models is None else [str(m) for m in models]
    parsed = {s: art.parse_spec(s) for s in specs}
    families = FAMILIES if families is None else tuple(canonical_family(f) for f in families)
    name, pdir = f"matrix-s{int(seed)}", art.profile_dir(p, cache_dir)
    old = art.read_results(pdir / "results" / f"{name}.json", p, data_dir)
    done = {(r["model"], r["eval_family"]): r for r in (old or {}).get("rows", [])}
    samples = dict((old or {}).get("per_sample", {}))  # "<model>|<family>" -> per-sample metrics
    done = {k: r for k, r in done.items() if f"{k[0]}|{k[1]}" in samples}  # older records lack them: redo
    kw = dict(cache_dir=cache_dir, seed=seed, device=device, data_dir=data_dir, progress=progress)
    env, test_sets = art.environment(device), {}
    with tqdm(total=len(specs) * len(families), desc="evaluation matrix", unit="eval", disable=not progress) as bar:
        for spec, (kind, family) in parsed.items():
            todo = [f for f in families if (spec, f) not in done]
            bar.update(len(families) - len(todo))
            if not todo:
                continue
            own = train_spec(spec, p, **kw)["rows"][0]
            model = art.load_model(spec, p, cache_dir, seed)
            for f in todo:
                if f not in test_sets:
                    test_sets[f] = art.load_split(f, "test", p, cache_dir, data_dir, device=device, progress=progress)
                metrics = evaluate(model, test_sets[f], batch_size=max(p.batch_size, 32), device=device,
                                   per_sample=True)
                samples[f"{spec}|{f}"] = metrics.pop("per_sample")
                done[(spec, f)] = {"model": spec, "kind": kind, "method": own["method"],
                                   "train_family": own["train_family"], "eval_family": f,
                                   "relation": _relation(kind, family, f, p), **metrics,
                                   "trainable_params": own["trainable_params"],
                                   "peak_memory_mb": own["peak_memory_mb"]}
                bar.update(1)
            art.write_results(pdir / "results" / f"{name}.json",
                              art.make_record(name, p, seed, data_dir, env, list(done.values()), per_sample=samples))
    rows = [done[(s, f)] for s in specs for f in families]
    return art.make_record(name, p, seed, data_dir, env, rows,
                           per_sample={f"{s}|{f}": samples[f"{s}|{f}"] for s in specs for f in families})


def low_data_sweep(profile, families=None, fractions=None, methods=LOW_DATA_METHODS, cache_dir=None, seed=0,
                   device="auto", data_dir=None, progress=True) -> dict:
    """Train with shares of each family's training set and test on its test set (the paper's Fig. 5).

    Other parameters as :func:`pretrain_pfm`. Runs at fraction 1.0 are the baseline and
    fine-tuning runs themselves (shared cache entries). Every run uses the profile's
    epochs, so a smaller share also means fewer optimisation steps.

    Parameters
    ----------
    families : list of str, optional
        Default ``profile.low_data_families`` (CurveFault-B, Style-A, Style-B).
    fractions : list of float, optional
        Default ``profile.low_data_fractions`` (the paper: 0.1, 0.25, 0.5, 0.75, 1.0). Subsets are
        nested and the same for every method.
    methods : list of str
        Any of ``"scratch"`` (task-specific baseline), ``"fft"``, ``"lora"``.

    Returns
    -------
    dict
        Results record (``results/lowdata-s<seed>.json``); one row per (family, method,
        fraction) with ``n_train_samples`` and the metrics.
    """
    p = get_profile(profile)
    families = p.low_data_families if families is None else tuple(canonical_family(f) for f in families)
    fractions = p.low_data_fractions if fractions is None else tuple(float(f) for f in fractions)
    bad = [m for m in methods if m not in LOW_DATA_METHODS]
    if bad or not methods:
        raise ValueError(f"methods={tuple(methods)!r}; choose from {LOW_DATA_METHODS}")
    kw = dict(cache_dir=cache_dir, seed=seed, device=device, data_dir=data_dir)
    rows = []
    combos = [(f, m, x) for f in families for m in methods for x in fractions]
    for family, method, fraction in tqdm(combos, desc="low-data sweep", unit="run", disable=not progress):
        if method == "scratch":
            record = train_baseline(family, p, fraction=fraction, progress=progress, **kw)
        else:
            record = finetune(family, method, p, fraction=fraction, progress=progress, **kw)
        rows.append({**record["rows"][0], "method": method, "fraction": fraction})
    name = f"lowdata-s{int(seed)}"
    record = art.make_record(name, p, seed, data_dir, art.environment(device), rows)
    art.write_results(art.profile_dir(p, cache_dir) / "results" / f"{name}.json", record)
    return record


def run_chain(profile, cache_dir=None, seed=0, device="auto", data_dir=None, progress=True) -> dict:
    """Run every experiment in order: data, PFM, baselines, fine-tuning, matrix, low-data sweep.

    Shows one progress bar weighted by a cost model (:func:`fwi_teach.experiments.costs.stage_seconds`)
    with the remaining time; the bars of the single runs stay hidden. Everything is cached,
    so a rerun after an interruption continues where it stopped.

    Returns
    -------
    dict
        Results record (``results/chain-s<seed>.json``): one row per stage with its
        ``wall_time_s`` and ``estimated_s``, plus ``total_s``, ``complete`` and ``results``
        (the results files of the matrix and the sweep). The record is rewritten after
        every step, so an interrupted chain keeps the time of the stages it did; the next
        call adds its own times to those of an incomplete record. A call that finds the
        chain complete starts a new record (near zero for cached steps).
    """
    p = get_profile(profile)
    dev = resolve_device(device)
    env = art.environment(device)  # at the start, so the recorded commit is the one that runs
    kw = dict(cache_dir=cache_dir, seed=seed, device=device, data_dir=data_dir, progress=False)
    steps = [("data", f"data {f}", lambda f=f: art.family_root(f, p, cache_dir, data_dir, device, False))
             for f in FAMILIES]
    steps.append(("pretrain", "PFM", lambda: pretrain_pfm(p, **kw)))
    steps += [("baselines", f"baseline {f}", lambda f=f: train_baseline(f, p, **kw)) for f in p.baseline_families]
    steps += [("finetune", f"{m} {f}", lambda f=f, m=m: finetune(f, m, p, **kw))
              for f in p.finetune_families for m in METHODS]
    steps.append(("matrix", "evaluation matrix", lambda: evaluation_matrix(p, **kw)))
    steps += [("lowdata", f"{m} {f} {x:.0%}", lambda f=f, m=m, x=x: low_data_sweep(p, [f], [x], [m], **kw))
              for f in p.low_data_families for m in LOW_DATA_METHODS for x in p.low_data_fractions]
    steps.append(("lowdata", "low-data table", lambda: low_data_sweep(p, **kw)))
    try:
        estimate = stage_seconds(p, dev.type)
    except ValueError:  # all of the real data: no sample counts to estimate from
        estimate = None
    counts = {s: sum(1 for st, _, _ in steps if st == s) for s, _, _ in steps}
    weights = [estimate[s] / counts[s] if estimate else 1.0 for s, _, _ in steps]
    if estimate:
        guess = sum(weights)
        print(f"fwi_teach chain, profile {p.name!r} on {dev}: {len(steps)} steps, roughly "
              f"{f'{guess:.0f} s' if guess < 90 else f'{guess / 60:.0f} min'} (cost-model estimate)", flush=True)
    name, pdir = f"chain-s{int(seed)}", art.profile_dir(p, cache_dir)
    results = {k: str(pdir / "results" / f"{k}-s{int(seed)}.json") for k in ("matrix", "lowdata")}
    earlier = art.read_results(pdir / "results" / f"{name}.json", p, data_dir)
    timings = dict.fromkeys(counts, 0.0)
    total_before = 0.0
    if earlier is not None and not earlier.get("complete", True):  # an interrupted call: keep its times
        timings.update({r["stage"]: float(r["wall_time_s"]) for r in earlier["rows"] if r["stage"] in timings})
        total_before = float(earlier.get("total_s", 0.0))

    def save(complete, elapsed):
        rows = [{"stage": s, "wall_time_s": t, "estimated_s": estimate[s] if estimate else None}
                for s, t in timings.items()]
        record = art.make_record(name, p, seed, data_dir, env, rows, total_s=total_before + elapsed,
                                 complete=complete, results=results)
        art.write_results(pdir / "results" / f"{name}.json", record)
        return record

    start = time.perf_counter()
    fmt = "{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]{postfix}"
    with tqdm(total=sum(weights), desc=f"chain {p.name}", bar_format=fmt, disable=not progress) as bar:
        for (stage, label, fn), weight in zip(steps, weights):
            bar.set_postfix_str(label)
            t0 = time.perf_counter()
            fn()
            timings[stage] += time.perf_counter() - t0
            save(False, time.perf_counter() - start)
            bar.update(weight)
    return save(True, time.perf_counter() - start)
