"""Generate an OpenFWI-style data set on disk, resumably and deterministically.

:func:`generate_dataset` draws velocity models with
:func:`fwi_teach.data.families.velocity_models`, models their seismic records
with :func:`fwi_teach.physics.simulate` and writes both in OpenFWI's own file
layout (see :mod:`fwi_teach.data.layout`), plus ``train.txt`` / ``val.txt`` /
``test.txt`` split files and a manifest ``fwi_teach.json``.

Three disjoint splits: training samples have global indices ``0 .. n_train - 1``,
validation samples (early stopping, model selection, tuning) the next ``n_val``,
test samples (reported only) the last ``n_test``; sample ``g`` depends only on
``(family, seed, g)``, so the splits hold different velocity models, and the
generator checks that no map occurs twice across them. Files hold
``samples_per_file`` samples (the last file of each split may hold fewer);
training files come first, then validation, then test.

Resuming: every file is written under a temporary name and renamed, seismic
first, then velocity. A pair is complete when both files exist with the
expected shape and dtype. Rerunning with the same settings removes stale
temporary files, skips complete pairs and regenerates the rest, giving
byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..physics import STABILITY_LIMIT, Acquisition, simulate, simulation_engine
from .families import V_MAX_MPS, canonical_family, velocity_models
from ..runtime import atomic_save_npy, atomic_write_bytes, remove_stale_temporaries, resolve_device
from .layout import MANIFEST_NAME, family_layout, pair_names, read_manifest, read_npy_header, write_split_file

__all__ = ["generate_dataset", "plan_files", "BOUNDARY_CHOICES"]

BOUNDARY_CHOICES = ("thin", "openfwi")
_SETTINGS = ("family", "seed", "n_train", "n_val", "n_test", "samples_per_file", "boundary", "acquisition")
_SETTING_DEFAULTS = {"n_test": 0}  # manifests written before the test split existed
_DEFAULT_CHUNK = 64  # samples per simulate() call (and progress update) when batch_size is not given


def plan_files(n_train: int, n_val: int, samples_per_file: int, n_test: int = 0) -> list[dict]:
    """File plan of a generated set: one dict per file with ``index``, ``split``, ``start``, ``samples``.

    ``start`` is the global sample index of the file's first sample.
    """
    plan, index = [], 0
    for split, first, count in (("train", 0, n_train), ("val", n_train, n_val), ("test", n_train + n_val, n_test)):
        for start in range(first, first + count, samples_per_file):
            plan.append({"index": index, "split": split, "start": start,
                         "samples": min(samples_per_file, first + count - start)})
            index += 1
    return plan


def _jsonable(obj):
    """Acquisition (dataclass or object) as plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "__dict__"):
        return _jsonable(vars(obj))
    return repr(obj)


def _check_disjoint(root: Path, files: list) -> None:
    """Raise ValueError if one velocity map occurs in two splits (compared byte for byte, by hash)."""
    import hashlib

    seen = {}
    for f in files:
        models = np.load(root / f["velocity"], mmap_mode="r")
        for j in range(models.shape[0]):
            key = hashlib.sha1(np.ascontiguousarray(models[j]).tobytes()).digest()
            where = seen.setdefault(key, (f["split"], f["start"] + j))
            if where[0] != f["split"]:
                raise ValueError(f"{root}: sample {f['start'] + j} ({f['split']}) has the same velocity map as sample "
                                 f"{where[1]} ({where[0]}); the splits would not be disjoint. Generate with "
                                 "another seed")


def _write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_bytes(root / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())


def _has_shape(path: Path, shape: tuple) -> bool:
    if not path.is_file():
        return False
    try:
        got_shape, dtype = read_npy_header(path, check_size=True)
    except ValueError:
        return False
    return got_shape == tuple(shape) and dtype == np.float32


