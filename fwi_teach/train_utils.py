"""Internal helpers of :mod:`fwi_teach.training` (not public API).

Argument and dataset checks, loss selection, mixed-precision dtype, seeding and
RNG state, checkpoint contents, atomic writes and resume, the memory meters behind
``TrainResult.memory_breakdown_mb`` / ``rss_peak_delta_mb`` (see the
:mod:`fwi_teach.training` docstring), the batch-wise evaluation sums, and the
per-epoch training loop that :func:`fwi_teach.training.fit` runs.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from . import metrics as _metrics
from .data.layout import atomic_write
from .memory import SavedTensorMeter as _SavedTensorMeter, tensor_bytes

if TYPE_CHECKING:
    from .training import TrainConfig

_FORMAT = "fwi_teach.training/1"
# Settings that must match for a resumed run to continue the same optimisation.
_RESUME_KEYS = ("batch_size", "lr", "weight_decay", "loss", "seed", "max_steps_per_epoch", "schedule",
                "warmup_epochs")
_RESUME_DEFAULTS = {"schedule": "constant", "warmup_epochs": 0.0}  # checkpoints written before these existed
_MB = 2.0 ** 20


def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}" + (" or None" if allow_none else ""))


# ----------------------------------------------------------------------------- small helpers
def _check_dataset(dataset, name: str) -> None:
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
        raise TypeError(f"{name} is a {type(dataset).__name__} without a length; pass a map-style dataset "
                        f"(e.g. OpenFWIDataset or TensorDataset) whose items are (seismic, velocity) pairs")
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty (0 samples); check the dataset path, split and fraction")


def _unpack(batch, name: str = "dataset"):
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise TypeError(f"{name} items must be (seismic, velocity) pairs; got a {type(batch).__name__}"
                        + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else ""))
    return batch


def _loss_fn(name: str):
    if name == "l1":
        return F.l1_loss
    if name == "l2":
        return F.mse_loss
    return lambda pred, target: F.l1_loss(pred, target) + F.mse_loss(pred, target)


def _check_shapes(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"model output has shape {tuple(pred.shape)} but the velocity targets have shape "
                         f"{tuple(target.shape)}; they must match, e.g. (N, 1, 70, 70)")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 ``avx512_bf16`` or ``amx_bf16``).

    Without it, bf16 arithmetic is emulated and slower than float32; ``amp="bf16"``
    is then not worth it on CPU.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _amp_dtype(amp: str, device: torch.device):
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "fp16":
            raise ValueError(f"amp='fp16' needs a CUDA device but training runs on {device}; use 'bf16', 'auto' "
                             "or 'off'")
        # "auto" stays float32 on CPU: at the cpu profile bf16 autocast measured 1.3x faster per
        # bare step but no faster inside fit (benchmarks/training.py), so it is opt-in.
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


#: ``preload="auto"`` keeps a data set in memory when it takes at most this many bytes.
PRELOAD_LIMIT_BYTES = 8 * 1024 ** 3


def preload_limit_bytes() -> int:
    """The most bytes ``preload="auto"`` keeps in memory: a quarter of the machine's RAM, at most
    :data:`PRELOAD_LIMIT_BYTES` (8 GiB)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        ram = 8 * 1024 ** 3
    return int(min(PRELOAD_LIMIT_BYTES, ram // 4))


def _preloaded(dataset, mode, is_distributed: bool, desc: str, show: bool):
    """``dataset`` as an in-memory ``TensorDataset`` (same items, same order), or unchanged.

    ``mode``: True, False or "auto" (when not distributed and the data take at most
    :func:`preload_limit_bytes`). Reading every item once instead of once per epoch
    removes the per-step file reads, decimation and normalisation.
    """
    if mode is False or dataset is None or isinstance(dataset, TensorDataset) or len(dataset) == 0:
        return dataset
    x0, y0 = _unpack(dataset[0], desc)
    item_bytes = sum(t.numel() * t.element_size() for t in (torch.as_tensor(x0), torch.as_tensor(y0)))
    if mode == "auto" and (is_distributed or item_bytes * len(dataset) > preload_limit_bytes()):
        return dataset
    xs, ys = [], []
    for i in tqdm(range(len(dataset)), desc=f"loading {desc} into memory", leave=False, disable=not show):
        x, y = _unpack(dataset[i], desc)
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    return TensorDataset(torch.stack(xs), torch.stack(ys))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def _as_dataset(data):
    """A numpy array or tensor of seismic data as a TensorDataset (checked to be 4-D); datasets unchanged."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if torch.is_tensor(data):
        if data.dim() != 4:
            raise ValueError(f"data has shape {tuple(data.shape)}; expected (N, shots, time, receivers), "
                             f"e.g. (N, 5, 1000, 70) (add a leading axis for one sample)")
        data = TensorDataset(data.float())
    return data


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


_nbytes = tensor_bytes


# ----------------------------------------------------------------------------- memory meters
class _RssMeter:
    """Peak resident-set growth of this process between ``start`` and ``stop``, in MiB."""

    def __init__(self):
        self.mode, self.base, self.peak = None, 0, 0
        self._stop, self._thread = threading.Event(), None

    @staticmethod
    def _status_kb(key: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise OSError(f"{key} not in /proc/self/status")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._status_kb("VmRSS"))

    def start(self) -> "_RssMeter":
        try:
            self.base = self.peak = self._status_kb("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
                self.mode = "hwm"
            except OSError:
                self.mode = "sample"
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        except OSError:  # no /proc: ru_maxrss only shows growth beyond the process's earlier peak
            try:
                self.mode, self.base = "maxrss", self._maxrss_kb()
            except ImportError:
                self.mode = None
        return self

    @staticmethod
    def _maxrss_kb() -> float:
        import resource  # not on Windows

        scale = 1 / 1024 if sys.platform == "darwin" else 1  # bytes on macOS, KiB elsewhere
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def stop(self) -> float | None:
        if self.mode is None:
            return None
        try:
            if self.mode == "hwm":
                peak_kb = self._status_kb("VmHWM")
            elif self.mode == "sample":
                self._stop.set()
                self._thread.join()
                peak_kb = self.peak
            else:
                peak_kb = self._maxrss_kb()
        except (OSError, ImportError):
            return None
        return max(0.0, (peak_kb - self.base) / 1024)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _eval_sums(module: nn.Module, loader, device: torch.device, loss_fn, per_sample=None) -> list[float]:
    """[n_samples, n_pixels, sum |e|, sum e^2, sum of per-sample SSIM, sum of per-sample loss].

    ``per_sample``, a dict of lists, if given, collects every sample's MAE, RMSE and SSIM."""
    was_training = module.training
    module.eval()
    sums = [0.0] * 6
    try:
        for batch in loader:
            x, y = _unpack(batch)
            pred = module(x.to(device)).float().cpu()
            y = y.float()
            _check_shapes(pred, y)
            n, pix = y.shape[0], y.numel()
            sums[0] += n
            sums[1] += pix
            sums[2] += _metrics.mae(pred, y) * pix
            sums[3] += _metrics.rmse(pred, y) ** 2 * pix
            if per_sample is not None:
                for key, values in _metrics.per_sample_metrics(pred, y).items():
                    per_sample.setdefault(key, []).extend(values.tolist())
            sums[4] += float(np.sum(_metrics.ssim_openfwi(pred, y, reduction="sample")))
            sums[5] += float(loss_fn(pred, y)) * n
    finally:
        module.train(was_training)
    return sums


def _metrics_from_sums(s: list[float]) -> dict:
    n, pix = s[0], s[1]
    out = {"mae": s[2] / pix, "rmse": math.sqrt(s[3] / pix), "ssim": s[4] / n}
    out["mae_mps"] = out["mae"] * _metrics.VELOCITY_SCALE_MPS
    out["rmse_mps"] = out["rmse"] * _metrics.VELOCITY_SCALE_MPS
    out["n_samples"] = int(n)
    out["loss"] = s[5] / n
    return out


# ----------------------------------------------------------------------------- training
def _resume_state(path: Path, cfg: TrainConfig, model: nn.Module, ctx) -> dict:
    """Load ``last.pt`` into ``model`` after checking it belongs to this run; return the checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)
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
        best_state = torch.load(best_path, map_location="cpu", weights_only=True)["model"]
    _set_rng_state(state["rng"])
    return list(state["history"]), int(state["epoch"]), best_val, state["best_epoch"], best_state


def _peak_memory(device: torch.device, breakdown: dict | None):
    """``(peak MiB, memory_kind)``: the CUDA allocator peak, or the CPU tensor account of one step."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / _MB, "cuda_allocator"
    return (sum(breakdown.values()) if breakdown else None), "tensor_accounting"


def _checkpoints(model: nn.Module, optimizer, scaler, cfg: TrainConfig, ctx, history: list, best_epoch,
                 best_val: float, improved: bool):
    """Contents of ``best.pt`` (None unless ``improved``) and ``last.pt`` after the epoch ``history[-1]``."""
    epoch, weights = history[-1]["epoch"], model.state_dict()
    best = {"format": _FORMAT, "epoch": epoch, "model": weights, "metrics": history[-1]} if improved else None
    last = {"format": _FORMAT, "epoch": epoch, "model": weights,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "rng": _rng_state(), "history": history, "best_epoch": best_epoch,
            "best_val_loss": None if best_val == math.inf else best_val,
            "config": cfg.to_dict(), "world_size": ctx.world_size}
    return best, last


def _throughput(history: list):
    """``(seconds per optimiser step, samples per second)`` over the training time of all epochs."""
    total_steps = sum(h["steps"] for h in history)
    train_time = sum(h["train_time_s"] for h in history)
    return (train_time / total_steps if total_steps else None,
            sum(h["samples"] for h in history) / train_time if train_time > 0 else None)


def _train_epoch(net, loader, optimizer, scaler, loss_fn, amp_dtype, device, max_steps, bar, meter, lr_of=None):
    """One pass over ``loader``; returns (loss sum, samples, steps, seconds, memory breakdown or None).

    ``lr_of(i)``, if given, is the learning rate of the epoch's step ``i``."""
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n = steps = 0
    breakdown = None
    last_postfix = time.perf_counter()
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    _sync(device)
    t0 = time.perf_counter()
    for batch in loader:
        x, y = _unpack(batch, "train_dataset")
        if lr_of is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_of(steps)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True).float()
        hooks = meter.hooks() if meter is not None and breakdown is None else contextlib.nullcontext()
        with autocast, hooks:
            pred = net(x)
        _check_shapes(pred, y)
        loss = loss_fn(pred.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if meter is not None and breakdown is None:
            module = getattr(net, "module", net)
            breakdown = {
                "parameters_and_buffers": _nbytes(module.parameters()) + _nbytes(module.buffers()),
                "gradients": _nbytes(p.grad for p in module.parameters() if p.grad is not None),
                "optimizer_state": _nbytes(t for s in optimizer.state.values() for t in s.values()),
                "saved_activations": sum(meter.sizes.values()),
                "batch": _nbytes((x, y)),
            }
            breakdown = {k: v / _MB for k, v in breakdown.items()}
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach() * x.shape[0]
        n += x.shape[0]
        steps += 1
        bar.update(1)
        if not bar.disable and time.perf_counter() - last_postfix > 0.5:
            bar.set_postfix(loss=f"{loss_sum.item() / n:.4f}")
            last_postfix = time.perf_counter()
        if max_steps is not None and steps >= max_steps:
            break
    _sync(device)
    return loss_sum.item(), n, steps, time.perf_counter() - t0, breakdown
