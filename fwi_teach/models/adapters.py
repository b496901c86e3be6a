"""One PFM, many adapters: LoRA's practical selling point.

A fine-tuned copy of InversionNet per task costs the whole network per task, on disk and
in memory. With LoRA the pretrained foundational model (PFM) is loaded once and each
task adds only its adapter (about 5 % of the weights); switching task is switching the
active adapter, with no weights copied.

:func:`save_adapter`
    ``save_pretrained`` of a peft model plus ``fwi_teach_adapter.json``: the network's
    width, input length and shot count, and a fingerprint of the PFM weights it was
    trained on. Written beside its final place, then renamed.
:func:`load_adapters`
    Attach adapters to one PFM by name (peft's multi-adapter API, ``load_adapter``),
    after checking each one against the PFM: a missing directory, another width or
    input length, or other PFM weights each stop with a message that names the fix.
:func:`use_adapter`
    Make one adapter the active one (``set_adapter``), with a clear error for an
    unknown name.
:func:`pfm_fingerprint`, :func:`adapter_footprint`
    The PFM's identity, and the bytes on disk and in memory of serving several tasks
    this way against one fine-tuned network per task.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..runtime import folder_swap
from .peft_bridge import _register_layers, load_peft_adapter

__all__ = ["METADATA_FILE", "adapter_metadata", "save_adapter", "read_adapter_metadata", "check_adapter",
           "load_adapters", "use_adapter", "pfm_fingerprint", "adapter_footprint", "directory_bytes"]

METADATA_FILE = "fwi_teach_adapter.json"
_FORMAT = 1


def _canonical_base_state(model: nn.Module) -> dict:
    """The plain network's state dict inside a peft model (or of a plain network): LoRA keys dropped."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key or ".modules_to_save." in key:
            continue
        state[key.replace(".base_layer.", ".").replace(".original_module.", ".")] = value
    return state


def pfm_fingerprint(model: nn.Module) -> str:
    """A 16-hex-digit SHA-256 of the base network's weights and buffers (LoRA adapters excluded).

    The same for a PFM and for a peft model built on it, so an adapter can name the PFM it
    was trained on.
    """
    digest = hashlib.sha256()
    for key, value in sorted(_canonical_base_state(model).items()):
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _network(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def adapter_metadata(model: nn.Module) -> dict:
    """What an adapter needs of its PFM: width, input length, shots, and the PFM fingerprint."""
    net = _network(model)
    missing = [a for a in ("width_multiplier", "input_length", "in_channels") if not hasattr(net, a)]
    if missing:
        raise TypeError(f"{type(net).__name__} has no {', '.join(missing)}; adapters are described for "
                        f"fwi_teach.models.InversionNet")
    return {"format": _FORMAT, "network": type(net).__name__, "width_multiplier": float(net.width_multiplier),
            "input_length": int(net.input_length), "in_channels": int(net.in_channels),
            "pfm_fingerprint": pfm_fingerprint(model)}


def save_adapter(model, path: str | os.PathLike, **extra) -> Path:
    """Save a peft model's adapter and its :func:`adapter_metadata` into the directory ``path``.

    ``extra`` entries (for example ``family="curvevel-b"``) are stored in the metadata
    too. The directory is written beside its final place and renamed into it.
    """
    final = Path(path)
    with folder_swap(final) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / METADATA_FILE).write_text(json.dumps({**adapter_metadata(model), **extra}, indent=1) + "\n")
    return final


def _check_dir(path: Path, name: str | None = None) -> None:
    label = f"adapter {name!r}" if name else "adapter"
    if not path.is_dir():
        raise FileNotFoundError(f"{label}: the directory {os.fspath(path)!r} does not exist; pass the directory "
                                f"written by save_adapter() / save_pretrained() (the experiments keep it as "
                                f"models/<run>/adapter in the cache)")
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{label}: {os.fspath(path)!r} has no adapter_config.json; pass the directory "
                                f"given to save_pretrained()")


def read_adapter_metadata(path: str | os.PathLike) -> dict | None:
    """The metadata :func:`save_adapter` wrote into ``path``, or None for an adapter saved without it."""
    file = Path(path) / METADATA_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def check_adapter(pfm: nn.Module, path: str | os.PathLike, name: str | None = None,
                  check_weights: bool = True) -> dict | None:
    """Check that the adapter in ``path`` fits ``pfm``; return its metadata (None if it has none).

    Raises
    ------
    FileNotFoundError
        If the directory or its ``adapter_config.json`` is missing.
    ValueError
        If the adapter was trained on a network of another width, input length or shot
        count, or (``check_weights``) on other PFM weights; the message names the PFM to
        load instead.
    """
    path = Path(path)
    _check_dir(path, name)
    meta = read_adapter_metadata(path)
    if meta is None:
        return None
    label = f"adapter {name!r} ({os.fspath(path)})" if name else f"adapter {os.fspath(path)!r}"
    net = _network(pfm)
    for key, what in (("width_multiplier", "width multiplier"), ("input_length", "input length (time samples)"),
                      ("in_channels", "number of shots")):
        have = getattr(net, key, None)
        if have is not None and float(have) != float(meta[key]):
            raise ValueError(f"{label} was trained on an InversionNet with {what} {meta[key]:g}, but this PFM has "
                             f"{have:g}; load it onto the PFM it was trained on, e.g. "
                             f"InversionNet(width_multiplier={meta['width_multiplier']:g}, "
                             f"input_length={meta['input_length']}) with that profile's PFM weights")
    if check_weights and meta.get("pfm_fingerprint") and meta["pfm_fingerprint"] != pfm_fingerprint(pfm):
        raise ValueError(f"{label} was trained on PFM weights {meta['pfm_fingerprint']}, not on these "
                         f"({pfm_fingerprint(pfm)}); load the PFM of the same profile and seed (see "
                         f"fwi_teach.experiments.cache.load_model('pfm', ...)), or pass check_weights=False to attach it "
                         f"anyway")
    return meta


