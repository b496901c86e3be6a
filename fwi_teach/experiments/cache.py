"""The experiment cache: where data, models and results live, and how they are read and written.

Data sets are generated into the cache (or found in a folder of real OpenFWI data), trained
models are named by :func:`run_name` and reloaded with :func:`load_model`, and results
records are written and checked here.

Layout of one profile's folder (see :mod:`fwi_teach.experiments`)::

    <cache>/<profile>/data/<family>/        <cache>/<profile>/models/<run>/
    <cache>/<profile>/results/<name>.json   <cache>/<profile>/results/<name>.csv

Every file is written atomically (a temporary name in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written result behind.
A results record carries the profile's settings and the data source; reading it back
under other settings is an error rather than a silent reuse of stale numbers.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from ..data import OpenFWIDataset, canonical_family, generate_dataset, subset_indices
from ..runtime import CorruptFileError, atomic_write, atomic_write_bytes
from .profiles import METHODS, get_profile
from ..runtime import resolve_cache_dir, resolve_device

__all__ = ["cache_root", "profile_dir", "find_family_dir", "family_root", "load_split",
           "run_name", "model_specs", "parse_spec", "network", "lora_settings", "load_model", "environment", "make_record", "write_results",
           "read_results", "save_model", "print_rows", "RECORD_FORMAT", "train_command",
           "verify_checksums", "forget_run", "CHECKSUMS_FILE"]

RECORD_FORMAT = "fwi_teach.experiment/1"


def cache_root(cache_dir=None) -> Path:
    """Absolute cache folder: ``cache_dir``, else ``$FWI_TEACH_CACHE``, else ``~/.cache/fwi_teach``."""
    return resolve_cache_dir(cache_dir)


def profile_dir(profile, cache_dir=None) -> Path:
    """``<cache>/<profile name>``."""
    return cache_root(cache_dir) / get_profile(profile).name


# ------------------------------------------------------------------------------------- data
def find_family_dir(data_dir, family) -> Path:
    """The sub-folder of ``data_dir`` holding ``family`` (``FlatVel_A``, ``flatvel-a``, ``CurveFault-B`` ...).

    Raises
    ------
    FileNotFoundError
        If ``data_dir`` does not exist or has no folder for the family; the message lists what it has.
    """
    family, root = canonical_family(family), Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} is not a directory; pass the folder holding one sub-folder per "
                                "OpenFWI family (e.g. FlatVel_A/, CurveFault_B/)")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for p in folders:
        if p.name.lower().replace("_", "-").replace(" ", "-") == family:
            return p
    raise FileNotFoundError(f"data_dir {root} has no folder for {family}; expected a sub-folder named like "
                            f"'{family}' or '{family.replace('-', '_').title()}', found "
                            f"{[p.name for p in folders] or 'no sub-folders'}")


def family_root(family, profile, cache_dir=None, data_dir=None, device="auto", progress=True) -> Path:
    """Folder of one family's data: in ``data_dir`` if given, else generated into the cache (resumable).

    Generation uses the profile's sizes, data seed, boundary and OpenFWI's survey with
    ``profile.nt`` samples, on the GPU when ``device`` resolves to CUDA. A finished set
    is only checked, not regenerated.

    Raises
    ------
    ValueError
        If the profile uses all of the real data (``n_train=None``) and no ``data_dir`` is given.
    """
    p, family = get_profile(profile), canonical_family(family)
    if data_dir:
        return find_family_dir(data_dir, family)
    if p.n_train is None or p.n_val is None:
        raise ValueError(f"profile {p.name!r} trains on all of the real OpenFWI data; pass data_dir= (a folder "
                         "with one sub-folder per family, downloaded from the OpenFWI website) or choose "
                         "a profile with n_train set, such as 'gpu'")
    from ..physics import Acquisition

    sim_device = "cuda" if resolve_device(device).type == "cuda" else None
    return generate_dataset(family, profile_dir(p, cache_dir) / "data" / family, n_train=p.n_train,
                            n_val=p.n_val, n_test=p.n_test, seed=p.data_seed, samples_per_file=p.samples_per_file,
                            boundary=p.boundary, device=sim_device, acquisition=Acquisition.openfwi(nt=p.nt),
                            progress=progress)


def load_split(family, split, profile, cache_dir=None, data_dir=None, fraction=1.0, device="auto",
               progress=True):
    """The normalised ``"train"``, ``"val"`` or ``"test"`` set of one family, decimated in time for the network.

    ``"val"`` picks the best epoch and tunes; ``"test"`` is only reported (training and
    selection never read it). At most ``n_train`` / ``n_val`` / ``n_test`` samples are
    used (the first ones, for real data, whose test split is the second half of
    OpenFWI's validation samples: :func:`fwi_teach.data.layout.download_holdout`); a
    ``fraction`` below 1 keeps a nested random subset drawn with the profile's data seed,
    the same for every method. Generates the data first if needed.
    """
    p = get_profile(profile)
    family = canonical_family(family)
    root = family_root(family, p, cache_dir, data_dir, device, progress)
    ds = OpenFWIDataset(root, family=family, split=split, time_decimation=p.time_decimation)
    if ds.raw_seismic_shape[1] != p.nt:
        raise ValueError(f"{root} has {ds.raw_seismic_shape[1]} time samples per trace but profile {p.name!r} "
                         f"expects nt={p.nt}; use a profile with nt={ds.raw_seismic_shape[1]}")
    cap = {"train": p.n_train, "val": p.n_val, "test": p.n_test}[ds.split]
    n = len(ds) if cap is None else min(cap, len(ds))
    keep = subset_indices(n, fraction, seed=p.data_seed)
    return ds if len(keep) == len(ds) else Subset(ds, keep.tolist())


# ----------------------------------------------------------------------------------- models
def run_name(kind, family=None, fraction=1.0, seed=0) -> str:
    """Cache name of a run: ``pfm-s0``, ``baseline-style-a-s0``, ``fft-style-a-f0.5-s0`` ..."""
    parts = [kind] + ([canonical_family(family)] if family else [])
    if float(fraction) != 1.0:
        parts.append(f"f{float(fraction):g}")
    return "-".join(parts + [f"s{int(seed)}"])


def model_specs(profile) -> list:
    """Names of every model of the chain: ``"pfm"``, ``"baseline:<family>"``, ``"fft:<family>"``, ``"lora:<family>"``."""
    p = get_profile(profile)
    return (["pfm"] + [f"baseline:{f}" for f in p.baseline_families]
            + [f"{m}:{f}" for f in p.finetune_families for m in METHODS])


def parse_spec(spec):
    """``"lora:Style_A"`` -> ``("lora", "style-a")``, ``"pfm"`` -> ``("pfm", None)``; ValueError otherwise."""
    kind, _, family = str(spec).partition(":")
    if kind == "pfm" and not family:
        return "pfm", None
    if kind in ("baseline",) + METHODS and family:
        return kind, canonical_family(family)
    raise ValueError(f"model {spec!r} is not known; use 'pfm', 'baseline:<family>', 'fft:<family>' or "
                     "'lora:<family>', e.g. 'lora:style-a'")


def network(profile):
    """A fresh InversionNet of the profile's width and input length."""
    from ..models import InversionNet

    p = get_profile(profile)
    return InversionNet(width_multiplier=p.width_multiplier, input_length=p.input_length)


def lora_settings(profile):
    """LoRA of the profile: its rank and alpha on every convolution, BatchNorm frozen."""
    from ..models import LoraSettings

    p = get_profile(profile)
    return LoraSettings(rank=p.lora_rank, alpha=p.lora_alpha, target="all", train_batchnorm=False)


def load_model(spec, profile, cache_dir=None, seed=0, fraction=1.0):
    """Load a trained model of the cache (in eval mode, on the CPU).

    Parameters
    ----------
    spec : str
        ``"pfm"``, ``"baseline:<family>"``, ``"fft:<family>"`` or ``"lora:<family>"``.
    profile : str or Profile
    cache_dir : path, optional
    seed : int
        Training seed of the run.
    fraction : float
        Share of the training set of the run (low-data runs).

    Returns
    -------
    torch.nn.Module
        InversionNet with the trained weights, or (LoRA) a peft model: the PFM plus the adapter.

    Raises
    ------
    FileNotFoundError
        If the model has not been trained yet; the message names the call that trains it.
    fwi_teach.runtime.CorruptFileError
        If its weights are damaged (they differ from the checksum recorded when they were
        saved, or cannot be read); the message names the file and the command that
        trains the model again (``--force``).
    """
    from ..training.engine import load_weights

    p = get_profile(profile)
    kind, family = parse_spec(spec)
    folder = profile_dir(p, cache_dir) / "models" / run_name(kind, family, fraction, seed)
    weights = folder / ("adapter" if kind == "lora" else "model.pt")
    if not weights.exists():
        raise FileNotFoundError(f"{weights} does not exist: train the model first, e.g. "
                                f"`{train_command(kind, family, p, seed, fraction)}`")
    def advice(run_kind, run_family, share):
        return f"train it again with `{train_command(run_kind, run_family, p, seed, share)} --force`"

    def checked_weights(model, run_folder, fix):
        verify_checksums(run_folder, fix)
        try:
            return load_weights(model, run_folder / "model.pt")
        except CorruptFileError as err:
            raise CorruptFileError(f"{err}. To replace it, {fix}") from None

    if kind != "lora":
        return checked_weights(network(p), folder, advice(kind, family, fraction)).eval()
    from ..models import check_adapter, load_peft_adapter

    pfm = checked_weights(network(p), profile_dir(p, cache_dir) / "models" / run_name("pfm", seed=seed),
                          advice("pfm", None, 1.0))
    verify_checksums(folder, advice(kind, family, fraction))
    check_adapter(pfm, weights, spec)
    return load_peft_adapter(pfm, weights).eval()


def train_command(kind, family, profile, seed=0, fraction=1.0) -> str:
    """The ``fwi-teach`` command that trains one run of the cache."""
    p = get_profile(profile)
    command = {"pfm": "pretrain", "baseline": f"baseline {family}"}.get(kind, f"finetune {family} --method {kind}")
    return f"fwi-teach {command} --profile {p.name} --seed {seed}" + (f" --fraction {fraction:g}" if fraction != 1
                                                                      else "")


#: Per run folder: the SHA-256 of each weights file, written by :func:`save_model`.
CHECKSUMS_FILE = "checksums.json"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(folder, advice: str) -> None:
    """Compare the weights files of a run folder with the checksums :func:`save_model` recorded.

    Folders saved before checksums were recorded are not checked (the loaders still
    refuse unreadable files). Raises :class:`~fwi_teach.runtime.CorruptFileError` naming the
    file and ``advice``.
    """
    folder = Path(folder)
    if not (folder / CHECKSUMS_FILE).is_file():
        return
    for rel, digest in json.loads((folder / CHECKSUMS_FILE).read_text()).items():
        path = folder / rel
        if not path.is_file() or _sha256(path) != digest:
            state = ("missing" if not path.is_file()
                     else "damaged: its checksum differs from the one recorded when it was saved")
            raise CorruptFileError(f"{path} is {state}; {advice}")


def forget_run(pdir, name) -> None:
    """Delete one run's results and weights from the cache (before it is trained again)."""
    import shutil

    for suffix in (".json", ".csv"):
        (Path(pdir) / "results" / f"{name}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(Path(pdir) / "models" / name, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]  # fwi_teach/experiments/cache.py -> the repository
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def environment(device="auto") -> dict:
    """Package version, git commit (or None), torch / Python versions, platform and device of this run."""
    from .. import __version__

    dev = resolve_device(device)
    return {"package_version": __version__, "git_commit": _git_commit(), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "platform": platform.platform(), "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "torch_threads": torch.get_num_threads()}


def _data_source(data_dir) -> str:
    return str(Path(data_dir).expanduser().resolve()) if data_dir else "generated"


def make_record(name, profile, seed, data_dir, env, rows, **extra) -> dict:
    """A results record: identification, environment, and ``rows`` (flat dicts, one per measurement).

    Every row also gets ``profile``, ``seed``, ``device``, ``package_version``,
    ``git_commit`` and ``torch_version`` (unless it has them already, from the run that
    measured it), so the CSV stands on its own.
    """
    p = get_profile(profile)
    stamp = {"profile": p.name, "seed": int(seed), "device": env["device"], "package_version": env["package_version"],
             "git_commit": env["git_commit"], "torch_version": env["torch_version"]}
    return {"format": RECORD_FORMAT, "name": name, "profile": p.name, "seed": int(seed),
            "profile_settings": p.settings(), "data_source": _data_source(data_dir), "environment": env,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
            "rows": [{**row, **{k: v for k, v in stamp.items() if k not in row}} for row in rows]}


def _csv_text(rows) -> str:
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def write_results(path, record) -> Path:
    """Write ``record`` to ``path`` (JSON) and its rows beside it (``.csv``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path.with_suffix(".csv"), _csv_text(record["rows"]).encode())
    atomic_write_bytes(path, (json.dumps(record, indent=1, default=str) + "\n").encode())
    return path


def read_results(path, profile, data_dir=None) -> dict | None:
    """The record at ``path``, or ``None`` if there is none.

    Raises
    ------
    ValueError
        If it was made with other profile settings or another data source than
        ``profile`` / ``data_dir``; the message says what differs and how to start afresh.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"results file {path} is not valid JSON ({exc}); delete it to recompute it") from exc
    p = get_profile(profile)
    now, then = p.settings(), record.get("profile_settings", {})
    diff = [f"{k}: {then.get(k)!r} there vs {v!r} now" for k, v in now.items() if then.get(k) != v]
    if record.get("data_source") != _data_source(data_dir):
        diff.append(f"data: {record.get('data_source')} there vs {_data_source(data_dir)} now")
    if diff:
        raise ValueError(f"cached results {path} were made with other settings of profile {p.name!r} ("
                         f"{'; '.join(diff)}); use another cache_dir, or delete {path.parents[1]} to recompute")
    return record


def _atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def save_model(model, folder, lora=False) -> dict:
    """Save the weights of a trained model into ``folder``; return the paths as strings.

    Plain networks: ``model.pt`` (a state dict, CPU tensors). LoRA (a peft model): the
    adapter and its metadata (:func:`fwi_teach.models.adapters.save_adapter`) into ``adapter/``
    (written beside it, then renamed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not lora:
        path = folder / "model.pt"
        _atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        out = {"model": str(path)}
    else:
        from ..models import save_adapter

        out = {"adapter": str(save_adapter(model, folder / "adapter"))}
    sums = {f.relative_to(folder).as_posix(): _sha256(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and f.suffix in (".pt", ".safetensors", ".bin") and "checkpoints" not in f.parts}
    atomic_write_bytes(folder / CHECKSUMS_FILE, (json.dumps(sums, indent=1) + "\n").encode())
    return out


def print_rows(rows, columns=("experiment", "eval_family", "mae", "rmse", "ssim", "trainable_params"),
               file=None) -> None:
    """Print ``rows`` as an aligned text table (numbers with 4 significant digits)."""
    file = file or sys.stdout
    cells = [[c for c in columns]] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=file)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
