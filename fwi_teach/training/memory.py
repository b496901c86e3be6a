"""The cost of a training step: its memory, tensor by tensor, and its time, for FFT and for LoRA.

One training step holds five kinds of tensors at its peak:

==========================  ===========================================================
``parameters``              weights and buffers (LoRA: the frozen base plus the adapters)
``gradients``               one per trainable parameter (LoRA: the adapters only)
``optimizer_state``         AdamW's two moments per trainable parameter
``saved_activations``       what autograd keeps from the forward pass for the backward pass
``batch``                   the input and target tensors
==========================  ===========================================================

So full fine-tuning pays 4 bytes of gradient and 8 bytes of optimiser state for each of
its weights that LoRA freezes (12 bytes per frozen parameter in float32), and both pay for
saved activations in proportion to the batch. At large batch the activations dominate,
and LoRA saves little unless it also saves fewer activations; the lean LoRA computation
(:mod:`fwi_teach.models.lean`) does.

:class:`SavedTensorMeter` counts saved activations with
``torch.autograd.graph.saved_tensors_hooks``, each storage once and parameters
excluded; :func:`measure_step` runs one real step and returns the account;
:func:`memory_account` does it for several batch sizes, measuring small batches and
extrapolating larger ones linearly per sample (marked ``measured=False``: the
activations of this fully convolutional network grow exactly linearly with the batch);
:func:`method_model` builds the models compared in ``benchmarks/memory.py``.

The account counts tensor bytes, as ``torch.cuda.max_memory_allocated`` does, but not
temporary workspaces; on CUDA :func:`measure_step` also records that allocator peak.
:func:`saved_tensors_by_op` says which operations keep the saved activations (what the
textbook LoRA keeps that FFT does not: every frozen batch norm's input, the adapter
branch's ``A(x)``, and under autocast peft's cast copy of each adapted layer's input);
:func:`time_steps` times training steps of several models, interleaved step by step.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["COMPONENTS", "METHODS", "METHOD_LABELS", "SavedTensorMeter", "StepMemory", "tensor_bytes", "measure_step",
           "memory_account", "method_model", "FULL_WIDTH", "claim_memory_rows", "time_steps",
           "saved_tensors_by_op"]

MIB = 2.0 ** 20
#: The parts of one training step's memory, in the order figures stack them.
COMPONENTS = ("parameters", "gradients", "optimizer_state", "saved_activations", "batch")
#: Methods :func:`method_model` builds: full fine-tuning, LoRA from scratch and with peft,
#: each LoRA in the lean computation (the course's default) and in the textbook form.
METHODS = ("fft", "lora-scratch", "lora-peft", "lora-scratch-textbook", "lora-peft-textbook")
#: Short label of each method, for tables and figures.
METHOD_LABELS = {"fft": "FFT", "lora-scratch": "LoRA lean (scratch)", "lora-peft": "LoRA lean",
                 "lora-scratch-textbook": "LoRA textbook (scratch)", "lora-peft-textbook": "LoRA textbook"}


def tensor_bytes(tensors) -> int:
    """Bytes of the tensors in an iterable (non-tensors are skipped)."""
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


class SavedTensorMeter:
    """Bytes of the storages autograd saves for backward (parameters excluded, each storage once).

    Use as ``with meter.hooks(): loss = model(x)...``; ``meter.total_bytes`` then holds
    the sum. A tensor saved twice, or two views of one storage, count once; a cast copy
    (for example under autocast) is a new storage and counts.
    """

    def __init__(self, model: nn.Module):
        self.exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.sizes: dict[int, int] = {}

    def pack(self, t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr and ptr not in self.exclude:
                self.sizes[ptr] = max(self.sizes.get(ptr, 0), storage.nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    @staticmethod
    def unpack(t):
        return t

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


@dataclass
class StepMemory:
    """The memory account of one training step, in MiB (see the module docstring).

    ``measured`` is False where the saved activations and the batch were extrapolated
    from smaller batches; ``cuda_peak_mib`` is the CUDA allocator's peak over the step
    (None on CPU and where extrapolated).
    """

    method: str
    batch_size: int
    precision: str
    parameters: float
    gradients: float
    optimizer_state: float
    saved_activations: float
    batch: float
    measured: bool = True
    cuda_peak_mib: float | None = None

    @property
    def total(self) -> float:
        return sum(getattr(self, c) for c in COMPONENTS)

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def _check_precision(precision: str) -> torch.dtype | None:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16' (bfloat16 autocast), not {precision!r}")
    return torch.bfloat16 if precision == "bf16" else None


def measure_step(model: nn.Module, batch_size: int, input_shape, output_shape=(1, 70, 70), precision: str = "fp32",
                 device: str = "cpu", seed: int = 0) -> dict:
    """Run one AdamW training step (L1 loss, random data) on a copy of ``model`` and account its memory.

    Parameters
    ----------
    model : nn.Module
        Left unchanged: the step runs on a deep copy, in training mode.
    batch_size : int
    input_shape, output_shape : tuple of int
        One sample's input (InversionNet: ``(5, time samples, 70)``) and target.
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs the forward pass under bfloat16 autocast (on CPU as on CUDA).
    device : str

    Returns
    -------
    dict
        MiB per component of :data:`COMPONENTS` and ``cuda_peak_mib`` (None on CPU).
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    amp = _check_precision(precision)
    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev).train()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(int(batch_size), *input_shape, generator=gen).to(dev)
    y = torch.tanh(torch.randn(int(batch_size), *output_shape, generator=gen)).to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter; there is no training step to account")
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    meter = SavedTensorMeter(net)
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None), meter.hooks():
        loss = F.l1_loss(net(x).float(), y)
    loss.backward()
    optimizer.step()
    account = {"parameters": tensor_bytes(net.parameters()) + tensor_bytes(net.buffers()),
               "gradients": tensor_bytes(p.grad for p in net.parameters() if p.grad is not None),
               "optimizer_state": tensor_bytes(t for s in optimizer.state.values() for t in s.values()),
               "saved_activations": meter.total_bytes, "batch": tensor_bytes((x, y))}
    out = {k: v / MIB for k, v in account.items()}
    out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(dev) / MIB if dev.type == "cuda" else None
    return out


