"""Checkpoints of :func:`~fwi_teach.training.fit`: their contents, atomic writes, seeding and resuming.

``last.pt`` holds the model, optimiser, gradient scaler, RNG states, history and
settings after every epoch; ``best.pt`` the weights of the best validation epoch with
its ``epoch`` and optimiser ``step``, the keys OpenFWI's own ``test.py`` reads (so its
evaluation runs our models). A damaged or foreign file raises
:class:`~fwi_teach.runtime.CorruptFileError` naming the file and what to do.
Both are written to a temporary file beside their place and renamed, and read
with ``weights_only=True`` (no pickled code runs). A run resumes only with the
settings it was written with; anything else stops with a message naming the fix. It also
goes on with the precision, compilation and batch layout it began with wherever those
settings are "auto".
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..runtime import atomic_write
from ..runtime import load_tensors

if TYPE_CHECKING:
    from .config import TrainConfig

_FORMAT = "fwi_teach.training/1"
# Settings that must match for a resumed run to continue the same optimisation.
_RESUME_KEYS = ("batch_size", "lr", "weight_decay", "loss", "seed", "max_steps_per_epoch", "schedule",
                "warmup_epochs")
_RESUME_DEFAULTS = {"schedule": "constant", "warmup_epochs": 0.0}  # checkpoints written before these existed


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      cached],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` (never a half-written file)."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _resume_state(path: Path, cfg: TrainConfig, model: nn.Module, ctx) -> dict:
    """Load ``last.pt`` into ``model`` after checking it belongs to this run; return the checkpoint."""
    state = load_tensors(path, fix="delete it (the run then starts over) or pass resume=False")
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by fwi_teach.training.fit; remove it or pass "
                         f"resume=False to start over")
    saved = state["config"]
    if cfg.schedule == "cosine" and saved.get("epochs") != cfg.epochs:
        raise ValueError(f"{path} was written by a run of {saved.get('epochs')} epochs; a cosine schedule is fixed "
                         f"by its length, so it cannot continue to epochs={cfg.epochs}. Use epochs="
                         f"{saved.get('epochs')}, another checkpoint_dir, or resume=False to start over")
    for key in _RESUME_KEYS:
        if saved.get(key, _RESUME_DEFAULTS.get(key)) != getattr(cfg, key):
            raise ValueError(f"{path} was written with {key}={saved.get(key, _RESUME_DEFAULTS.get(key))!r} but this run has "
                             f"{key}={getattr(cfg, key)!r}; use the same settings to resume, another "
                             f"checkpoint_dir, or resume=False to start over")
    if state.get("world_size", 1) != ctx.world_size and ctx.is_main:
        print(f"fit: resuming a run made with {state.get('world_size', 1)} processes on {ctx.world_size}; "
              f"the data order changes", file=sys.stderr)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"{path} holds weights of a different model ({str(err).splitlines()[0]}); use another "
                         f"checkpoint_dir or resume=False") from None
    return state


_AMP_NAMES = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}
_LAYOUT_NAMES = {torch.channels_last: "channels_last", torch.contiguous_format: "contiguous"}


def _resumed_numerics(state, cfg: TrainConfig, compiled: bool, amp_dtype, layout, device: torch.device, ctx):
    """``(compiled, amp_dtype, layout)`` of a run: for a resumed one, those it was written with wherever the
    setting is "auto" (a run goes on as it began, even on a machine whose "auto" chooses otherwise);
    a setting given explicitly wins, with a notice that the rest of the run computes differently."""
    saved = (state or {}).get("numerics")
    if not saved:
        return compiled, amp_dtype, layout
    now = {"compiled": compiled, "amp": _AMP_NAMES[amp_dtype], "memory_format": _LAYOUT_NAMES[layout]}
    out = dict(now)
    for key, setting in (("compiled", cfg.compile), ("amp", cfg.amp), ("memory_format", cfg.memory_format)):
        if setting == "auto" and not (key == "amp" and saved[key] == "fp16" and device.type != "cuda"):
            out[key] = saved[key]
    if out != saved and ctx.is_main:
        print(f"fit: resuming a run trained with {saved}; it continues with {out} as configured, so it no "
              f"longer computes exactly as an uninterrupted run", file=sys.stderr)
    dtypes = {v: k for k, v in _AMP_NAMES.items()}
    layouts = {v: k for k, v in _LAYOUT_NAMES.items()}
    return bool(out["compiled"]), dtypes[out["amp"]], layouts[out["memory_format"]]


def _open_checkpoint_dir(cfg: TrainConfig, model: nn.Module, ctx):
    """``(checkpoint_dir, last.pt, best.pt, checkpoint to resume or None)``; creates the directory if needed."""
    if cfg.checkpoint_dir is None:
        return None, None, None, None
    ckpt_dir = Path(cfg.checkpoint_dir)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    state = None
    if cfg.resume and last_path.exists():
        state = _resume_state(last_path, cfg, model, ctx)
    elif ctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    return ckpt_dir, last_path, best_path, state


def _restore_run(state: dict | None, optimizer, scaler, best_path: Path | None, keep_best: bool):
    """Restore optimizer, scaler and RNG states from ``last.pt`` (``state``; None: a fresh run).

    Returns ``(history, start_epoch, best_val, best_epoch, best_state)``; ``best_state``
    (the weights in ``best.pt``) only if ``keep_best`` (a validation set is given).
    """
    if state is None:
        return [], 0, math.inf, None, None
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    best_val = math.inf if state["best_val_loss"] is None else state["best_val_loss"]
    best_state = None
    if keep_best and best_path.exists():
        best_state = load_tensors(best_path, fix="delete it and last.pt (the run then starts over) or pass "
                                              "resume=False")["model"]
    _set_rng_state(state["rng"])
    return list(state["history"]), int(state["epoch"]), best_val, state["best_epoch"], best_state


def _checkpoints(model: nn.Module, optimizer, scaler, cfg: TrainConfig, ctx, history: list, best_epoch,
                 best_val: float, improved: bool, numerics: tuple):
    """Contents of ``best.pt`` (None unless ``improved``) and ``last.pt`` after the epoch ``history[-1]``."""
    epoch, weights = history[-1]["epoch"], model.state_dict()
    step = sum(int(h.get("steps") or 0) for h in history)  # optimiser steps so far: OpenFWI's test.py prints it
    best = ({"format": _FORMAT, "epoch": epoch, "step": step, "model": weights, "metrics": history[-1]}
            if improved else None)
    last = {"format": _FORMAT, "epoch": epoch, "step": step, "model": weights,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "rng": _rng_state(), "history": history, "best_epoch": best_epoch,
            "best_val_loss": None if best_val == math.inf else best_val,
            "config": cfg.to_dict(), "world_size": ctx.world_size,
            "numerics": {"compiled": bool(numerics[0]), "amp": _AMP_NAMES[numerics[1]],
                         "memory_format": _LAYOUT_NAMES[numerics[2]]}}
    return best, last