def _check_root(root: Path, settings: dict) -> dict | None:
    """Return the existing manifest (same settings) or ``None`` for a fresh root; raise otherwise."""
    manifest = read_manifest(root) if root.is_dir() else None
    if manifest is None:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise FileExistsError(
                f"{root} exists and is not empty, but has no {MANIFEST_NAME} manifest from a previous run; "
                "choose a new or empty root directory"
            )
        return None
    old = {k: manifest.get(k, _SETTING_DEFAULTS.get(k)) for k in _SETTINGS}
    if old != settings:
        diff = ", ".join(f"{k}: {old[k]!r} there vs {settings[k]!r} now" for k in _SETTINGS if old[k] != settings[k])
        raise ValueError(
            f"{root} already holds a data set generated with different settings ({diff}); "
            "choose another root or delete that directory to regenerate"
        )
    if manifest.get("package_version") != __version__:
        warnings.warn(f"{root} was started with fwi_teach {manifest.get('package_version')}, this is {__version__}; "
                      "files written by the two versions may differ", stacklevel=3)
    return manifest


def generate_dataset(family, root, n_train, n_val, seed=0, samples_per_file=500, boundary="thin", device=None,
                     batch_size=None, acquisition=None, progress=True, n_test=0) -> Path:
    """Write an OpenFWI-format data set of one family to ``root`` (resumable).

    Parameters
    ----------
    family : str
        Family name in any spelling, e.g. ``"flatvel-a"`` or ``"CurveFault_B"``.
    root : path
        Output directory: new, empty, or a previous (possibly interrupted) run
        with the same settings.
    n_train, n_val : int
        Number of training and validation samples (``n_train >= 1``, ``n_val >= 0``).
    n_test : int, default 0
        Number of test samples (``test.txt``), drawn after the validation ones.
    seed : int
        Seed of the velocity models; the output is a deterministic function of
        the settings.
    samples_per_file : int
        Samples per ``.npy`` file (OpenFWI uses 500).
    boundary : {"thin", "openfwi"}
        Absorbing boundary of :func:`fwi_teach.physics.simulate`.
    device : str or torch.device, optional
        Device for the simulation, e.g. ``"cuda"``.
    batch_size : int, optional
        Models per :func:`simulate` call (default 64) and its internal batch size (default: simulate's own).
    acquisition : Acquisition, optional
        Survey; defaults to :meth:`Acquisition.openfwi`.
    progress : bool
        Show a progress bar over samples.

    Returns
    -------
    pathlib.Path
        ``root``, ready for :class:`fwi_teach.data.OpenFWIDataset`.

    Raises
    ------
    ValueError
        For invalid arguments, if ``root`` holds a set made with other settings, or
        (practically impossible for the built-in families) if a velocity map occurs in
        two splits.
    FileExistsError
        If ``root`` is a non-empty directory without a manifest.

    Notes
    -----
    Fault families name file ``j`` (0-based) ``seis{G}_1_{i}.npy`` /
    ``vel{G}_1_{i}.npy`` with ``G = (2, 3, 4)[j % 3]`` (A) or ``(6, 7, 8)[j % 3]``
    (B) and ``i = j // 3``; Vel/Style families name it ``data/data{j+1}.npy`` /
    ``model/model{j+1}.npy``.
    """
    family = canonical_family(family)
    for name, value, low in (("n_train", n_train, 1), ("n_val", n_val, 0), ("n_test", n_test, 0),
                             ("samples_per_file", samples_per_file, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if boundary not in BOUNDARY_CHOICES:
        raise ValueError(f"boundary must be one of {BOUNDARY_CHOICES}, got {boundary!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    n_train, n_val, n_test, samples_per_file = int(n_train), int(n_val), int(n_test), int(samples_per_file)
    if device is not None:
        device = resolve_device(device)  # an unknown device or no GPU: an error before anything is written
    acquisition = Acquisition.openfwi() if acquisition is None else acquisition
    # Fail before anything is written if the survey cannot model 70 x 70 models up to 4500 m/s.
    acquisition.check_grid(70, 70)
    courant = V_MAX_MPS * acquisition.dt_s / acquisition.dx_m
    if courant > STABILITY_LIMIT:
        raise ValueError(f"acquisition dt_s={acquisition.dt_s:g} s is unstable for {V_MAX_MPS:g} m/s on "
                         f"dx_m={acquisition.dx_m:g} m cells (Courant number {courant:.3f} > {STABILITY_LIMIT:.3f}); "
                         f"use dt_s <= {STABILITY_LIMIT * acquisition.dx_m / V_MAX_MPS:.3g}")
    root = Path(root)
    settings = {"family": family, "seed": int(seed), "n_train": n_train, "n_val": n_val,
                "n_test": n_test, "samples_per_file": samples_per_file, "boundary": boundary,
                "acquisition": json.loads(json.dumps(_jsonable(acquisition)))}
    old = _check_root(root, settings)

    plan = plan_files(n_train, n_val, samples_per_file, n_test)
    for entry in plan:
        entry["seismic"], entry["velocity"] = pair_names(family, entry["index"])
    dirs = [root] + ([root / "data", root / "model"] if family_layout(family) == "vel" else [])
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(d)  # only those of writers that have ended
    old_stats = {f["index"]: f for f in (old or {}).get("files", []) if f.get("complete")}
    seis_shape = (acquisition.n_shots, acquisition.nt, acquisition.n_receivers)
    manifest = {"format": "fwi_teach-dataset", "format_version": 1, **settings, "layout": family_layout(family),
                "package_version": __version__, "seismic_shape": list(seis_shape), "velocity_shape": [1, 70, 70],
                "data_min": None, "data_max": None, "complete": False, "files": []}
    for entry in plan:
        done = (_has_shape(root / entry["seismic"], (entry["samples"], *seis_shape))
                and _has_shape(root / entry["velocity"], (entry["samples"], 1, 70, 70)))
        stats = old_stats.get(entry["index"], {})
        manifest["files"].append({**entry, "complete": done, "data_min": stats.get("data_min") if done else None,
                                  "data_max": stats.get("data_max") if done else None})
    _write_manifest(root, manifest)

    total = n_train + n_val + n_test
    initial = sum(f["samples"] for f in manifest["files"] if f["complete"])
    chunk = int(batch_size) if batch_size else _DEFAULT_CHUNK
    engine = simulation_engine(device or "cpu")
    with tqdm(total=total, initial=initial, unit="sample", desc=f"{family} -> {root.name} ({engine})",
              disable=not progress) as bar:
        for entry in manifest["files"]:
            seis_path, vel_path = root / entry["seismic"], root / entry["velocity"]
            if not entry["complete"]:
                n = entry["samples"]
                models = np.asarray(velocity_models(family, n, seed=int(seed), start=entry["start"]), dtype=np.float32)
                if models.shape != (n, 1, 70, 70):
                    raise RuntimeError(f"velocity_models returned shape {models.shape}; expected {(n, 1, 70, 70)}")
                if not _has_shape(seis_path, (n, *seis_shape)):
                    parts = []
                    for a in range(0, n, chunk):
                        part = simulate(models[a:a + chunk], acquisition, boundary=boundary, device=device,
                                        batch_size=batch_size, progress=False)
                        parts.append(np.asarray(part, dtype=np.float32))
                        bar.update(len(parts[-1]))
                    seis = np.concatenate(parts, axis=0)
                    if seis.shape != (n, *seis_shape):
                        raise RuntimeError(f"simulate returned shape {seis.shape}; expected {(n, *seis_shape)}")
                    atomic_save_npy(seis_path, seis)
                else:  # an earlier run stopped between the two renames
                    seis = np.load(seis_path, mmap_mode="r")
                    bar.update(n)
                atomic_save_npy(vel_path, models)
                entry["complete"] = True
                changed = True
            else:
                changed = entry["data_min"] is None
            if entry["data_min"] is None:
                seis = np.load(seis_path, mmap_mode="r")
                entry["data_min"], entry["data_max"] = float(seis.min()), float(seis.max())
            if changed:
                _write_manifest(root, manifest)

    manifest["data_min"] = min(f["data_min"] for f in manifest["files"])
    manifest["data_max"] = max(f["data_max"] for f in manifest["files"])
    if not manifest.get("splits_disjoint"):
        _check_disjoint(root, manifest["files"])
        manifest["splits_disjoint"] = True
    for split in ("train", "val", "test"):
        pairs = [(root / f["seismic"], root / f["velocity"]) for f in manifest["files"] if f["split"] == split]
        if pairs or split != "test":
            write_split_file(root / f"{split}.txt", pairs)
    manifest["complete"] = True
    _write_manifest(root, manifest)
    return root
