"""Simulation engines: which implementation of the time loop runs, and the compiled ones' set-up.

Three engines run the update of :mod:`fwi_teach.physics.stencil` without gradients:
the C kernel (:mod:`fwi_teach.physics.native`, CPU, float32), the step fused by
``torch.compile`` (:func:`segment_compiled`, CUDA or CPU without the C kernel)
and the eager in-place loop. :func:`simulation_engine` names the one
:func:`fwi_teach.physics.simulate` uses; failures are remembered in :data:`STATE`
so that a process warns once and then takes the next engine.
"""

from __future__ import annotations

import torch

from ..runtime import compile_disabled, compile_unavailable, exception_summary, inductor_cache_dir
from . import native
from .stencil import step_fused

__all__ = ["compiled_step_available", "simulation_engine", "native_ok", "segment_compiled", "STATE"]

#: Per-process state: the compiled step, and flags for failed compilations and given warnings.
STATE: dict = {}


def compiled_step_available(device="cpu") -> bool:
    """Whether :func:`~fwi_teach.physics.simulate` will try a compiled time step on ``device`` by default.

    False when ``FWI_TEACH_COMPILE=0`` is set, when a compilation failed earlier in this
    process, on CPU without a C or C++ compiler, and on CUDA without Triton. (A True
    answer is a precondition; the first compilation itself can still fail, and then
    :func:`~fwi_teach.physics.simulate` falls back to the eager path.)
    """
    if compile_disabled() or STATE.get("failed"):
        return False
    if torch.device(device).type == "cpu" and native.available():  # the C kernel: a C compiler was enough
        return True
    return compile_unavailable(device) is None


def simulation_engine(device="cpu", requires_grad: bool = False) -> str:
    """The engine :func:`~fwi_teach.physics.simulate` uses by default for float32 models on ``device``.

    One of ``"C kernel"`` (:mod:`fwi_teach.physics.native`), ``"torch.compile"`` or
    ``"eager"`` (always, when gradients are needed).
    """
    if requires_grad or not compiled_step_available(device):
        return "eager"
    if torch.device(device).type == "cpu" and native.available():
        return "C kernel"
    return "torch.compile"


def native_ok(v: torch.Tensor) -> bool:
    """Whether the C kernel runs this float32 CPU batch; warns once if it cannot be built."""
    if v.device.type != "cpu" or v.dtype != torch.float32:
        return False
    if native.available():
        return True
    if not STATE.get("native_warned"):
        import warnings

        STATE["native_warned"] = True
        warnings.warn(f"fwi_teach.physics: the C time step is not available here ({native.load_error()}); "
                      f"trying torch.compile, else the eager path (set FWI_TEACH_COMPILE=0 to skip the attempts)",
                      stacklevel=3)
    return False


def segment_compiled(pp, p, coef_a, coef_b, coef_r, src_amp, wav, src_index, rec_idx):
    """:func:`~fwi_teach.physics.stencil.segment_in_place` with the update fused by ``torch.compile``."""
    if "step" not in STATE:
        inductor_cache_dir()
        STATE["step"] = torch.compile(step_fused, dynamic=False)
    step = STATE["step"]
    n, s, hh, ww = p.shape
    records = torch.empty((n, s, len(wav), rec_idx.numel()), dtype=p.dtype, device=p.device)
    for it, w_t in enumerate(wav):
        new = step(p, pp, coef_a, coef_b, coef_r)
        flat = new.view(n, s, hh * ww)
        flat.index_put_(src_index, src_amp * w_t, accumulate=True)
        records[:, :, it] = flat[:, :, rec_idx]
        pp, p = p, new
    return pp, p, records


def compile_failed(exc: Exception) -> None:
    """Remember that compiling failed in this process and say so in one line."""
    import warnings

    STATE["failed"] = True
    warnings.warn(f"fwi_teach.physics: the compiled time step is not available here ({exception_summary(exc)}); "
                  f"using the eager path (set FWI_TEACH_COMPILE=0 to skip the attempt)", stacklevel=3)