def memory_account(model: nn.Module, batch_sizes, input_shape, output_shape=(1, 70, 70), precision: str = "fp32",
                   method: str = "", measure_up_to: int = 32, device: str = "cpu") -> list:
    """:class:`StepMemory` of ``model`` at each batch size: measured up to ``measure_up_to``, extrapolated beyond.

    Beyond ``measure_up_to`` the saved activations and the batch are extrapolated along
    the line through the two largest measured batches (at least two are measured: the
    requested ones up to ``measure_up_to``, else 2 and 4 as well; batch norm in training
    mode needs two samples): a fixed part (for example LoRA's merged
    weights) plus a per-sample part. Parameters, gradients and optimiser state do not
    depend on the batch.

    Raises
    ------
    ValueError
        For an empty or non-positive batch size list, or ``measure_up_to < 2``.
    """
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch_sizes must be positive integers, not {batch_sizes!r}")
    if measure_up_to < 2:
        raise ValueError(f"measure_up_to must be at least 2 (two batches fix the per-sample line), not {measure_up_to}")
    measured_sizes = [b for b in sizes if b <= measure_up_to]
    probes = measured_sizes if len(measured_sizes) >= 2 else sorted(set(measured_sizes) | {2, 4})
    measured = {b: measure_step(model, b, input_shape, output_shape, precision, device) for b in probes}
    (b1, m1), (b2, m2) = sorted(measured.items())[-2:]
    rows = []
    for b in sizes:
        if b in measured:
            m, exact = measured[b], True
        else:
            m = dict(m2)
            for key in ("saved_activations", "batch"):
                slope = (m2[key] - m1[key]) / (b2 - b1)
                m[key] = m2[key] + slope * (b - b2)
            m["cuda_peak_mib"], exact = None, False
        rows.append(StepMemory(method, b, precision, *(m[c] for c in COMPONENTS), measured=exact,
                               cuda_peak_mib=m["cuda_peak_mib"]))
    return rows


def method_model(method: str, base: nn.Module, rank: int, alpha: float | None = None) -> nn.Module:
    """The model one of :data:`METHODS` trains, built on a copy of ``base``.

    ``"fft"`` trains every weight of ``base``; the LoRA methods adapt every convolution
    with rank ``rank`` (``alpha`` defaults to ``rank``), from scratch
    (:func:`fwi_teach.models.lora.apply_lora`) or with peft, in the lean computation or, with
    the suffix ``-textbook``, in the textbook form.
    """
    from ..models import LoraSettings, apply_lora, apply_peft_lora

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    model = copy.deepcopy(base)
    if method == "fft":
        return model.requires_grad_(True)
    settings = LoraSettings(rank=rank, alpha=float(alpha if alpha is not None else rank),
                            lean=not method.endswith("-textbook"))
    return (apply_peft_lora if method.startswith("lora-peft") else apply_lora)(model, settings)


#: The settings claim 3 is judged at besides a profile's own: OpenFWI's network and batch.
FULL_WIDTH = {"width_multiplier": 1.0, "input_length": 1000, "lora_rank": 16, "batch_size": 256}


