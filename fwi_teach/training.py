"""Training engine: ``fit``, ``evaluate`` and ``predict`` for velocity-map regression.

Defaults follow OpenFWI's InversionNet recipe: AdamW, learning rate 1e-4,
weight decay 1e-4, constant learning rate, L1 loss on the normalised velocity
(``"l1+l2"`` adds the mean squared error). Only parameters with
``requires_grad=True`` are optimised, so a model prepared with
:func:`fwi_teach.lora.apply_lora` trains its adapters only (its frozen BatchNorm
layers stay in eval mode under ``model.train()``).

What :func:`fit` takes care of
------------------------------
* Mixed precision: on CUDA bf16 autocast where supported, else fp16 with a
  gradient scaler; CPU training is float32 unless ``amp="bf16"`` is asked for
  (``amp="off"`` forces float32 everywhere).
* Data in memory: small data sets are read once before the first epoch
  (``preload``), so epochs do not re-read, decimate and normalise every item.
* Reproducibility: ``seed`` seeds torch, numpy and ``random``; shuffling comes
  from a ``DistributedSampler`` whose order is drawn from a ``torch.Generator``
  seeded with ``seed + epoch``. On CPU, the same seed (and the same initial
  weights) gives bit-identical weights.
* Checkpoints in ``checkpoint_dir``: ``last.pt`` (model, optimizer, scaler,
  epoch, RNG states, history) after every epoch and ``best.pt`` (model weights
  of the best validation epoch), both written atomically (temporary file in the
  same directory, then ``os.replace``). A later call with the same directory
  resumes after the last finished epoch and, on CPU, ends with the same
  weights as a run that was never interrupted.
* Scale-out: under ``torchrun`` the same call trains with
  ``DistributedDataParallel`` (see :mod:`fwi_teach.distributed`).
* Measurements, in :class:`TrainResult`: trainable / total parameters, time per
  optimiser step and samples per second (training only, validation excluded),
  and peak memory.

Peak memory
-----------
``TrainResult.peak_memory_mb`` is, on CUDA, ``torch.cuda.max_memory_allocated``
since the start of ``fit`` (``memory_kind="cuda_allocator"``). On CPU there is
no allocator counter, so it is a *tensor account* of one training step
(``memory_kind="tensor_accounting"``): parameters and buffers + gradients +
optimizer state + tensors autograd saves for the backward pass (recorded with
``torch.autograd.graph.saved_tensors_hooks``, each storage counted once) + the
input batch. It is deterministic and counts what the CUDA figure counts (tensor
bytes), but not temporary workspaces, and it adds gradients to the activation
peak, so it is a slight upper bound. The breakdown is in
``memory_breakdown_mb`` on every device. ``rss_peak_delta_mb`` is the other
measure: how far the process's resident memory rose above its level at the
start of ``fit`` (Linux: peak RSS ``VmHWM`` after resetting it; elsewhere
``ru_maxrss``, which only shows growth beyond earlier peaks). It includes
allocator caching and workspaces and depends on what the process did before,
so compare it between fresh processes.
"""
from __future__ import annotations

import functools
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from . import distributed as dist_utils
from .train_utils import (_amp_dtype, _as_dataset, _atomic_save, _check_dataset, _check_int, _checkpoints,
                          _cpu_state, _eval_sums, _loss_fn, _metrics_from_sums, _open_checkpoint_dir, _peak_memory,
                          _preloaded, _restore_run, _RssMeter, _SavedTensorMeter, _seed_everything, _throughput,
                          _train_epoch)

__all__ = ["TrainConfig", "TrainResult", "fit", "evaluate", "predict", "load_weights",
           "learning_rate", "LOSSES", "AMP_MODES", "SCHEDULES"]

#: Loss names accepted by :class:`TrainConfig`.
LOSSES = ("l1", "l2", "l1+l2")
#: Mixed-precision modes accepted by :class:`TrainConfig` (``True`` means "auto", ``False`` "off").
AMP_MODES = ("auto", "off", "bf16", "fp16")
#: Learning-rate schedules accepted by :class:`TrainConfig`.
SCHEDULES = ("constant", "cosine")


