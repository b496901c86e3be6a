"""Memory benchmark: what one training step of FFT and of LoRA keeps in memory, part by part.

Prints, in one run, for full fine-tuning (``fft``), from-scratch LoRA and peft LoRA (the
course's lean computation, and the textbook form for comparison, ``*-textbook``) on
InversionNet with LoRA on all convolutions:

* parameters, gradients, AdamW state, saved activations (unique storages, counted with
  ``saved_tensors_hooks``), the batch, and their total, in MiB;
* at width 0.25 (the cpu profile: 250 time samples, rank 4) and width 1.0 (OpenFWI's
  network: 1000 time samples, rank 16), batch 8 / 32 / 128 / 256, float32 and bfloat16
  autocast;
* batches above ``--measure-up-to`` (default 32 at width 0.25, 8 at width 1.0) are
  extrapolated per sample from the two largest measured ones, marked ``*`` (the
  activations of this fully convolutional network grow linearly with the batch; the
  printed fixed and per-sample parts show the line);
* on CUDA (when a GPU is present, or with ``--device cuda``) additionally
  ``torch.cuda.max_memory_allocated`` over the measured steps;
* which operations keep which activations (:func:`fwi_teach.training.memory.saved_tensors_by_op`,
  autograd's node names) for each method at width 0.25, batch 8: where LoRA's extra
  activations come from and what the lean path removes;
* the targets of the lean path: saved activations <= FFT's and total < FFT's at every
  width, batch and precision.

Usage::

    python benchmarks/memory.py                 # about 2 minutes on 2 CPU cores
    python benchmarks/memory.py --widths 0.25   # the small network only (seconds)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fwi_teach.training.memory import METHODS, memory_account, method_model, saved_tensors_by_op  # noqa: E402
from fwi_teach.models import InversionNet  # noqa: E402

SETUPS = {0.25: (250, 4, 32), 1.0: (1000, 16, 8)}  # width: (time samples, LoRA rank, measured up to)


def _table(rows_by_method, fft_rows) -> list:
    lines = [f"  {'method':<22} {'batch':>5} {'params':>8} {'grads':>8} {'AdamW':>8} {'saved act':>10} "
             f"{'batch':>7} {'total':>9} {'vs FFT':>7} {'cuda peak':>10}"]
    for method, rows in rows_by_method.items():
        for r, f in zip(rows, fft_rows):
            mark = "" if r.measured else "*"
            cuda = f"{r.cuda_peak_mib:10.1f}" if r.cuda_peak_mib is not None else f"{'-':>10}"
            lines.append(f"  {method:<22} {r.batch_size:>4}{mark:1} {r.parameters:8.1f} {r.gradients:8.1f} "
                         f"{r.optimizer_state:8.1f} {r.saved_activations:10.1f} {r.batch:7.1f} {r.total:9.1f} "
                         f"{r.total / f.total:6.2f}x {cuda}")
    return lines


def _line(rows) -> str:
    (b1, a1), (b2, a2) = [(r.batch_size, r.saved_activations) for r in rows[:2]]
    slope = (a2 - a1) / (b2 - b1)
    return f"{a2 - slope * b2:.1f} MiB fixed + {slope:.2f} MiB per sample"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0], choices=sorted(SETUPS))
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128, 256])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--measure-up-to", type=int, default=None,
                    help="largest batch measured directly (default: 32 at width 0.25, 8 at width 1.0; "
                         "on CUDA every batch)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if "fft" not in args.methods:
        args.methods.insert(0, "fft")
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU thread(s); MiB per "
          f"training step (AdamW, L1 loss); * = extrapolated per sample from smaller measured batches")
    failures = []
    t0 = time.perf_counter()
    for width in args.widths:
        length, rank, up_to = SETUPS[width]
        if args.measure_up_to is not None:
            up_to = args.measure_up_to
        elif args.device.startswith("cuda"):
            up_to = max(args.batch_sizes)
        torch.manual_seed(0)
        base = InversionNet(width_multiplier=width, input_length=length)
        for precision in args.precisions:
            print(f"\nwidth {width:g} (input 5 x {length} x 70, LoRA rank {rank} on every convolution), {precision}"
                  + (" autocast" if precision == "bf16" else ""))
            rows = {}
            for method in args.methods:
                model = method_model(method, base, rank)
                rows[method] = memory_account(model, args.batch_sizes, (5, length, 70), precision=precision,
                                              method=method, measure_up_to=up_to, device=args.device)
                del model
            for line in _table(rows, rows["fft"]):
                print(line)
            print("  saved activations: " + "; ".join(f"{m} {_line(r)}" for m, r in rows.items()))
            for method in ("lora-scratch", "lora-peft"):
                if method not in rows:
                    continue
                for r, f in zip(rows[method], rows["fft"]):
                    if r.saved_activations > f.saved_activations:
                        failures.append(f"width {width:g} {precision} batch {r.batch_size}: {method} saves "
                                        f"{r.saved_activations:.1f} MiB of activations > FFT's {f.saved_activations:.1f}")
                    if r.total >= f.total:
                        failures.append(f"width {width:g} {precision} batch {r.batch_size}: {method} total "
                                        f"{r.total:.1f} MiB >= FFT's {f.total:.1f}")
    if 0.25 in args.widths:
        length, rank, _ = SETUPS[0.25]
        torch.manual_seed(0)
        base = InversionNet(width_multiplier=0.25, input_length=length)
        print(f"\nsaved activations by operation (autograd node), width 0.25, batch 8, MiB (tensors):")
        for precision in args.precisions:
            for method in args.methods:
                ops = saved_tensors_by_op(method_model(method, base, rank), 8, (5, length, 70), precision=precision)
                print(f"  {precision} {method:<22} " + ", ".join(f"{k} {v['mib']:.1f} ({v['tensors']})"
                                                              for k, v in ops.items() if v["mib"] >= 0.05))
    print(f"\ntargets (lean LoRA, scratch and peft): saved activations <= FFT's and total < FFT's at every width, "
          f"batch and precision above: {'met' if not failures else 'NOT met'}")
    for f in failures:
        print("  " + f)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
