"""Training benchmark: FFT vs LoRA step time, throughput and memory, and the overhead of ``fit``.

Prints, in one run:

0. samples per second of ``fit`` at the cpu profile (TrainConfig defaults: data preloaded,
   the step compiled by ``torch.compile`` on contiguous batches and, on a CPU with bf16 in
   hardware, bf16 autocast; with ``memory_format="channels_last"``, the same step on
   channels-last batches; with ``compile="off"``, the eager float32 step on channels-last
   batches; with ``amp="off"``, the compiled float32 step; with ``compile="off"`` and
   ``memory_format="contiguous"``) and of a plain PyTorch loop
   (float32, a DataLoader over the same generated files), alternating runs after one
   compiled warm-up fit per precision (its time is printed: what the first compilation
   costs a process); target: ``fit`` >= 1.5x. Also the step's GFLOP/s from counted multiply-adds against a large
   ``torch.mm`` on the same threads (the machine's limit), and where the time of one training
   step goes (phases timed, kernels of the forward and backward pass profiled). ``--record`` writes the rate
   into ``fwi_teach/experiments/benchmark_rates.json``, where the cost model reads it.
1. seconds per training step (forward, backward, AdamW step) of full fine-tuning and
   of LoRA at the cpu profile (InversionNet width 0.25, input 250 x 70, rank 4,
   batch 8) and at full width (width 1.0, input 1000 x 70, rank 16, batch 8), in one
   process with the methods interleaved step by step (so a change of machine load
   hits all of them alike): the median and quartiles over the rounds after two warm-up
   rounds, and LoRA's time as a share of FFT's. LoRA is peft's, as the experiments
   use it, in the course's lean computation (``lora``) and in the textbook form
   (``lora-textbook``), and the lean from-scratch layers (``lora-scratch``). Target:
   lean LoRA <= FFT at both settings.

For the full-size InversionNet (24.4 M parameters) on synthetic in-memory tensors
(``TensorDataset``, so data loading is not measured), it then prints:

2. samples/s, seconds per step and peak memory of full fine-tuning (FFT) and of
   LoRA (``apply_lora`` with ``LoraSettings(rank=16)``) at two batch sizes, on
   the CPU and, when one is present, on the GPU. Each configuration runs in a
   fresh process (so the resident-memory figure is not flattered by memory an
   earlier run left behind) for two epochs of ``--steps`` steps; throughput is
   taken from the second, warm epoch. Memory columns: ``peak`` is
   ``TrainResult.peak_memory_mb`` (CUDA allocator peak on GPU; on CPU the tensor
   account: parameters + gradients + optimizer state + saved activations +
   batch), then that account's parts, then ``rss+``, the rise of the process's
   resident memory during ``fit``.
3. the overhead of :func:`fwi_teach.training.fit` against a bare PyTorch loop
   (same model, data, batch size and number of steps; AdamW + L1), alternating
   the two (3 runs each, 2 with ``--quick``); every run's wall time is printed
   and the overhead is given fastest-vs-fastest and median-vs-median. Target:
   under 10 %. On a busy shared machine the run-to-run spread can exceed that;
   the load average is printed with the results.

Usage::

    python benchmarks/training.py            # batch 8 and 32 (about 5 min on 2 idle CPU cores)
    python benchmarks/training.py --quick    # batch 4 and 8, fewer rounds, shorter overhead check (about 2 min)
    python benchmarks/training.py --devices cpu --batch-sizes 8 32 --steps 3
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fwi_teach.models import LoraSettings, apply_lora  # noqa: E402
from fwi_teach.training.memory import method_model, time_steps  # noqa: E402
from fwi_teach.models import InversionNet  # noqa: E402
from fwi_teach.training import TrainConfig, fit  # noqa: E402


def _data(n: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 1000, 70, generator=g)
    y = torch.tanh(torch.randn(n, 1, 70, 70, generator=g))
    return TensorDataset(x, y)


def _model(method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = InversionNet()
    if method == "lora":
        apply_lora(model, LoraSettings(rank=16))
    return model


def worker_config(device: str, method: str, batch: int, steps: int) -> dict:
    """One FFT or LoRA configuration: 2 epochs of ``steps`` steps; throughput from epoch 2."""
    data = _data(batch * steps)
    model = _model(method)
    res = fit(model, data, config=TrainConfig(epochs=2, batch_size=batch, device=device, progress=False))
    warm = res.history[-1]
    return {"device": device, "method": method, "batch": batch, "trainable": res.trainable_params,
            "total": res.total_params, "samples_per_s": warm["samples"] / warm["train_time_s"],
            "s_per_step": warm["train_time_s"] / warm["steps"], "peak_mb": res.peak_memory_mb,
            "memory_kind": res.memory_kind, "breakdown": res.memory_breakdown_mb, "rss_mb": res.rss_peak_delta_mb,
            "amp": res.amp}


#: The two settings of the step-time comparison: width, time samples, LoRA rank, batch, rounds.
STEP_SETUPS = {"cpu profile": (0.25, 250, 4, 8, 40), "full width": (1.0, 1000, 16, 8, 8)}
STEP_METHODS = {"fft": "fft", "lora": "lora-peft", "lora-textbook": "lora-peft-textbook",
                "lora-scratch": "lora-scratch"}


def worker_steps(setup: str, rounds: int) -> dict:
    """Seconds per training step of each of STEP_METHODS, interleaved round by round in this process."""
    width, length, rank, batch, _ = STEP_SETUPS[setup]
    torch.manual_seed(0)
    base = InversionNet(width_multiplier=width, input_length=length)
    models = {name: method_model(method, base, rank) for name, method in STEP_METHODS.items()}
    trainable = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in models.items()}
    times = time_steps(models, batch, (5, length, 70), rounds=rounds)
    return {"setup": setup, "batch": batch, "rank": rank, "times": times, "trainable": trainable}


def _bare_loop(model, data, batch: int, device: torch.device, epochs: int = 1) -> None:
    """The plainest correct training loop, with default settings: float32, a DataLoader over the data, AdamW, L1."""
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)
    for epoch in range(epochs):
        for x, y in DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(epoch)):
            x, y = x.to(device), y.to(device)
            loss = F.l1_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu  # CPU time is kept in the JSON only


def worker_overhead(device: str, batch: int, steps: int, repeats: int) -> dict:
    """fit vs the bare loop, alternating, fastest of ``repeats`` each (FFT, amp off for a like-for-like loop)."""
    dev = torch.device(device)
    data = _data(batch * steps)
    initial = _model("fft")
    _bare_loop(copy.deepcopy(initial), TensorDataset(*data[:batch]), batch, dev)  # warm-up step
    cfg = TrainConfig(epochs=1, batch_size=batch, device=device, amp="off", progress=False)
    bare, fitted = [], []
    for i in range(2 * repeats):  # bare, fit, fit, bare, bare, fit, ...: neither always goes first
        model = copy.deepcopy(initial)
        if (i % 2 == 0) == (i % 4 < 2):
            bare.append(_timed(lambda: _bare_loop(model, data, batch, dev)))
        else:
            fitted.append(_timed(lambda: fit(model, data, config=cfg)))
        del model
    return {"device": device, "batch": batch, "steps": steps, "bare": bare, "fit": fitted}


def step_macs(model: torch.nn.Module, input_shape) -> int:
    """Multiply-adds of one forward pass of one sample, counted from the conv / linear layers' shapes."""
    macs = []

    def hook(mod, inp, out):
        k = mod.weight[0].numel()  # in_channels / groups x kernel for Conv2d; out_channels / groups x kernel for ConvT
        macs.append((inp[0].numel() if isinstance(mod, torch.nn.ConvTranspose2d) else out.numel()) * k)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return int(sum(macs))