def learning_rate(config, step: int, steps_per_epoch: int) -> float:
    """Learning rate of optimiser step ``step`` (counted from 0) under ``config``'s schedule.

    Warm-up: ``lr * (step + 1) / warmup_steps`` for the first ``warmup_epochs *
    steps_per_epoch`` steps. Then ``lr`` ("constant") or ``lr * (1 + cos(pi * u)) / 2``
    ("cosine"), where ``u`` runs from 0 after the warm-up to 1 at the last step of
    ``config.epochs``.
    """
    total = config.epochs * steps_per_epoch
    warm = round(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.lr * (step + 1) / warm
    if config.schedule == "constant":
        return config.lr
    u = (step - warm) / max(1, total - warm - 1)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, u)))


@dataclass
class TrainConfig:
    """Settings of :func:`fit` (defaults: OpenFWI's InversionNet recipe).

    Attributes
    ----------
    epochs : int, default 120
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int, default 256
        Samples per optimiser step and process.
    lr, weight_decay : float, default 1e-4, 1e-4
        AdamW settings; ``lr`` is the peak learning rate of the schedule.
    schedule : {"constant", "cosine"}, default "constant"
        Learning rate per optimiser step (:func:`learning_rate`): constant, or a
        linear warm-up over ``warmup_epochs`` followed by a cosine decay to zero at
        the last step of ``epochs``.
    warmup_epochs : float, default 0
        Length of the linear warm-up from ``lr / steps`` to ``lr``, in epochs (also
        with ``schedule="constant"``).
    loss : {"l1", "l2", "l1+l2"}, default "l1"
        On normalised velocity; ``"l1+l2"`` is L1 + mean squared error.
    amp : {"auto", "off", "bf16", "fp16"} or bool, default "auto"
        Mixed precision of the forward pass (autocast; weights, gradients and the
        optimiser stay float32). "auto": on CUDA bf16 if the GPU supports it, else
        fp16 (with a gradient scaler); on CPU float32. "bf16" works on CPU too
        (worth trying where :func:`fwi_teach.train_utils.cpu_has_native_bf16`;
        at the cpu profile it was 1.3x faster per bare step but no faster inside
        ``fit`` on our 2-core machine). "fp16" needs CUDA.
    device : str, default "auto"
        "auto" (CUDA if available), "cpu", "cuda" or "cuda:N".
    seed : int, default 0
        Seeds torch, numpy, ``random`` and the data order.
    num_workers : int, default 0
        DataLoader worker processes.
    checkpoint_dir : str or Path, optional
        Where ``last.pt`` and ``best.pt`` go; None keeps everything in memory.
    resume : bool, default True
        Continue from ``checkpoint_dir/last.pt`` if it exists (False overwrites it).
    progress : bool, default True
        Show tqdm progress bars (rank 0 only).
    max_steps_per_epoch : int, optional
        Cut every epoch after this many steps (quick runs).
    eval_batch_size : int, optional
        Validation batch size (default: ``batch_size``).
    preload : {"auto", True, False}, default "auto"
        Read the training and validation sets into memory once, before the first
        epoch, instead of reading (and decimating, normalising) every item in
        every epoch. "auto" does so when a set takes at most
        ``train_utils.preload_limit_bytes()`` (a quarter of the RAM, at most 8 GiB) and training is not
        distributed. The items and their order are the same either way.

    Raises
    ------
    ValueError
        For out-of-range values, an unknown loss or amp mode.
    """

    epochs: int = 120
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-4
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    loss: str = "l1"
    amp: Any = "auto"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    checkpoint_dir: Any = None
    resume: bool = True
    progress: bool = True
    max_steps_per_epoch: int | None = None
    eval_batch_size: int | None = None
    preload: Any = "auto"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every field (also called by :func:`fit`, so later edits are checked too)."""
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("num_workers", self.num_workers, 0)
        _check_int("seed", self.seed, 0)
        _check_int("max_steps_per_epoch", self.max_steps_per_epoch, 1, allow_none=True)
        _check_int("eval_batch_size", self.eval_batch_size, 1, allow_none=True)
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r}; expected a positive learning rate such as 1e-4")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; expected one of {SCHEDULES}")
        if not (isinstance(self.warmup_epochs, numbers.Real) and 0 <= self.warmup_epochs < self.epochs):
            raise ValueError(f"warmup_epochs={self.warmup_epochs!r}; expected a number of epochs in [0, epochs) "
                             f"(epochs={self.epochs})")
        if not (isinstance(self.weight_decay, numbers.Real) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r}; expected a number >= 0 such as 1e-4")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}; expected one of {LOSSES} ('l1' is OpenFWI's default)")
        if self.amp is True:
            self.amp = "auto"
        elif self.amp is False:
            self.amp = "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}; expected one of {AMP_MODES} (or True / False)")
        if self.preload not in ("auto", True, False):
            raise ValueError(f"preload={self.preload!r}; expected 'auto', True or False")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise ValueError(f"checkpoint_dir is a {type(self.checkpoint_dir).__name__}; expected a path or None")

    def to_dict(self) -> dict:
        """JSON-serialisable copy (paths as strings)."""
        d = asdict(self)
        d["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        return d


@dataclass
class TrainResult:
    """What :func:`fit` measured. See the module docstring for the memory figures.

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch`` (from 1), ``train_loss``, ``val_loss``, ``val_mae``,
        ``val_rmse``, ``val_ssim`` (None without a validation set), ``time_s``
        (whole epoch), ``train_time_s``, ``steps``, ``samples``.
    best_epoch : int or None
        Epoch whose weights the model holds after ``fit`` (the last one without validation).
    best_val_loss : float or None
    trainable_params, total_params : int
    peak_memory_mb : float or None
        CUDA allocator peak, or the CPU tensor account (None if no step ran in this call).
    memory_kind : str
        "cuda_allocator" or "tensor_accounting".
    time_per_step_s, samples_per_s : float or None
        Over all epochs in ``history``, validation excluded (samples of all processes).
    wall_time_s : float
        Duration of this ``fit`` call.
    checkpoint_path : str or None
        ``best.pt`` when ``checkpoint_dir`` was given.
    """

    history: list
    best_epoch: int | None
    best_val_loss: float | None
    trainable_params: int
    total_params: int
    peak_memory_mb: float | None
    memory_kind: str
    time_per_step_s: float | None
    samples_per_s: float | None
    wall_time_s: float
    checkpoint_path: str | None
    memory_breakdown_mb: dict | None = None
    rss_peak_delta_mb: float | None = None
    device: str = "cpu"
    amp: str = "off"
    world_size: int = 1
    resumed_from_epoch: int = 0
    steps_this_call: int = 0

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return asdict(self)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the model weights of a ``best.pt`` / ``last.pt`` written by :func:`fit` into ``model``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    return model


def evaluate(model: nn.Module, dataset, batch_size: int = 64, device: str = "auto", per_sample: bool = False) -> dict:
    """OpenFWI metrics of ``model`` on ``dataset`` (normalised velocity).

    The sums behind MAE, RMSE and SSIM are accumulated batch by batch, so the
    result equals :func:`fwi_teach.metrics.evaluate_metrics` on all predictions
    at once without holding them in memory.

    Parameters
    ----------
    model : nn.Module
        Moved to ``device``; evaluated in eval mode, its previous mode restored.
    dataset : Dataset
        Items ``(seismic, velocity)``, velocity normalised to [-1, 1].
    batch_size : int, default 64
    device : str, default "auto"
    per_sample : bool, default False
        Also return every sample's metrics (:func:`fwi_teach.metrics.per_sample_metrics`),
        in dataset order, under ``"per_sample"`` (a dict of lists ``mae``, ``rmse``, ``ssim``).

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``ssim``, ``mae_mps``, ``rmse_mps`` and ``n_samples``
        (and ``per_sample``).

    Raises
    ------
    ValueError
        For an empty dataset, a bad batch size, or output / target shapes that differ.
    """
    _check_dataset(dataset, "dataset")
    _check_int("batch_size", batch_size, 1)
    dev = dist_utils.resolve_device(device)
    model.to(dev)
    loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=False)
    samples = {} if per_sample else None
    out = _metrics_from_sums(_eval_sums(model, loader, dev, F.l1_loss, samples))
    out.pop("loss")
    if per_sample:
        out["per_sample"] = samples
    return out


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 64, device: str = "auto") -> torch.Tensor:
    """Predicted normalised velocity maps.

    Parameters
    ----------
    model : nn.Module
        Moved to ``device`` and run in eval mode (previous mode restored).
    data : torch.Tensor, numpy.ndarray or Dataset
        Seismic batch ``(N, shots, time, receivers)``, or a dataset whose items
        are ``(seismic, velocity)`` pairs or seismic tensors.
    batch_size : int, default 64
    device : str, default "auto"

    Returns
    -------
    torch.Tensor
        float32 on the CPU, shape ``(N, 1, 70, 70)`` for InversionNet, in [-1, 1].

    Raises
    ------
    ValueError
        For an empty input, a tensor that is not 4-D, or a bad batch size.
    """
    _check_int("batch_size", batch_size, 1)
    data = _as_dataset(data)
    _check_dataset(data, "data")
    dev = dist_utils.resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    outs = []
    try:
        for batch in DataLoader(data, batch_size=int(batch_size), shuffle=False):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            outs.append(model(x.to(dev)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs)


def _lr_of_step(cfg, first_step, steps_per_epoch, i):
    return learning_rate(cfg, first_step + i, steps_per_epoch)


def fit(model: nn.Module, train_dataset, val_dataset=None, config: TrainConfig | None = None) -> TrainResult:
    """Train ``model`` in place; afterwards it holds the weights of the best validation epoch.

    Parameters
    ----------
    model : nn.Module
        Maps a seismic batch to velocity maps shaped like the targets. Only
        parameters with ``requires_grad=True`` are optimised. It is moved to the
        training device.
    train_dataset : Dataset
        Map-style, items ``(seismic, velocity)`` with velocity normalised to [-1, 1].
    val_dataset : Dataset, optional
        Evaluated after every epoch (loss, MAE, RMSE, SSIM); the epoch with the
        lowest validation loss is kept. Without it the last epoch is kept.
    config : TrainConfig, optional
        Defaults to ``TrainConfig()``.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For an empty dataset, a model without trainable parameters, mismatched
        output / target shapes, amp on a CPU, or a checkpoint from a different run.
    TypeError
        For a dataset without a length or items that are not pairs.
    FloatingPointError
        If the training loss becomes NaN or infinite.

    Notes
    -----
    ``fit`` seeds the global torch / numpy / ``random`` generators with
    ``config.seed``; seed before building the model to make its initial
    weights reproducible too. Without ``val_dataset``, ``best.pt`` holds the
    last epoch. When the training set leaves a last batch of a single sample, that
    sample is skipped in that epoch (BatchNorm cannot normalise one value per channel at
    InversionNet's 1 x 1 bottleneck); the shuffled order changes which one.
    An interrupted run loses only its unfinished epoch: call ``fit``
    again with the same ``checkpoint_dir`` (and settings) to continue.
    """
    cfg = config if config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config is a {type(cfg).__name__}; expected a TrainConfig")
    cfg.validate()
    _check_dataset(train_dataset, "train_dataset")
    if val_dataset is not None:
        _check_dataset(val_dataset, "val_dataset")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter with requires_grad=True; unfreeze some layers or apply LoRA "
                         "adapters (fwi_teach.lora.apply_lora) before fit")
    wall0 = time.perf_counter()
    ctx = dist_utils.setup(cfg.device)
    device = ctx.device
    amp_dtype = _amp_dtype(cfg.amp, device)
    show = bool(cfg.progress) and ctx.is_main
    _seed_everything(cfg.seed)
    model.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    train_dataset = _preloaded(train_dataset, cfg.preload, ctx.is_distributed, "train_dataset", show)
    val_dataset = _preloaded(val_dataset, cfg.preload, ctx.is_distributed, "val_dataset", show)
    ckpt_dir, last_path, best_path, state = _open_checkpoint_dir(cfg, model, ctx)
    net = model
    if ctx.is_distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    history, start_epoch, best_val, best_epoch, best_state = _restore_run(state, optimizer, scaler, best_path,
                                                                          val_dataset is not None)

    loss_fn = _loss_fn(cfg.loss)
    sampler = DistributedSampler(train_dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed)
    # A last batch of one sample would break BatchNorm at InversionNet's 1 x 1 bottleneck: drop it.
    drop_single = len(sampler) % cfg.batch_size == 1 and len(sampler) > 1
    steps_per_epoch = len(sampler) // cfg.batch_size if drop_single else math.ceil(len(sampler) / cfg.batch_size)
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    val_loader = None
    if val_dataset is not None:
        val_loader = DataLoader(val_dataset, batch_size=cfg.eval_batch_size or cfg.batch_size,
                                sampler=dist_utils.ShardSampler(len(val_dataset), ctx.rank, ctx.world_size),
                                num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    meter = _SavedTensorMeter(model)
    breakdown = None
    steps_this_call = 0
    rss = _RssMeter().start()
    epoch_bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="epochs", disable=not show)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.perf_counter()
            sampler.set_epoch(epoch)
            loader = DataLoader(train_dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=drop_single,
                                num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            with tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                      disable=not show) as bar:
                lr_of = functools.partial(_lr_of_step, cfg, epoch * steps_per_epoch, steps_per_epoch)
                loss_sum, n, steps, train_s, bd = _train_epoch(net, loader, optimizer, scaler, loss_fn, amp_dtype,
                                                               device, cfg.max_steps_per_epoch, bar,
                                                               meter if breakdown is None else None, lr_of)
            breakdown = breakdown or bd
            steps_this_call += steps
            loss_sum, n = dist_utils.all_reduce_sum([loss_sum, n], ctx)
            train_s = dist_utils.all_reduce_max(train_s, ctx)
            train_loss = loss_sum / n
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss is {train_loss} in epoch {epoch + 1}; lower the learning "
                                         f"rate (lr={cfg.lr}) or check the data for NaN / unnormalised values")
            dist_utils.broadcast_buffers(model, ctx)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": None, "val_mae": None,
                     "val_rmse": None, "val_ssim": None}
            improved = val_loader is None
            if val_loader is not None:
                m = _metrics_from_sums(dist_utils.all_reduce_sum(_eval_sums(model, val_loader, device, loss_fn),
                                                                 ctx))
                entry.update(val_loss=m["loss"], val_mae=m["mae"], val_rmse=m["rmse"], val_ssim=m["ssim"])
                improved = m["loss"] < best_val
                if improved:
                    best_val, best_state = m["loss"], _cpu_state(model)
            if improved:
                best_epoch = epoch + 1
            entry.update(time_s=time.perf_counter() - t_epoch, train_time_s=train_s, steps=steps, samples=int(n))
            history.append(entry)
            if ckpt_dir is not None and ctx.is_main:
                best_ckpt, last_ckpt = _checkpoints(model, optimizer, scaler, cfg, ctx, history, best_epoch,
                                                    best_val, improved)
                if best_ckpt is not None:
                    _atomic_save(best_ckpt, best_path)
                _atomic_save(last_ckpt, last_path)
            dist_utils.barrier(ctx)
            epoch_bar.update(1)
            epoch_bar.set_postfix(train=f"{train_loss:.4f}", **({} if entry["val_loss"] is None
                                                                else {"val": f"{entry['val_loss']:.4f}"}))
    finally:
        epoch_bar.close()
        rss_mb = rss.stop()
    if best_state is not None:
        model.load_state_dict(best_state)
    peak, kind = _peak_memory(device, breakdown)
    time_per_step, samples_per_s = _throughput(history)
    return TrainResult(
        history=history, best_epoch=best_epoch, best_val_loss=None if best_val == math.inf else best_val,
        trainable_params=sum(p.numel() for p in params), total_params=sum(p.numel() for p in model.parameters()),
        peak_memory_mb=peak, memory_kind=kind, time_per_step_s=time_per_step, samples_per_s=samples_per_s,
        wall_time_s=time.perf_counter() - wall0,
        checkpoint_path=str(best_path) if best_path is not None and best_path.exists() else None,
        memory_breakdown_mb=breakdown, rss_peak_delta_mb=rss_mb, device=str(device),
        amp={None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype],
        world_size=ctx.world_size, resumed_from_epoch=start_epoch, steps_this_call=steps_this_call)
