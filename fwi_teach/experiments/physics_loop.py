"""Closing the loop with physics: do the predicted models explain the data, and help classical FWI?

Two experiments on the held-out test split of the fine-tuning target families:

===========================  ===============================================================
:func:`data_misfit_rows`      relative L2 data misfit (:func:`fwi_teach.evaluation.data_fit.data_misfit`)
                              of every test sample's prediction by each reference model, with the
                              true model (the simulator's floor) and the training-mean map as
                              reference rows, beside MAE / RMSE / SSIM of the same samples
:func:`hybrid_rows`           classical multiscale FWI (:func:`fwi_teach.physics.multiscale_fwi`) from
                              several starts on a few test samples per family: a smoothed truth
                              (the textbook start), the training-mean map and the networks'
                              predictions; model error and data misfit after every iteration
===========================  ===============================================================

Sizes per profile are a :class:`PhysicsLoopConfig` (:func:`loop_config`); the models come
from the experiment cache, trained first if needed. Each inversion is written to
``<cache>/<profile>/physics_loop/`` as soon as it ends, so an interrupted run resumes where
it stopped. :mod:`fwi_teach.experiments.physics_results` summarises them with confidence
intervals and writes the results folder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from . import cache as art
from ..data import OpenFWIDataset, canonical_family
from ..data.normalize import VELOCITY_MAX_MPS, VELOCITY_MIN_MPS, denormalize_velocity, normalize_velocity
from ..evaluation.data_fit import data_misfit
from ..evaluation.evidence import MEAN_MAP
from ..evaluation.metrics import per_sample_metrics
from ..physics import Acquisition, multiscale_fwi, smooth_velocity
from ..runtime import atomic_write_bytes
from .profiles import get_profile

__all__ = ["PhysicsLoopConfig", "LOOP_CONFIGS", "loop_config", "TRUTH", "SMOOTH_START", "test_samples",
           "predict_velocity_mps", "data_misfit_rows", "hybrid_rows"]

#: Row label of the true model (the simulator's floor of the data misfit).
TRUTH = "truth"
#: Start label of the textbook FWI start: the true model smoothed.
SMOOTH_START = "smoothed-truth"


@dataclass(frozen=True)
class PhysicsLoopConfig:
    """Sizes of the physics-loop experiments of one profile.

    Attributes
    ----------
    families : tuple of str or None
        Families to test; None: the profile's fine-tuning targets.
    misfit_samples : int or None
        Test samples per family in the data-misfit table; None: the whole test split.
    hybrid_samples : int
        Test samples per family inverted from every start.
    network_starts : tuple of str
        Model kinds whose predictions start FWI (``"baseline"``, ``"fft"``, ``"lora"``, ``"pfm"``).
    bands_hz : tuple
        Cutoffs of the frequency continuation (None: full band), see :func:`multiscale_fwi`.
    iterations_per_band : int
        FWI updates per band.
    step_mps : float
        Largest velocity change of one update.
    smoothing_cells : float
        Gaussian sigma (cells) of the smoothed-truth start.
    target_rmse_mps : float or None
        Model error whose first crossing counts the iterations a start needs; None
        (default): on each sample, the error the smoothed-truth start ends with, so the
        count says how many iterations a start needs to do as well as the textbook
        start does with all of them.
    """

    families: tuple | None = None
    misfit_samples: int | None = None
    hybrid_samples: int = 1
    network_starts: tuple = ("baseline", "fft", "lora")
    bands_hz: tuple = (4.0, 8.0, None)
    iterations_per_band: int = 2
    step_mps: float = 50.0
    smoothing_cells: float = 5.0
    target_rmse_mps: float | None = None

    def describe(self) -> str:
        """One line: the sizes of the run."""
        bands = ", ".join("full band" if b is None else f"< {b:g} Hz" for b in self.bands_hz)
        return (f"data misfit on {'all' if self.misfit_samples is None else self.misfit_samples} test samples "
                f"per family; hybrid FWI on {self.hybrid_samples} per family, {self.iterations_per_band} "
                f"iterations in each of {len(self.bands_hz)} bands ({bands})")


#: Built-in sizes per profile (replace with :func:`dataclasses.replace` for your own).
LOOP_CONFIGS = {
    "smoke": PhysicsLoopConfig(families=("flatvel-b",), misfit_samples=4, hybrid_samples=1,
                               network_starts=("lora",), bands_hz=(4.0, None), iterations_per_band=2),
    "cpu": PhysicsLoopConfig(hybrid_samples=4, iterations_per_band=10),
    "gpu": PhysicsLoopConfig(hybrid_samples=8, iterations_per_band=15),
    "paper": PhysicsLoopConfig(hybrid_samples=16, iterations_per_band=30, bands_hz=(3.0, 5.0, 8.0, None)),
}


def loop_config(profile, config=None) -> PhysicsLoopConfig:
    """The :class:`PhysicsLoopConfig` of a profile (``config`` given: checked and returned)."""
    p = get_profile(profile)
    if config is None:
        config = LOOP_CONFIGS.get(p.name, LOOP_CONFIGS["smoke"])
    if not isinstance(config, PhysicsLoopConfig):
        raise ValueError(f"config is a {type(config).__name__}; pass a PhysicsLoopConfig")
    if config.hybrid_samples < 0 or (config.misfit_samples is not None and config.misfit_samples < 1):
        raise ValueError(f"{config}: hybrid_samples must be >= 0 and misfit_samples >= 1 (or None)")
    bad = [k for k in config.network_starts if k not in ("baseline", "fft", "lora", "pfm")]
    if bad:
        raise ValueError(f"network_starts holds {bad}; choose from baseline, fft, lora, pfm")
    return config


def _families(p, config) -> list:
    return [canonical_family(f) for f in (config.families or p.finetune_families)]


def _spec(kind, family) -> str:
    return "pfm" if kind == "pfm" else f"{kind}:{family}"


def test_samples(family, profile, cache_dir=None, data_dir=None, n=None):
    """The first ``n`` test samples of a family: raw records, true models and network inputs.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, torch.Tensor)
        Records ``(n, n_shots, nt, n_receivers)`` as recorded (not normalised, not
        decimated), true velocity ``(n, nz, nx)`` in m/s, and the normalised, decimated
        network inputs ``(n, n_shots, nt / time_decimation, n_receivers)``.
    """
    import torch

    p = get_profile(profile)
    root = art.family_root(family, p, cache_dir, data_dir, device="cpu", progress=False)
    raw = OpenFWIDataset(root, family=family, split="test", time_decimation=1, normalize=False)
    net = OpenFWIDataset(root, family=family, split="test", time_decimation=p.time_decimation)
    cap = len(raw) if p.n_test is None else min(p.n_test, len(raw))
    n = cap if n is None else min(int(n), cap)
    pairs = [raw.raw_sample(i) for i in range(n)]
    records = np.stack([s for s, _ in pairs])
    truth = np.stack([v.reshape(v.shape[-2:]) for _, v in pairs])
    inputs = torch.stack([net[i][0] for i in range(n)])
    return records, truth, inputs


def predict_velocity_mps(kinds, family, profile, cache_dir=None, seed=0, device="auto", data_dir=None, inputs=None,
                         progress=True) -> dict:
    """Predictions of each model kind (``"pfm"``, ``"baseline"``, ``"fft"``, ``"lora"``) in m/s.

    The models of ``family`` are trained first if the cache lacks them; outputs are
    clipped to the normalisation's range, 1500-4500 m/s. ``inputs`` are network inputs as
    :func:`test_samples` returns them. Returns ``{kind: (n, nz, nx) float32}``.
    """
    p = get_profile(profile)
    from ..training.engine import predict
    from .runs import train_spec

    out = {}
    for kind in kinds:
        spec = _spec(kind, family)
        train_spec(spec, p, cache_dir=cache_dir, seed=seed, device=device, data_dir=data_dir, progress=progress)
        model = art.load_model(spec, p, cache_dir, seed)
        pred = denormalize_velocity(predict(model, inputs, device="cpu")[:, 0].numpy())
        out[kind] = np.clip(pred, VELOCITY_MIN_MPS, VELOCITY_MAX_MPS).astype(np.float32)
    return out


def _mean_map_mps(family, p, cache_dir, data_dir) -> np.ndarray:
    train = art.load_split(family, "train", p, cache_dir, data_dir, device="cpu", progress=False)
    from torch.utils.data import Subset

    ds, idx = (train.dataset, train.indices) if isinstance(train, Subset) else (train, None)
    return denormalize_velocity(ds.velocity_maps(idx).mean(0)[0]).astype(np.float32)


def _read_json(path):
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())


def data_misfit_rows(profile, config=None, cache_dir=None, seed=0, device="auto", data_dir=None,
                     progress=True) -> list:
    """Per-sample data misfit and model metrics of the reference models on each family's test split.

    Returns
    -------
    list of dict
        One row per (model, family, test sample): ``model`` (``"truth"``, ``"mean-map:<family>"``,
        ``"pfm"``, ``"baseline:<family>"``, ...), ``eval_family``, ``seed`` (None for the
        truth and the mean map, which no training seed changes), ``sample``, ``data_misfit``,
        ``mae``, ``rmse``, ``ssim``. Cached per seed in ``<cache>/<profile>/physics_loop/``.
    """
    p, cfg = get_profile(profile), loop_config(profile, config)
    path = art.profile_dir(p, cache_dir) / "physics_loop" / f"misfit-s{int(seed)}.json"
    settings = dataclasses.asdict(cfg)
    cached = _read_json(path)
    if cached is not None and cached.get("config") == json.loads(json.dumps(settings)):
        return cached["rows"]
    acq = Acquisition.openfwi(nt=p.nt)
    kinds = ["pfm", "baseline", "fft", "lora"]
    rows = []
    for fam in _families(p, cfg):
        records, truth, inputs = test_samples(fam, p, cache_dir, data_dir, cfg.misfit_samples)
        models = {TRUTH: truth, f"{MEAN_MAP}:{fam}": np.broadcast_to(_mean_map_mps(fam, p, cache_dir, data_dir),
                                                                     truth.shape)}
        preds = predict_velocity_mps(kinds, fam, p, cache_dir, seed, device, data_dir, inputs, progress)
        models.update({_spec(k, fam): v for k, v in preds.items()})
        for name, maps in models.items():
            misfit = data_misfit(maps, records, acq, boundary=p.boundary, progress=False)
            scores = per_sample_metrics(normalize_velocity(maps)[:, None], normalize_velocity(truth)[:, None])
            trained = name not in (TRUTH, f"{MEAN_MAP}:{fam}")
            rows += [{"model": name, "eval_family": fam, "seed": int(seed) if trained else None, "sample": i,
                      "data_misfit": float(misfit[i]), **{m: float(scores[m][i]) for m in ("mae", "rmse", "ssim")}}
                     for i in range(len(maps))]
    _write_json(path, {"profile": p.name, "seed": int(seed), "config": settings, "rows": rows})
    return rows


def _curves(result, truth, records, acq, boundary) -> dict:
    """Model error and full-band data misfit of every model along one inversion."""
    models = result.models_mps
    err = models.astype(np.float64) - truth[None]
    return {"start_mps": np.rint(models[0]).astype(int).tolist(), "final_mps": np.rint(models[-1]).astype(int).tolist(),
            "model_mae": (np.abs(err).mean((1, 2)) / (0.5 * (VELOCITY_MAX_MPS - VELOCITY_MIN_MPS))).tolist(),
            "model_rmse_mps": np.sqrt((err**2).mean((1, 2))).tolist(),
            "data_misfit": data_misfit(models, np.broadcast_to(records, (len(models), *records.shape)), acq,
                                       boundary=boundary).tolist(),
            "band_hz": result.band_of_iteration}


def hybrid_rows(profile, config=None, cache_dir=None, seed=0, device="auto", data_dir=None, progress=True) -> list:
    """Classical multiscale FWI from several starts on a few test samples of each family.

    Returns
    -------
    list of dict
        One row per (family, test sample, start): ``eval_family``, ``sample``, ``start``
        (``"smoothed-truth"``, ``"mean-map"`` or a model kind), ``seed`` and the curves
        ``model_mae`` (normalised units, as the metrics), ``model_rmse_mps`` and
        ``data_misfit`` (relative L2, full band), each with one value per iteration plus the
        start, ``band_hz``, and the start and final models ``start_mps`` / ``final_mps``
        (nested lists, rounded to 1 m/s). Each inversion is cached as soon as it ends.
    """
    from tqdm.auto import tqdm

    p, cfg = get_profile(profile), loop_config(profile, config)
    folder = art.profile_dir(p, cache_dir) / "physics_loop" / f"hybrid-s{int(seed)}"
    settings = json.loads(json.dumps({**dataclasses.asdict(cfg), "format": 2}))  # format 2: start and final maps
    acq = Acquisition.openfwi(nt=p.nt)
    rows = []
    families = _families(p, cfg)
    starts = [SMOOTH_START, MEAN_MAP, *cfg.network_starts]
    bar = tqdm(total=len(families) * cfg.hybrid_samples * len(starts), desc="hybrid FWI", disable=not progress)
    for fam in families:
        records, truth, inputs = test_samples(fam, p, cache_dir, data_dir, cfg.hybrid_samples)
        preds = None
        for i in range(len(truth)):
            for start in starts:
                path = folder / f"{fam}-{i}-{start}.json"
                cached = _read_json(path)
                if cached is None or cached.get("config") != settings:
                    if start == SMOOTH_START:
                        v0 = smooth_velocity(truth[i], cfg.smoothing_cells)
                    elif start == MEAN_MAP:
                        v0 = _mean_map_mps(fam, p, cache_dir, data_dir)
                    else:
                        if preds is None:
                            preds = predict_velocity_mps(cfg.network_starts, fam, p, cache_dir, seed, device,
                                                     data_dir, inputs, progress)
                        v0 = preds[start][i]
                    result = multiscale_fwi(records[i], v0, acq, bands_hz=cfg.bands_hz,
                                            iterations_per_band=cfg.iterations_per_band, step_mps=cfg.step_mps,
                                            boundary=p.boundary, mute_rows=3, true_velocity_mps=truth[i])
                    cached = {"config": settings, "eval_family": fam, "sample": i, "start": start, "seed": int(seed),
                              **_curves(result, truth[i], records[i], acq, p.boundary)}
                    _write_json(path, cached)
                rows.append({k: v for k, v in cached.items() if k != "config"})
                bar.update()
    bar.close()
    return rows