def mm_gflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large ``torch.mm`` on this process's threads (best of ``repeats``)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def worker_profile(repeats: int) -> dict:
    """fit at the cpu profile vs a plain loop on the same generated data (one family, on disk)."""
    import tempfile

    from fwi_teach.data.datasets import OpenFWIDataset
    from fwi_teach.data.generate import generate_dataset
    from fwi_teach.physics import Acquisition
    from fwi_teach.experiments.profiles import get_profile

    p = get_profile("cpu")
    epochs = 2
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate_dataset("curvefault-b", Path(tmp) / "cfb", n_train=p.n_train, n_val=0, seed=0,
                                samples_per_file=p.samples_per_file, acquisition=Acquisition.openfwi(nt=p.nt),
                                progress=False)
        gen_s = time.perf_counter() - t0
        data = OpenFWIDataset(root, family="curvefault-b", split="train", time_decimation=p.time_decimation)
        torch.manual_seed(0)
        initial = InversionNet(width_multiplier=p.width_multiplier, input_length=p.input_length)
        cfg = TrainConfig(epochs=epochs, batch_size=p.batch_size, lr=1e-4, device="cpu", progress=False)
        variants = {"fit": cfg, "fit_nhwc": dataclasses.replace(cfg, memory_format="channels_last"),
                    "fit_eager": dataclasses.replace(cfg, compile="off"),
                    "fit_fp32": dataclasses.replace(cfg, amp="off"),
                    "fit_contiguous": dataclasses.replace(cfg, compile="off", memory_format="contiguous")}
        times = {"plain": [], **{k: [] for k in variants}}
        cpu = torch.device("cpu")
        warm = torch.utils.data.Subset(data, range(2 * p.batch_size))
        _bare_loop(copy.deepcopy(initial), warm, p.batch_size, cpu)
        compile_s = {}  # the first compiled fit of each precision in this process (inductor's disk cache as it is)
        for amp in ("auto", "off"):
            compile_s[amp] = _timed(lambda: fit(copy.deepcopy(initial), warm, config=dataclasses.replace(
                cfg, epochs=1, compile="on", amp=amp)))[0]
        results = []
        for i in range(2 * repeats):  # plain, fits, fits, plain, ...
            model = copy.deepcopy(initial)
            if (i % 2 == 0) == (i % 4 < 2):
                times["plain"].append(_timed(lambda: _bare_loop(model, data, p.batch_size, cpu, epochs))[0])
            else:
                for name, c in variants.items():
                    model = copy.deepcopy(initial)
                    times[name].append(_timed(lambda: results.append((name, fit(model, data, config=c))))[0])
        probe = next(res for name, res in results if name == "fit")  # what the defaults chose
    macs = step_macs(initial, (5, p.input_length, 70))
    return {"samples": len(data) * epochs, **times, "compile_s": compile_s, "fit_amp": probe.amp,
            "fit_compiled": probe.compiled, "macs_per_sample": macs, "generate_s": gen_s, "n_generated": len(data),
            "mm_fp32": mm_gflops(torch.float32), "mm_bf16": mm_gflops(torch.bfloat16),
            "batch": p.batch_size, "width": p.width_multiplier, "input_length": p.input_length}