def load_adapters(pfm: nn.Module, adapters, check_weights: bool = True):
    """Attach several adapters to one PFM by name; the first becomes the active one.

    Parameters
    ----------
    pfm : nn.Module
        The pretrained network (changed in place: its layers become peft LoRA layers).
    adapters : dict of str to path
        Adapter name (for example the target family) -> directory written by
        :func:`save_adapter` or ``save_pretrained``.
    check_weights : bool, default True
        Refuse adapters whose metadata names other PFM weights.

    Returns
    -------
    peft.PeftModel
        In eval mode; switch tasks with :func:`use_adapter`.

    Raises
    ------
    ValueError
        If ``adapters`` is empty, or an adapter does not fit the PFM (:func:`check_adapter`)
        or treats batch norm differently from the first one.
    FileNotFoundError
        If an adapter directory is missing.
    """
    items = list(dict(adapters).items())
    if not items:
        raise ValueError("adapters is empty; pass {name: adapter directory, ...}")
    for name, path in items:
        check_adapter(pfm, path, name, check_weights)
    from peft import LoraConfig

    first_name, first_path = items[0]
    first_config = LoraConfig.from_pretrained(os.fspath(first_path))
    model = load_peft_adapter(pfm, first_path, adapter_name=first_name)
    for name, path in items[1:]:
        config = LoraConfig.from_pretrained(os.fspath(path))
        if sorted(config.modules_to_save or []) != sorted(first_config.modules_to_save or []):
            raise ValueError(f"adapter {name!r} trains batch norm differently from {first_name!r} "
                             f"(modules_to_save {config.modules_to_save} vs {first_config.modules_to_save}); "
                             f"adapters served together must share the frozen parts of the PFM")
        _register_layers(config)
        model.load_adapter(os.fspath(path), adapter_name=name)
    model.set_adapter(first_name)
    return model.eval()


def use_adapter(model, name: str):
    """Make adapter ``name`` the active one of a multi-adapter peft model; return the model.

    Raises
    ------
    KeyError
        If the model has no adapter of that name; the message lists those it has.
    """
    names = list(getattr(model, "peft_config", {}))
    if name not in names:
        raise KeyError(f"no adapter named {name!r}; this model has {names}. Attach it first with "
                       f"load_adapters(pfm, {{{name!r}: path}}) or model.load_adapter(path, adapter_name={name!r})")
    model.set_adapter(name)
    return model


def directory_bytes(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path`` (a file's own size if ``path`` is a file)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def adapter_footprint(pfm_file, adapter_dirs, fft_files=None, model=None) -> dict:
    """Bytes on disk and in memory of serving several tasks from one PFM and adapters.

    Parameters
    ----------
    pfm_file : path
        The PFM's weights file.
    adapter_dirs : list of path
        One adapter directory per task.
    fft_files : list of path, optional
        One fully fine-tuned weights file per task, to compare with (default: each the
        size of the PFM file).
    model : peft.PeftModel, optional
        The multi-adapter model; its parameters and buffers give the serving memory.

    Returns
    -------
    dict
        ``disk_pfm_plus_adapters``, ``disk_fft``, ``memory_pfm_plus_adapters`` (if
        ``model``) and ``memory_fft`` (one network per task), in bytes, and ``tasks``.
    """
    adapter_dirs = list(adapter_dirs)
    pfm_bytes = directory_bytes(pfm_file)
    fft = [directory_bytes(f) for f in fft_files] if fft_files else [pfm_bytes] * len(adapter_dirs)
    out = {"tasks": len(adapter_dirs), "disk_pfm_plus_adapters": pfm_bytes + sum(map(directory_bytes, adapter_dirs)),
           "disk_fft": sum(fft)}
    if model is not None:
        net = _network(model)
        out["memory_pfm_plus_adapters"] = sum(t.numel() * t.element_size()
                                              for t in list(model.parameters()) + list(model.buffers()))
        base = _canonical_base_state(net)
        out["memory_fft"] = len(adapter_dirs) * sum(t.numel() * t.element_size() for t in base.values())
    return out
