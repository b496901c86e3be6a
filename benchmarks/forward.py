"""Forward-modelling benchmark: throughput, boundary accuracy, data range, generation time.

Prints, in one run on the same OpenFWI-style models:

1. samples per second of ``fwi_teach.physics.simulate`` with the thin boundary for
   each engine (the default -- the C kernel on CPU --, eager PyTorch, torch.compile)
   and of ``deepwave.scalar`` at matching settings (same grid, survey, wavelet,
   4th-order space, 1 ms steps) -- target: the default at least 2x deepwave's rate;
   the records of every engine against the eager ones; the bytes per second the
   stencil moves against a large and a cache-resident array copy (the machine's
   limit); samples per minute on CUDA (target >= 5,000);
2. how far each boundary's records are from a reflection-free reference (the model
   padded by 230 cells), and from each other -- the figure quoted in the docs;
3. min / max of simulated records per family next to OpenFWI's published
   ``data_min`` / ``data_max`` (target: within 20 %);
4. the time to generate a 2,000-sample set of one family on disk with the thin
   boundary (target: under 3 minutes on 2 CPU cores).

Usage::

    python benchmarks/forward.py            # full run (about 10 minutes on 2 CPU cores)
    python benchmarks/forward.py --quick    # fewer models; generation time extrapolated
    python benchmarks/forward.py --device cuda
    python benchmarks/forward.py --record   # also write the rate into fwi_teach/experiments/benchmark_rates.json

deepwave is a test/benchmark dependency only (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from fwi_teach.data import FAMILIES, generate_dataset, velocity_models
from fwi_teach.data.normalize import DATA_BOUNDS
from fwi_teach.physics import Acquisition, simulate


def _rate(fn, n_samples: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return n_samples / (time.perf_counter() - t0), out


def _deepwave_records(v: np.ndarray, acq: Acquisition, device) -> np.ndarray:
    """All models in one deepwave call: each model's shots become deepwave shots."""
    import deepwave

    n = v.shape[0]
    s = acq.n_shots
    vt = torch.as_tensor(v[:, 0] if v.ndim == 4 else v, device=device).repeat_interleave(s, dim=0)
    src = torch.tensor(acq.source_locations, device=device).view(1, s, 1, 2).expand(n, s, 1, 2).reshape(n * s, 1, 2)
    rec = torch.tensor(acq.receiver_locations, device=device)[None].expand(n * s, acq.n_receivers, 2).contiguous()
    w = torch.as_tensor(acq.wavelet(), device=device).view(1, 1, -1).expand(n * s, 1, acq.nt).contiguous()
    out = deepwave.scalar(vt, acq.dx_m, acq.dt_s, source_amplitudes=w, source_locations=src.contiguous(),
                          receiver_locations=rec, accuracy=4, pml_width=20, pml_freq=acq.freq_hz,
                          max_vel=4500.0, courant_number=0.85)
    return out.receiver_amplitudes.view(n, s, acq.n_receivers, acq.nt).transpose(2, 3).cpu().numpy()


def _engine(name: str):
    """Force one engine of ``simulate`` for the calls inside the context: "default", "torch.compile" or "eager"."""
    import contextlib

    from fwi_teach.physics import engines

    @contextlib.contextmanager
    def ctx():
        saved = engines.native_ok
        if name == "torch.compile":
            engines.native_ok = lambda v: False
        try:
            yield {"eager": False}.get(name, None)
        finally:
            engines.native_ok = saved
    return ctx()


