"""Training settings: :class:`TrainConfig` (what :func:`~fwi_teach.training.fit` does), the learning-rate
schedule and :class:`TrainResult` (what it measured).

Defaults follow the recipe behind OpenFWI's published InversionNet results: AdamW,
learning rate 1e-4, weight decay 1e-4, batch 256, 120 epochs, constant learning rate,
L1 loss on the normalised velocity (the command in OpenFWI's README; its ``train.py``
itself defaults to L1 + L2, ``loss="l1+l2"`` here). Every field is validated when the config is made and again
when :func:`~fwi_teach.training.fit` starts.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TrainConfig", "TrainResult", "learning_rate", "LOSSES", "AMP_MODES", "SCHEDULES", "MEMORY_FORMATS"]

#: Loss names accepted by :class:`TrainConfig`.
LOSSES = ("l1", "l2", "l1+l2")
#: Mixed-precision modes accepted by :class:`TrainConfig` (``True`` means "auto", ``False`` "off").
AMP_MODES = ("auto", "off", "bf16", "fp16")
#: Learning-rate schedules accepted by :class:`TrainConfig`.
SCHEDULES = ("constant", "cosine")
#: Memory layouts of the training batches accepted by :class:`TrainConfig`.
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

#: Values of ``TrainConfig.compile`` (True and False stand for "on" and "off").
COMPILE_MODES = ("auto", "on", "off")


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
        fp16 (with a gradient scaler); on CPU bf16 when the step is compiled (see
        ``compile``) and the CPU computes bf16 in hardware
        (:func:`fwi_teach.training.loop.cpu_has_native_bf16`), else float32: only
        the compiled step, which fuses the casts, gains from bf16 on a CPU
        (``benchmarks/training.py`` prints both). "bf16" forces it on CPU too;
        "fp16" needs CUDA.
    device : str, default "auto"
        "auto" (CUDA if available), "cpu", "cuda" or "cuda:N".
    seed : int, default 0
        Seeds torch, numpy, ``random`` and the data order.
    num_workers : int, default 0
        DataLoader worker processes.
    checkpoint_dir : str or Path, optional
        Where ``last.pt`` and ``best.pt`` go; None keeps everything in memory.
    resume : bool, default True
        Continue from ``checkpoint_dir/last.pt`` if it exists (False overwrites it). The
        run goes on with the precision, compilation and batch layout it began with
        wherever ``amp``, ``compile`` and ``memory_format`` are "auto", so a run resumed on
        another machine or by newer code computes as it started.
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
        ``fwi_teach.training.loop.preload_limit_bytes()`` (a quarter of the RAM, at most 8 GiB) and training is not
        distributed. The items and their order are the same either way.
    memory_format : {"auto", "channels_last", "contiguous"}, default "auto"
        Memory layout of the 4-D training batches. With "channels_last" (NHWC)
        oneDNN's eager convolutions and batch norms run faster on a CPU
        (``benchmarks/training.py`` prints by how much at the cpu profile, and the
        README's performance section quotes it). The model's weights keep their
        layout, so saved weights are unchanged. "auto": channels_last for an eager
        step on a CPU; contiguous for a compiled step (``compile``), where inductor's
        fused batch norms over NHWC with InversionNet's 8-channel decoder stage run
        slower than over NCHW (the benchmark prints both), and on CUDA (where
        channels_last is not measured here). Results are
        deterministic in either layout, but the two differ by float32 rounding, as any
        change of summation order makes them: AdamW turns the rounding noise of a
        gradient that should be zero (a convolution bias before batch norm) into full
        steps, so such weights, and the running means after them, drift apart.
    compile : {"auto", "on", "off"} or bool, default "auto"
        Run full training batches through ``torch.compile`` (inductor), which fuses
        batch norm, activations and casts around the convolutions. "auto": for runs of
        at least ``fwi_teach.training.compiled.COMPILE_MIN_STEPS`` optimiser steps
        (shorter ones would spend more on the first compilation than they save);
        "on": always; "off": never. Nothing compiles with ``FWI_TEACH_COMPILE=0``,
        under ``torchrun``, or without a C++ compiler (CPU) or Triton (CUDA); a failed
        compilation warns once and training goes on eagerly. Compiled kernels are
        cached across processes in ``$FWI_TEACH_CACHE/inductor``. Deterministic on
        CPU, but not bit-identical to the eager model (rounding differs).

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
    memory_format: str = "auto"
    compile: Any = "auto"

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
            raise ValueError(f"loss={self.loss!r}; expected one of {LOSSES} ('l1' is what OpenFWI's published "
                             "results used)")
        if self.amp is True:
            self.amp = "auto"
        elif self.amp is False:
            self.amp = "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}; expected one of {AMP_MODES} (or True / False)")
        if self.compile is True or self.compile is False:
            self.compile = "on" if self.compile else "off"
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile={self.compile!r}; expected one of {COMPILE_MODES} (or True / False)")
        if self.preload not in ("auto", True, False):
            raise ValueError(f"preload={self.preload!r}; expected 'auto', True or False")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format={self.memory_format!r}; expected one of {MEMORY_FORMATS}")
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
    amp : str
        The autocast precision used: "off" (float32), "bf16" or "fp16".
    compiled : bool
        Whether full training batches went through ``torch.compile`` (``TrainConfig.compile``).
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
    compiled: bool = False
    world_size: int = 1
    resumed_from_epoch: int = 0
    steps_this_call: int = 0

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return asdict(self)


def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}" + (" or None" if allow_none else ""))


# ----------------------------------------------------------------------------- small helpers