def claim_memory_rows(settings: dict, precision: str = "fp32", device: str = "cpu") -> list:
    """The memory account of FFT and lean peft LoRA at a profile's own setting and at :data:`FULL_WIDTH`.

    ``settings`` is :meth:`fwi_teach.experiments.profiles.Profile.settings` (width, time samples,
    decimation, LoRA rank and alpha, batch size). Returns row dicts (``setting``,
    ``method``, the network, ``batch_size``, ``precision``, the MiB of each of
    :data:`COMPONENTS`, ``total``, ``measured``), as ``export_results`` writes them to
    ``memory.csv``. The profile's batch is measured; the full-width batch is
    extrapolated from batches 2 and 4 (a few seconds on a CPU).
    """
    from ..models import InversionNet

    own = {"width_multiplier": float(settings["width_multiplier"]),
           "input_length": int(settings["nt"]) // int(settings["time_decimation"]),
           "lora_rank": int(settings["lora_rank"]), "batch_size": int(settings["batch_size"])}
    rows = []
    for setting, spec in (("profile", own), ("full width", FULL_WIDTH)):
        torch.manual_seed(0)
        base = InversionNet(width_multiplier=spec["width_multiplier"], input_length=spec["input_length"])
        for method in ("fft", "lora-peft"):
            model = method_model(method, base, spec["lora_rank"])
            (acc,) = memory_account(model, [spec["batch_size"]], (5, spec["input_length"], 70), precision=precision,
                                    method=method, measure_up_to=min(spec["batch_size"], 32), device=device)
            rows.append({"setting": setting, "method": "fft" if method == "fft" else "lora", "width_multiplier":
                         spec["width_multiplier"], "input_length": spec["input_length"], "lora_rank": spec["lora_rank"],
                         "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                         **{k: v for k, v in acc.to_dict().items() if k not in ("method", "cuda_peak_mib")}})
    return rows


def time_steps(models: dict, batch_size: int, input_shape, output_shape=(1, 70, 70), rounds: int = 10,
               warmup: int = 2, seed: int = 0) -> dict:
    """Seconds per training step (forward, backward, AdamW) of several models, interleaved.

    Each round runs one step of every model in turn, so a change of machine load hits all
    of them alike; the first ``warmup`` rounds are dropped. Compare medians (wall time on
    a shared machine varies by tens of percent from step to step). The models train in
    place (on random data, with a tiny learning rate): pass copies.

    Returns
    -------
    dict
        Model name -> list of ``rounds`` step times in seconds.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(int(batch_size), *input_shape, generator=gen)
    y = torch.tanh(torch.randn(int(batch_size), *output_shape, generator=gen))
    runs = {name: (m.train(), torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-6))
            for name, m in models.items()}
    times = {name: [] for name in runs}
    for _ in range(int(rounds) + int(warmup)):
        for name, (model, optimizer) in runs.items():
            start = time.perf_counter()
            F.l1_loss(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
    return {name: t[int(warmup):] for name, t in times.items()}


def saved_tensors_by_op(model: nn.Module, batch_size: int, input_shape, precision: str = "fp32",
                        seed: int = 0) -> dict:
    """Which operations keep which activations: MiB of saved tensors per autograd node type.

    Runs one forward pass of ``model`` (training mode, random input) and walks its
    autograd graph, reading every node's saved tensors (``node._saved_*``) before the
    backward pass frees them. Each storage is counted once, for the first node found that
    keeps it; parameters are excluded. The sum equals what :class:`SavedTensorMeter`
    counts for the same pass. Names are autograd's, for example
    ``ConvolutionBackward0`` (a convolution's input and, for LoRA, its merged weight),
    ``NativeBatchNormBackward0`` (a training-mode or ``F.batch_norm`` batch norm's input)
    or ``LeakyReluBackward1`` (an in-place activation's output).

    Returns
    -------
    dict
        Node type -> ``{"mib": float, "tensors": int}``, largest first.
    """
    amp = _check_precision(precision)
    net = model.train()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(int(batch_size), *input_shape, generator=gen)
    exclude = {p.untyped_storage().data_ptr() for p in net.parameters()}
    with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        out = net(x).float().sum()
    seen, found, stack, visited = set(exclude), {}, [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                value = getattr(node, attr)
            except RuntimeError:
                continue
            for t in (value if isinstance(value, (tuple, list)) else (value,)):
                if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in seen:
                    seen.add(t.untyped_storage().data_ptr())
                    entry = found.setdefault(node.name(), {"mib": 0.0, "tensors": 0})
                    entry["mib"] += t.untyped_storage().nbytes() / MIB
                    entry["tensors"] += 1
        stack.extend(n for n, _ in node.next_functions)
    del out
    return dict(sorted(found.items(), key=lambda kv: -kv[1]["mib"]))
