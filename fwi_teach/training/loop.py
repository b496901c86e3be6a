"""The training loop's parts: one epoch of optimiser steps, batch-wise evaluation, data and precision set-up.

Internal to :mod:`fwi_teach.training` (not public API): dataset checks, loss
selection, the mixed-precision dtype, preloading data into memory, the resident
memory meter behind ``TrainResult.rss_peak_delta_mb``, the evaluation sums behind
MAE / RMSE / SSIM, and :func:`_train_epoch`, which :func:`fwi_teach.training.fit` runs
once per epoch.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from ..evaluation import metrics as _metrics
from .memory import tensor_bytes


_MB = 2.0 ** 20


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


def _amp_dtype(amp: str, device: torch.device, compiled: bool = False):
    """The autocast dtype of ``TrainConfig.amp`` on ``device`` (None: float32); ``compiled``: the step is compiled."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "fp16":
            raise ValueError(f"amp='fp16' needs a CUDA device but training runs on {device}; use 'bf16', 'auto' "
                             "or 'off'")
        # "auto" on CPU: bf16 only where it pays, in a compiled step (which fuses the casts) on a CPU
        # that computes bf16 in hardware; eager bf16 is hardly faster than float32 (benchmarks/training.py).
        if amp == "auto":
            return torch.bfloat16 if compiled and device.type == "cpu" and cpu_has_native_bf16() else None
        return torch.bfloat16
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel (all parameters in one pass per step) where torch has one for them, else
    the default implementation; the two keep the same state and differ by float32 rounding."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


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
    x0, y0 = torch.as_tensor(x0), torch.as_tensor(y0)
    xs = torch.empty((len(dataset), *x0.shape), dtype=x0.dtype)  # filled in place: no second copy to stack
    ys = torch.empty((len(dataset), *y0.shape), dtype=y0.dtype)
    for i in tqdm(range(len(dataset)), desc=f"loading {desc} into memory", leave=False, disable=not show):
        x, y = (torch.as_tensor(t) for t in _unpack(dataset[i], desc)) if i else (x0, y0)
        if x.shape != x0.shape or y.shape != y0.shape:
            raise ValueError(f"{desc} item {i} has shapes {tuple(x.shape)} and {tuple(y.shape)}, item 0 "
                             f"{tuple(x0.shape)} and {tuple(y0.shape)}; every item must have the same shapes")
        xs[i], ys[i] = x, y
    return TensorDataset(xs, ys)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
                metrics = _metrics.per_sample_metrics(pred, y)
                for key, values in metrics.items():
                    per_sample.setdefault(key, []).extend(values.tolist())
                ssim = metrics["ssim"]  # SSIM is most of an evaluation's time: the same values, computed once
            else:
                ssim = _metrics.ssim_openfwi(pred, y, reduction="sample")
            sums[4] += float(np.sum(ssim))
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


def _peak_memory(device: torch.device, breakdown: dict | None):
    """``(peak MiB, memory_kind)``: the CUDA allocator peak, or the CPU tensor account of one step."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / _MB, "cuda_allocator"
    return (sum(breakdown.values()) if breakdown else None), "tensor_accounting"


def _throughput(history: list):
    """``(seconds per optimiser step, samples per second)`` over the training time of all epochs."""
    total_steps = sum(h["steps"] for h in history)
    train_time = sum(h["train_time_s"] for h in history)
    return (train_time / total_steps if total_steps else None,
            sum(h["samples"] for h in history) / train_time if train_time > 0 else None)


def batch_memory_format(memory_format: str, device: torch.device, compiled: bool = False) -> torch.memory_format:
    """The layout :func:`~fwi_teach.training.fit` gives 4-D batches (``TrainConfig.memory_format``).

    "auto": channels_last for an eager step on a CPU; contiguous on CUDA and for a compiled
    step, whose fused batch norms over few channels run slower in channels_last.
    """
    if memory_format == "auto":
        memory_format = "channels_last" if device.type == "cpu" and not compiled else "contiguous"
    return torch.channels_last if memory_format == "channels_last" else torch.contiguous_format


def _train_epoch(net, loader, optimizer, scaler, loss_fn, amp_dtype, device, max_steps, bar, meter, lr_of=None,
                 memory_format=torch.contiguous_format):
    """One pass over ``loader``; returns (loss sum, samples, steps, seconds, memory breakdown or None).

    ``net`` is a :class:`~fwi_teach.training.compiled.TrainingForward`; ``lr_of(i)``, if given,
    is the learning rate of the epoch's step ``i``; 4-D batches are laid out in ``memory_format``."""
    net.eager.train()
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
        x = x.to(device, non_blocking=True, memory_format=memory_format if x.dim() == 4 else torch.preserve_format)
        y = y.to(device, non_blocking=True).float()
        hooks = meter.hooks() if meter is not None and breakdown is None else contextlib.nullcontext()
        with autocast, hooks:
            pred = net(x, eager=meter is not None and breakdown is None)
        _check_shapes(pred, y)
        loss = loss_fn(pred.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if meter is not None and breakdown is None:
            module = getattr(net.eager, "module", net.eager)
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
