"""A really pretrained foundation model that ships with the package.

Pretraining the PFM takes minutes to hours, so a book built with the quick ``smoke``
profile would otherwise only ever fine-tune a PFM that has seen one epoch of a few
samples. The package therefore carries the weights of the reference run's PFM
(``fwi_teach/experiments/weights/pfm-cpu.safetensors``: the ``cpu`` profile, a few MB; its
metadata name the seed and the commit) in the safetensors format, which loads without running any pickled code. The smoke
profile feeds the network the same input (1000 time samples decimated by 4, 70
receivers, 5 shots), so a chapter can adapt this PFM to a target family with LoRA
within the smoke budget and show its predictions change.

=============================  ============================================================
:func:`load_reference_pfm`      the shipped PFM as an InversionNet, with its metadata
:func:`save_reference_pfm`      write a trained PFM of the cache in that format
=============================  ============================================================
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["REFERENCE_PFM", "load_reference_pfm", "save_reference_pfm"]

#: The shipped PFM weights (package data): ``weights/pfm-cpu.safetensors`` beside this module.
#:
#: :meta hide-value:
REFERENCE_PFM = Path(__file__).with_name("weights") / "pfm-cpu.safetensors"
_KEYS = ("profile", "seed", "width_multiplier", "input_length", "git_commit", "pretrain_families", "test_metrics")


def save_reference_pfm(profile="cpu", seed=0, cache_dir=None, path=None) -> Path:
    """Write the cached PFM of ``profile`` / ``seed`` as safetensors with its metadata (atomically).

    The metadata record the profile, seed, network width and input length, the git
    commit of the run and the PFM's test metrics per pretraining family (from its
    results record).

    Raises
    ------
    FileNotFoundError
        If that PFM has not been trained (the message names the command that trains it).
    """
    from safetensors.torch import save

    from . import cache as art
    from ..runtime import atomic_write_bytes
    from .profiles import get_profile

    p = get_profile(profile)
    model = art.load_model("pfm", p, cache_dir, seed)
    record = art.read_results(art.profile_dir(p, cache_dir) / "results" / f"{art.run_name('pfm', seed=seed)}.json", p)
    meta = {"profile": p.name, "seed": str(int(seed)), "width_multiplier": repr(p.width_multiplier),
            "input_length": str(p.input_length), "git_commit": str((record or {}).get("environment", {}).get("git_commit")),
            "pretrain_families": json.dumps(list(p.pretrain_families)),
            "test_metrics": json.dumps({r["eval_family"]: {k: r[k] for k in ("mae", "rmse", "ssim")}
                                        for r in (record or {}).get("rows", [])})}
    out = Path(path) if path is not None else REFERENCE_PFM
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out, save(state, metadata=meta))
    return out


def load_reference_pfm(path=None):
    """The shipped (or another saved) PFM, in eval mode on the CPU, and its metadata.

    Parameters
    ----------
    path : path, optional
        Default :data:`REFERENCE_PFM`.

    Returns
    -------
    (InversionNet, dict)
        The network and its metadata: ``profile``, ``seed``, ``width_multiplier``,
        ``input_length``, ``git_commit``, ``pretrain_families`` (list) and
        ``test_metrics`` (per pretraining family: mae, rmse, ssim on that run's test split).

    Raises
    ------
    FileNotFoundError
        If the file does not exist (a checkout without the weights): the message says
        how to make it.
    ValueError
        If the file is not a PFM written by :func:`save_reference_pfm`.
    """
    from safetensors import safe_open

    from ..models import InversionNet

    path = Path(path) if path is not None else REFERENCE_PFM
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; train the reference PFM (`fwi-teach pretrain --profile cpu`) "
                                "and write it with fwi_teach.experiments.pretrained.save_reference_pfm()")
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    missing = [k for k in _KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path} lacks the metadata {missing}; it was not written by save_reference_pfm")
    info = {**meta, "seed": int(meta["seed"]), "width_multiplier": float(meta["width_multiplier"]),
            "input_length": int(meta["input_length"]), "pretrain_families": json.loads(meta["pretrain_families"]),
            "test_metrics": json.loads(meta["test_metrics"])}
    model = InversionNet(width_multiplier=info["width_multiplier"], input_length=info["input_length"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not hold the weights of an InversionNet of width {info['width_multiplier']} "
                         f"and input length {info['input_length']}: {str(err).splitlines()[0]}") from None
    return model.eval(), info
