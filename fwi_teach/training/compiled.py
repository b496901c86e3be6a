"""The compiled training step: when :func:`~fwi_teach.training.fit` runs the model through ``torch.compile``.

Internal to :mod:`fwi_teach.training` (not public API). ``TrainConfig.compile`` chooses:

- ``"off"``: the eager model, always;
- ``"on"``: the model compiled by ``torch.compile`` (inductor), where a compiler is there;
- ``"auto"`` (default): as ``"on"`` for runs of at least :data:`COMPILE_MIN_STEPS` optimiser
  steps, eager for shorter ones, where the first compilation (tens of seconds for a new
  model shape; a few seconds once inductor's on-disk cache holds it) would cost more than
  it saves.

Nothing compiles when ``FWI_TEACH_COMPILE=0`` is set (the switch the simulation engines
read too), under ``torchrun`` (not measured here), on CPU without a C++ compiler or on
CUDA without Triton. Compiled kernels are kept in ``$FWI_TEACH_CACHE/inductor``
(:func:`fwi_teach.runtime.inductor_cache_dir`), so each shape compiles once per machine.

:class:`TrainingForward` is what the epoch loop calls: full batches of the configured
size go through the compiled module; the measured first step (whose saved tensors the
memory account records), a shorter last batch and evaluation run the eager one, which
shares the parameters. If compiling fails, a one-line warning says why and the run
continues eagerly.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..runtime import compile_unavailable, exception_summary, inductor_cache_dir

__all__ = ["COMPILE_MIN_STEPS", "use_compile", "TrainingForward"]

#: ``compile="auto"`` compiles runs of at least this many optimiser steps in total.
COMPILE_MIN_STEPS = 200


def use_compile(mode: str, device: torch.device, total_steps: int, distributed: bool) -> bool:
    """Whether :func:`~fwi_teach.training.fit` compiles the training forward pass (see the module docstring)."""
    if mode == "off" or distributed or compile_unavailable(device) is not None:
        return False
    return mode == "on" or total_steps >= COMPILE_MIN_STEPS


class TrainingForward:
    """Calls the model compiled for full batches, eagerly for the rest; falls back to eager if compiling fails.

    Parameters
    ----------
    module : nn.Module
        The model (or its DistributedDataParallel wrapper) being trained.
    batch_size : int or None
        The batch size that goes through the compiled module; None: never compile.
    """

    def __init__(self, module: nn.Module, batch_size: int | None):
        self.eager = module
        self.batch_size = batch_size
        self.compiled = None
        if batch_size is not None:
            inductor_cache_dir()
            self.compiled = torch.compile(module, dynamic=False)

    @property
    def is_compiled(self) -> bool:
        """Whether full batches still go through the compiled module (False after a failed compilation)."""
        return self.compiled is not None

    def __call__(self, x: torch.Tensor, eager: bool = False) -> torch.Tensor:
        if self.compiled is None or eager or x.shape[0] != self.batch_size:
            return self.eager(x)
        try:
            return self.compiled(x)
        except Exception as exc:  # a failed compilation runs nothing; the eager module then computes the batch
            self.compiled = None
            warnings.warn(f"fwi_teach.training: the compiled training step is not available here "
                          f"({exception_summary(exc)}); training eagerly (TrainConfig(compile='off') "
                          f"or FWI_TEACH_COMPILE=0 skips the attempt)", stacklevel=2)
            return self.eager(x)
