"""Training engine: ``fit``, ``evaluate`` and ``predict`` for velocity-map regression.

Defaults (:class:`~fwi_teach.training.config.TrainConfig`) follow the recipe behind
OpenFWI's published InversionNet results: AdamW, learning rate 1e-4, weight decay 1e-4,
constant learning rate, L1 loss on the normalised velocity (``"l1+l2"`` adds the mean
squared error, as OpenFWI's ``train.py`` does by default). Only parameters with
``requires_grad=True`` are optimised, so a model prepared with
:func:`fwi_teach.models.apply_lora` trains its adapters only (its frozen BatchNorm
layers stay in eval mode under ``model.train()``).

What :func:`fit` takes care of
------------------------------
* Compiled step: runs of at least ``compiled.COMPILE_MIN_STEPS`` optimiser steps go through
  ``torch.compile`` where a compiler is there, with an eager fallback (``compile``;
  :mod:`fwi_teach.training.compiled`).
* Optimiser: AdamW's fused kernel (one pass over all parameters) where torch has one.
* Mixed precision: on CUDA bf16 autocast where supported, else fp16 with a
  gradient scaler; on CPU bf16 when the step is compiled on a CPU with bf16 in
  hardware, else float32 (``amp="off"`` forces float32 everywhere).
* Data in memory: small data sets are read once before the first epoch
  (``preload``), so epochs do not re-read, decimate and normalise every item.
* Memory layout: for an eager step on a CPU the batches are laid out channels-last
  (NHWC), where oneDNN's convolutions run faster; a compiled step takes them contiguous,
  where inductor's fused batch norms over few channels run faster (``memory_format``).
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
  ``DistributedDataParallel`` (see :mod:`fwi_teach.training.distributed`).
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
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..runtime import load_tensors
from . import distributed as dist_utils
from .config import TrainConfig, TrainResult, _check_int, learning_rate
from .checkpoints import (_atomic_save, _checkpoints, _cpu_state, _open_checkpoint_dir, _restore_run, _resumed_numerics,
                          _seed_everything)
from .loop import (_adamw, _amp_dtype, _as_dataset, _check_dataset, _eval_sums, _loss_fn, _metrics_from_sums,
                   _peak_memory, _preloaded, _RssMeter, _throughput, _train_epoch, batch_memory_format)
from .memory import SavedTensorMeter as _SavedTensorMeter
from .compiled import TrainingForward, use_compile

__all__ = ["fit", "evaluate", "predict", "load_weights"]

def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the model weights of a ``best.pt`` / ``last.pt`` written by :func:`fit` into ``model``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    fwi_teach.runtime.CorruptFileError
        If the file is damaged or was not written by :func:`fit` / ``torch.save``.
    """
    state = load_tensors(path, fix="delete it and train the model again")
    model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    return model


def evaluate(model: nn.Module, dataset, batch_size: int = 64, device: str = "auto", per_sample: bool = False) -> dict:
    """OpenFWI metrics of ``model`` on ``dataset`` (normalised velocity).

    The sums behind MAE, RMSE and SSIM are accumulated batch by batch, so the
    result equals :func:`fwi_teach.evaluation.metrics.evaluate_metrics` on all predictions
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
        Also return every sample's metrics (:func:`fwi_teach.evaluation.metrics.per_sample_metrics`),
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
                         "adapters (fwi_teach.models.lora.apply_lora) before fit")
    wall0 = time.perf_counter()
    ctx = dist_utils.setup(cfg.device)
    device = ctx.device
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

    loss_fn = _loss_fn(cfg.loss)
    sampler = DistributedSampler(train_dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed)
    # A last batch of one sample would break BatchNorm at InversionNet's 1 x 1 bottleneck: drop it.
    drop_single = len(sampler) % cfg.batch_size == 1 and len(sampler) > 1
    steps_per_epoch = len(sampler) // cfg.batch_size if drop_single else math.ceil(len(sampler) / cfg.batch_size)
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    optimizer = _adamw(params, cfg.lr, cfg.weight_decay)
    compiled = use_compile(cfg.compile, device, cfg.epochs * steps_per_epoch, ctx.is_distributed)
    amp_dtype = _amp_dtype(cfg.amp, device, compiled)
    layout = batch_memory_format(cfg.memory_format, device, compiled)
    compiled, amp_dtype, layout = _resumed_numerics(state, cfg, compiled, amp_dtype, layout, device, ctx)
    compiled = compiled and use_compile("on", device, 0, ctx.is_distributed)  # never where it cannot run
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    history, start_epoch, best_val, best_epoch, best_state = _restore_run(state, optimizer, scaler, best_path,
                                                                          val_dataset is not None)
    forward = TrainingForward(net, cfg.batch_size if compiled else None)
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
                loss_sum, n, steps, train_s, bd = _train_epoch(forward, loader, optimizer, scaler, loss_fn, amp_dtype,
                                                               device, cfg.max_steps_per_epoch, bar,
                                                               meter if breakdown is None else None, lr_of,
                                                               layout)
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
                                                    best_val, improved, (compiled, amp_dtype, layout))
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
        amp={None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype], compiled=forward.is_compiled,
        world_size=ctx.world_size, resumed_from_epoch=start_epoch, steps_this_call=steps_this_call)