def _copy_bandwidth(n_bytes: int, repeats: int) -> float:
    """Bytes moved per second (read + write) by ``dst.copy_(src)`` of ``n_bytes``, best of ``repeats``."""
    src = torch.rand(n_bytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * n_bytes / best


def throughput(models: np.ndarray, device, n_openfwi: int) -> dict:
    from fwi_teach.physics import BOUNDARIES, HALO, simulation_engine

    acq = Acquisition.openfwi()
    n = models.shape[0]
    print(f"\n== 1. throughput on {n} models (OpenFWI survey: 5 shots x 1000 steps, 70 x 70), device {device} ==")
    print(f"default engine here: {simulation_engine(device)}")
    rates, records = {}, {}
    engines = ["default", "eager"] + (["torch.compile"] if device.type == "cpu" else [])
    for name in engines:
        with _engine(name) as compile:
            try:
                simulate(models[:2], acq, device=device, compile=compile)  # warm-up (builds / compiles)
                rates[name], records[name] = _rate(lambda: simulate(models, acq, boundary="thin", device=device,
                                                                     compile=compile), n)
            except Exception as exc:  # noqa: BLE001 -- report, go on with the others
                print(f"{name}: failed ({type(exc).__name__}: {exc})")
    with _engine("default") as compile:
        rate_ofwi, ofwi = _rate(lambda: simulate(models[:n_openfwi], acq, boundary="openfwi", device=device),
                                n_openfwi)
    try:
        _deepwave_records(models[:1], acq, device)  # warm-up
        rate_dw, dw = _rate(lambda: _deepwave_records(models, acq, device), n)
    except ImportError:
        rate_dw, dw = float("nan"), None
    label = {"default": f"simulate thin, {simulation_engine(device)}", "eager": "simulate thin, eager",
             "torch.compile": "simulate thin, torch.compile"}
    for name, rate in rates.items():
        print(f"{label[name]:<34}: {rate:8.2f} samples/s  ({1 / rate:.4f} s per sample; {rate / rate_dw:.2f}x deepwave)")
    print(f"{'simulate openfwi boundary, default':<34}: {rate_ofwi:8.2f} samples/s  ({n_openfwi} models)")
    print(f"{'deepwave.scalar (pml 20)':<34}: {rate_dw:8.2f} samples/s  ({1 / rate_dw:.4f} s per sample)")
    ratio = rates["default"] / rate_dw
    print(f"default engine / deepwave         : {ratio:.2f}x  (target >= 2: {'PASS' if ratio >= 2 else 'FAIL'})")
    if device.type == "cuda":
        per_min = rates["default"] * 60
        print(f"thin boundary on GPU: {per_min:.0f} samples per minute (target >= 5000: "
              f"{'PASS' if per_min >= 5000 else 'FAIL'})")
    # how close to the machine: bytes a time step must move per cell (read p, p-, a, b, r; write p+)
    cells = (70 + 2 * BOUNDARIES["thin"] + 2 * HALO) ** 2
    moved = rates["default"] * acq.n_shots * acq.nt * cells * 6 * 4
    if device.type == "cpu":
        dram = _copy_bandwidth(512 * 2**20, 5)
        cache = _copy_bandwidth(256 * 2**10, 2000)
        print(f"stencil traffic (6 floats per cell-step, as if every cell were updated): {moved / 1e9:.1f} GB/s; large array copy (512 MiB): "
              f"{dram / 1e9:.1f} GB/s ({moved / dram:.2f}x); cache-resident copy (256 KiB): {cache / 1e9:.1f} GB/s "
              f"({moved / cache:.2f}x)")
    base = records.get("eager")
    for name, rec in records.items():
        if name != "eager" and base is not None:
            print(f"{name} vs eager records: max |difference| / max |record| = "
                  f"{np.abs(rec - base).max() / np.abs(base).max():.2e}")
    thin = records["default"]
    if dw is not None:
        # deepwave injects with another scale and the opposite sign, and records sample t before
        # injecting source sample t (ours: after), so our sample t is its sample t + 1
        a, b = thin[..., :-1, :].ravel(), dw[..., 1:, :].ravel()
        scale = float(a @ b / (b @ b))
        rel = np.linalg.norm(a - scale * b) / np.linalg.norm(a)
        print(f"waveform check vs deepwave: fitted scale {scale:.3g}, relative L2 difference {rel:.3f}")
    rel_b = np.linalg.norm(thin[:n_openfwi] - ofwi) / np.linalg.norm(ofwi)
    print(f"thin vs openfwi records: relative L2 difference {rel_b:.4f}")
    out = {"samples_per_s": {k: float(v) for k, v in rates.items()}, "deepwave_samples_per_s": float(rate_dw),
           "vs_deepwave": float(ratio), "models": int(n)}
    if device.type == "cpu":
        out.update(stencil_GBps=moved / 1e9, copy_GBps=dram / 1e9, cache_copy_GBps=cache / 1e9)
    return out


def boundary_accuracy() -> dict:
    print("\n== 2. absorbing boundaries against a reflection-free reference (layered model) ==")
    v = np.full((70, 70), 1500.0, np.float32)
    for z, val in ((15, 2000), (30, 2600), (45, 3300), (58, 4200)):
        v[z:] = val
    pad = 230  # waves need > 1 s to reach the padded edge and come back
    acq = Acquisition.openfwi()
    big = Acquisition(tuple((r + pad, c + pad) for r, c in acq.source_locations),
                      tuple((r + pad, c + pad) for r, c in acq.receiver_locations))
    ref = simulate(np.pad(v, pad, mode="edge"), big)
    out = {}
    for boundary in ("openfwi", "thin"):
        d = simulate(v, acq, boundary=boundary)
        out[boundary] = float(np.linalg.norm(d - ref) / np.linalg.norm(ref))
        print(f"{boundary:>8}: relative L2 difference from the reference {out[boundary]:.4f}")
    return out


def data_range(n_per_family: int, device) -> None:
    print(f"\n== 3. record range vs OpenFWI's published bounds ({n_per_family} models per family, thin boundary) ==")
    print(f"{'family':<14}{'min':>9}{'pub. min':>10}{'max':>9}{'pub. max':>10}   within 20 %")
    for fam in FAMILIES:
        d = simulate(velocity_models(fam, n_per_family, seed=123), device=device)
        lo, hi = DATA_BOUNDS[fam]
        ok = abs(d.min() - lo) <= 0.2 * abs(lo) and abs(d.max() - hi) <= 0.2 * abs(hi)
        print(f"{fam:<14}{d.min():9.2f}{lo:10.2f}{d.max():9.2f}{hi:10.2f}   {'yes' if ok else 'NO'}")


def generation_time(n: int, device, target_n: int = 2000, target_s: float = 180.0, record: bool = False) -> dict:
    print(f"\n== 4. generating a set of one family on disk (thin boundary, {n} samples, default engine) ==")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset("curvefault-a", f"{tmp}/cfa", n_train=n, n_val=0, samples_per_file=min(n, 500),
                         device=device, progress=False)
        dt = time.perf_counter() - t0
    est = dt * target_n / n
    label = "measured" if n == target_n else f"extrapolated from {n}"
    if record:
        from fwi_teach.experiments.costs import record_benchmark_rates

        print(f"recorded {dt / n:.4f} s per sample in {record_benchmark_rates(device.type, sim_s_per_sample=dt / n)}")
    print(f"{n} samples in {dt:.1f} s ({n / dt:.1f} samples/s); {target_n} samples: {est / 60:.2f} min ({label}); "
          f"target < {target_s / 60:.0f} min: {'PASS' if est < target_s else 'FAIL'}")
    return {"generation_samples": n, "generation_min_per_2000": est / 60, "generation_measured": n == target_n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer models; extrapolate the generation time")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--record", action="store_true",
                        help="write the figures into fwi_teach/experiments/benchmark_rates.json (the cost model's "
                             "constants) and the README's performance section")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    n = 8 if args.quick else 32
    if device.type == "cuda":
        n *= 16
    models = np.concatenate([velocity_models(f, n // 4, seed=7) for f in ("flatvel-a", "curvevel-b", "flatfault-b", "style-a")])
    figures = throughput(models, device, n_openfwi=max(2, n // 8))
    figures["boundary_error"] = boundary_accuracy()
    data_range(4 if args.quick else 16, device)
    figures.update(generation_time(200 if args.quick else 2000, device, record=args.record))
    if args.record:
        from fwi_teach.experiments.costs import record_benchmark_rates
        from fwi_teach.experiments.report import update_performance_block

        record_benchmark_rates(device.type, forward=figures)
        print(f"recorded these figures; README performance section "
              f"{'updated' if update_performance_block() else 'already up to date'}")


if __name__ == "__main__":
    main()