#: Profiler op names (substrings) of each kind of work in a training step; the rest is "other".
OP_KINDS = {"convolution (backward)": ("convolution_backward",),  # before the forward: its name contains it
            "convolution (forward)": ("mkldnn_convolution", "aten::_convolution", "aten::convolution"),
            "batch norm": ("batch_norm",), "leaky ReLU": ("leaky_relu",), "tanh and crop": ("tanh", "slice"),
            "loss": ("l1_loss", "abs", "sub", "sgn", "mean")}


def worker_step_profile(steps: int) -> dict:
    """Where a training step's time goes at the cpu profile: phases timed, kernels profiled.

    The phases (next batch, forward, loss, backward, optimiser step, zeroing the gradients) are
    timed with a clock around each; the forward and backward pass are also run under
    ``torch.profiler``, whose self time per operator is grouped by :data:`OP_KINDS`.
    """
    from torch.profiler import ProfilerActivity, profile

    from fwi_teach.experiments.profiles import get_profile
    from fwi_teach.training.loop import batch_memory_format

    p = get_profile("cpu")
    torch.manual_seed(0)
    model = InversionNet(width_multiplier=p.width_multiplier, input_length=p.input_length).train()
    data = TensorDataset(torch.randn(p.batch_size * steps, 5, p.input_length, 70),
                         torch.tanh(torch.randn(p.batch_size * steps, 1, 70, 70)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    fmt = batch_memory_format("auto", torch.device("cpu"))
    phases = dict.fromkeys(("next batch", "forward", "loss", "backward", "optimiser step", "zero_grad"), 0.0)
    kinds = dict.fromkeys([*OP_KINDS, "other"], 0.0)

    def run(timed: bool):
        it = iter(DataLoader(data, batch_size=p.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)))
        for _ in range(steps):
            marks = [time.perf_counter()]
            x, y = next(it)
            x = x.contiguous(memory_format=fmt)
            marks.append(time.perf_counter())
            pred = model(x)
            marks.append(time.perf_counter())
            loss = F.l1_loss(pred, y)
            marks.append(time.perf_counter())
            loss.backward()
            marks.append(time.perf_counter())
            opt.step()
            marks.append(time.perf_counter())
            opt.zero_grad(set_to_none=True)
            marks.append(time.perf_counter())
            if timed:
                for name, a, b in zip(phases, marks, marks[1:]):
                    phases[name] += b - a

    run(False)  # warm-up
    run(True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(False)
    for ev in prof.key_averages():
        if ev.key.startswith(("Optimizer.", "aten::lerp", "aten::addcdiv", "aten::addcmul", "aten::sqrt",
                              "aten::_foreach")):
            continue  # the optimiser, timed as a phase above
        kind = next((k for k, names in OP_KINDS.items() if any(n in ev.key for n in names)), "other")
        kinds[kind] += ev.self_cpu_time_total / 1e6
    return {"steps": steps, "batch": p.batch_size, "phases": phases, "kinds": kinds}


def _run_worker(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return f"{os.cpu_count()} CPUs"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4 and 8, overhead check 2 x 2 runs")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--batch-sizes", nargs=2, type=int, default=None, help="default: 8 32 (quick: 4 8)")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default 1)")
    parser.add_argument("--record", action="store_true",
                        help="write the measured training rates into fwi_teach/experiments/benchmark_rates.json (cost model)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, device, *rest = args.worker
        if kind == "profile":  # profile REPEATS
            out = worker_profile(int(device))
        elif kind == "stepprofile":  # stepprofile STEPS
            out = worker_step_profile(int(device))
        elif kind == "steps":  # steps SETUP ROUNDS
            out = worker_steps(device, int(rest[0]))
        elif kind == "config":  # config DEVICE METHOD BATCH STEPS
            out = worker_config(device, rest[0], int(rest[1]), int(rest[2]))
        else:  # overhead DEVICE BATCH STEPS REPEATS
            out = worker_overhead(device, *(int(v) for v in rest))
        print(json.dumps(out))
        return

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    batches = args.batch_sizes or ([4, 8] if args.quick else [8, 32])
    steps = args.steps or 1
    t_start = time.perf_counter()
    r = _run_worker(["profile", "2" if args.quick else "3"])
    rate = {k: r["samples"] / min(r[k]) for k in ("plain", "fit", "fit_nhwc", "fit_eager", "fit_fp32", "fit_contiguous")}
    rate_plain, rate_fit = rate["plain"], rate["fit"]
    flops_step = 3 * 2 * r["macs_per_sample"]  # forward + the two products of the backward pass
    mm_fit = r["mm_bf16"] if r["fit_amp"] == "bf16" else r["mm_fp32"]
    print(f"Training throughput at the cpu profile (InversionNet width {r['width']:g}, input 5 x {r['input_length']} "
          f"x 70, batch {r['batch']}; {r['n_generated']} CurveFault-B samples generated on disk in "
          f"{r['generate_s']:.1f} s; 2 epochs, fastest of {len(r['fit'])} alternating runs; {_load()}):")
    labels = {"plain": "plain PyTorch loop (float32, DataLoader over the files)",
              "fit": f"fit, TrainConfig defaults (compiled={r['fit_compiled']}, amp={r['fit_amp']}, NCHW)",
              "fit_nhwc": "fit, memory_format='channels_last' (NHWC)",
              "fit_eager": "fit, compile='off' (eager float32, NHWC)",
              "fit_fp32": "fit, amp='off' (compiled float32, NCHW)",
              "fit_contiguous": "fit, compile='off', memory_format='contiguous'"}
    for key, label in labels.items():
        print(f"  {label + ':':<62} {rate[key]:7.1f} samples/s (runs: {' '.join(f'{t:.1f}' for t in r[key])} s)")
    print(f"  first compiled fit in this process (compiles the step; inductor's disk cache as this machine has it): "
          f"{r['compile_s']['auto']:.1f} s (amp='auto'), {r['compile_s']['off']:.1f} s (amp='off')")
    print(f"  fit / plain loop: {rate_fit / rate_plain:.2f}x (target >= 1.5: {'PASS' if rate_fit / rate_plain >= 1.5 else 'FAIL'})"
          f"; eager float32 fit / plain loop: {rate['fit_eager'] / rate_plain:.2f}x")
    print(f"  the limit: {r['macs_per_sample'] / 1e6:.0f} M multiply-adds per sample forward, ~{flops_step / 1e9:.2f} "
          f"GFLOP per sample per training step; fit achieves {rate_fit * flops_step / 1e9:.1f} GFLOP/s, the plain loop "
          f"{rate_plain * flops_step / 1e9:.1f}; a 2048^2 torch.mm does {r['mm_fp32']:.0f} (float32) / "
          f"{r['mm_bf16']:.0f} (bf16) GFLOP/s on the same threads: fit at {rate_fit * flops_step / 1e9 / mm_fit:.0%} "
          f"of the {'bf16' if r['fit_amp'] == 'bf16' else 'float32'} matmul rate, the plain loop at "
          f"{rate_plain * flops_step / 1e9 / r['mm_fp32']:.0%} of the float32 one")
    prof = _run_worker(["stepprofile", "10" if args.quick else "20"])
    total = sum(prof["phases"].values())
    print(f"  where an eager float32 step's time goes (batch {prof['batch']}, {prof['steps']} steps, {total / prof['steps'] * 1000:.0f} ms "
          f"per step): " + ", ".join(f"{k} {v / total:.0%}" for k, v in prof["phases"].items()))
    kinds_total = sum(prof["kinds"].values())
    print("  kernels of the forward and backward pass and the loss (profiler self time): "
          + ", ".join(f"{k} {v / kinds_total:.0%}" for k, v in sorted(prof["kinds"].items(), key=lambda kv: -kv[1])))
    recorded = {f"{r['width']:g}x{r['input_length']}": 1.0 / rate_fit}
    step_shares = {"step_phases": {k: v / total for k, v in prof["phases"].items()},
                   "step_kernels": {k: v / kinds_total for k, v in prof["kinds"].items()}}
    figures = {"fit_samples_per_s": rate_fit, "plain_samples_per_s": rate_plain,
               "fit_eager_samples_per_s": rate["fit_eager"], "fit_nhwc_samples_per_s": rate["fit_nhwc"],
               "fit_fp32_samples_per_s": rate["fit_fp32"],
               "fit_contiguous_samples_per_s": rate["fit_contiguous"], "fit_amp": r["fit_amp"],
               "fit_compiled": r["fit_compiled"], "first_compile_s": r["compile_s"]["auto"], **step_shares,
               "samples": r["samples"], "plain_runs_s": r["plain"], "fit_runs_s": r["fit"],
               "gflop_per_sample": flops_step / 1e9, "mm_fp32_GFLOPs": r["mm_fp32"],
               "mm_bf16_GFLOPs": r["mm_bf16"], "width": r["width"],
               "input_length": r["input_length"], "batch": r["batch"]}
    print()
    print(f"Seconds per training step, methods interleaved in one process; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; {_load()}")
    verdicts = []
    for setup, (width, length, rank, batch, rounds) in STEP_SETUPS.items():
        rounds = max(4, rounds // 2) if args.quick else rounds
        r = _run_worker(["steps", setup, str(rounds)])
        fft = statistics.median(r["times"]["fft"])
        print(f"  {setup} (width {width:g}, input 5 x {length} x 70, rank {rank}, batch {batch}, {rounds} rounds):")
        for name, ts in r["times"].items():
            q = statistics.quantiles(ts, n=4)
            med = statistics.median(ts)
            print(f"    {name:<14} {r['trainable'][name]:>11,d} trainable  median {med:7.4f} s/step "
                  f"(quartiles {q[0]:.4f}-{q[2]:.4f})  {med / fft:5.2f}x FFT", flush=True)
        lean = statistics.median(r["times"]["lora"])
        if setup == "full width":
            recorded[f"{width:g}x{length}"] = fft / batch  # (float32 step; the cost model's second point)
        verdicts.append((setup, lean / fft))
    print(f"  target lean LoRA (peft) <= FFT per step: {'met' if all(v <= 1.0 for _, v in verdicts) else 'NOT met'} "
          f"({'; '.join(f'{s}: lora {v:.2f}x FFT' for s, v in verdicts)})")
    print()
    print(f"InversionNet width 1.0, input (5, 1000, 70); synthetic TensorDataset; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; {steps} step(s) per epoch, throughput from the warm 2nd epoch")
    print(f"{_load()} (timings on a shared machine move with its load)")
    header = (f"{'device':6} {'method':6} {'batch':>5} {'trainable':>11} {'samples/s':>9} {'s/step':>7} "
              f"{'peak MB':>8}  {'params':>6} {'grads':>6} {'optim':>6} {'activ':>7} {'batch':>6} {'rss+ MB':>8}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for batch in batches:
            for method in ("fft", "lora"):
                r = _run_worker(["config", device, method, str(batch), str(steps)])
                b = r["breakdown"]
                print(f"{device:6} {method:6} {batch:5d} {r['trainable']:11,d} {r['samples_per_s']:9.2f} "
                      f"{r['s_per_step']:7.2f} {r['peak_mb']:8.0f}  {b['parameters_and_buffers']:6.0f} "
                      f"{b['gradients']:6.0f} {b['optimizer_state']:6.0f} {b['saved_activations']:7.0f} "
                      f"{b['batch']:6.0f} {r['rss_mb']:8.0f}", flush=True)
        if device == "cuda":
            print("  (cuda: peak MB = torch.cuda.max_memory_allocated; amp as TrainConfig(amp='auto'))")
    print("  peak MB on cpu = tensor account (params + grads + optim + activ + batch); rss+ = resident-memory rise")

    batch = batches[0]
    over_steps = 2
    for device in devices:
        r = _run_worker(["overhead", device, str(batch), str(over_steps), "2" if args.quick else "3"])
        bare, fitted = sorted(t[0] for t in r["bare"]), sorted(t[0] for t in r["fit"])
        print(f"\nfit vs bare loop ({device}, FFT, batch {batch}, {over_steps} steps, {len(bare)} alternating runs "
              f"each; target < 10 %):")
        print(f"  bare loop wall s: {' '.join(f'{t:.2f}' for t in bare)}   fit wall s: "
              f"{' '.join(f'{t:.2f}' for t in fitted)}")
        print(f"  overhead: fastest vs fastest {100 * (fitted[0] - bare[0]) / bare[0]:+.1f} %, median vs median "
              f"{100 * (statistics.median(fitted) - statistics.median(bare)) / statistics.median(bare):+.1f} %")
    if args.record:
        from fwi_teach.experiments.costs import record_benchmark_rates

        from fwi_teach.experiments.report import update_performance_block

        path = record_benchmark_rates(devices[0], train_s_per_sample=recorded, training=figures)
        print(f"\nrecorded training seconds per sample {recorded} and the throughput figures in {path}; README "
              f"performance section {'updated' if update_performance_block() else 'already up to date'}")
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s; {_load()}")


if __name__ == "__main__":
    main()
