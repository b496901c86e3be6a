"""The no-gradient time loop of :func:`fwi_teach.physics.simulate` in C, for CPU data generation.

The kernel (``native.c``, about 100 lines) advances each shot's wavefield
through all time steps on its own, so a field and its coefficients stay in the
core's cache and no step waits for another; it updates only the box the wave has
reached (see :data:`NEGLIGIBLE`) and flushes denormals on its own threads. It is
built once per machine with the system C compiler (``$CC``, cc, gcc or clang) into ``$FWI_TEACH_CACHE/native/``
and loaded with :mod:`ctypes`; no PyTorch headers are involved, so the build takes
about a second. Python runs it on one thread per core, each thread on its own
fields: the records do not depend on the thread count or the batch size.

Use it through :func:`fwi_teach.physics.simulate` (the default on CPU when it
builds); :func:`available` says whether it can, ``FWI_TEACH_COMPILE=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["available", "advance", "library_path", "load_error"]

_SOURCE = Path(__file__).with_name("native.c")

#: Values below this fraction of a shot's peak source amplitude, at the edge of the
#: region the wave has reached, are set to zero and not computed further until the
#: wave gets there (about 20 % faster; records change by far less than float32 rounding).
NEGLIGIBLE = 1e-9
_STATE: dict = {}


def _compiler() -> str | None:
    names = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
    return next((shutil.which(c) for c in names if c and shutil.which(c)), None)


def _cache_root() -> Path:
    from ..runtime import resolve_cache_dir

    return resolve_cache_dir() / "native"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: a library built on one CPU may not run on another."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()}|{platform.processor()}|{flags}"


def _build(cc: str) -> Path:
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + cc.encode() + _cpu_signature().encode()).hexdigest()[:16]
    target = _cache_root() / f"physics_native-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for march in (["-march=native"], []):  # some compilers (older Apple clang) reject -march=native
        fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        cmd = [cc, "-O3", *march, "-std=c99", "-shared", "-fPIC", "-o", tmp, str(_SOURCE)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            os.replace(tmp, target)  # complete or absent: never a half-written library
            return target
        os.unlink(tmp)
        errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[:300]}")
    raise RuntimeError("building the C time step failed: " + " | ".join(errors))


def _load():
    if "lib" in _STATE or "error" in _STATE:
        return _STATE.get("lib")
    try:
        cc = _compiler()
        if cc is None:
            raise RuntimeError("no C compiler found ($CC, cc, gcc or clang)")
        _STATE["path"] = _build(cc)
        lib = ctypes.CDLL(str(_STATE["path"]))
        fn = lib.fwi_advance
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        fn.argtypes = [i64] * 7 + [ptr] * 6 + [ctypes.c_float] + [ptr] * 3 + [ctypes.c_float, i64, ptr, ptr]
        fn.restype = None
        _STATE["lib"] = fn
    except Exception as exc:  # noqa: BLE001 -- any failure means: use another path
        _STATE["error"] = f"{type(exc).__name__}: {exc}"
    return _STATE.get("lib")


def library_path() -> Path | None:
    """Where the built library lies (None when it cannot be built here)."""
    _load()
    return _STATE.get("path") if "lib" in _STATE else None


def available() -> bool:
    """Whether the C kernel can run here (builds it on first use)."""
    return _load() is not None


def load_error() -> str | None:
    """Why the kernel cannot run here, or None."""
    _load()
    return _STATE.get("error")


def advance(field_shape, coef_a, coef_b, coef_r, ratio: float, src_amp, src_flat, wavelet, rec_flat,
            threads: int | None = None) -> torch.Tensor:
    """Run all time steps from rest and return the records, (N, S, nt, R).

    Parameters
    ----------
    field_shape : tuple of int
        The halo-padded field shape (N, S, H, W); the run starts from zero fields.
    coef_a, coef_b, coef_r : torch.Tensor
        Update coefficients per model, (N, 1, H - 2 halo, W - 2 halo).
    ratio : float
        ``c2 / c1`` of the 4th-order stencil.
    src_amp : torch.Tensor
        Source scale of every shot, (N, S).
    src_flat : torch.Tensor
        Flat index of each shot's source cell in the padded field, (S,).
    wavelet : torch.Tensor
        Source time function, (nt,).
    rec_flat : torch.Tensor
        Flat index of each receiver cell in the padded field, (R,).
    threads : int, optional
        Worker threads (default: ``torch.get_num_threads()``).
    """
    fn = _load()
    if fn is None:
        raise RuntimeError(f"the C time step is not available here ({load_error()})")
    n, s, hh, ww = (int(k) for k in field_shape)
    halo = (hh - coef_a.shape[-2]) // 2
    nf, nt, nr = n * s, wavelet.numel(), rec_flat.numel()
    f32 = dict(dtype=torch.float32, device="cpu")
    bufs = [torch.zeros((nf, hh, ww), **f32) for _ in range(3)]
    a, b, r = (c.detach().to(**f32).expand(n, 1, *c.shape[-2:]).contiguous() for c in (coef_a, coef_b, coef_r))
    amp = src_amp.detach().to(**f32).reshape(nf).contiguous()
    sidx = src_flat.to(torch.int64).cpu().reshape(1, s).expand(n, s).reshape(nf).contiguous()
    wav = wavelet.detach().to(**f32).contiguous()
    ridx = rec_flat.to(torch.int64).cpu().contiguous()
    records = torch.empty((nf, nt, nr), **f32)
    keep = (bufs, a, b, r, amp, sidx, wav, ridx, records)  # alive until every call returns

    def run(lo_hi):
        lo, hi = lo_hi
        fn(lo, hi, s, hh, ww, halo, nt, *(t.data_ptr() for t in bufs), a.data_ptr(), b.data_ptr(), r.data_ptr(),
           float(ratio), amp.data_ptr(), sidx.data_ptr(), wav.data_ptr(), NEGLIGIBLE, nr, ridx.data_ptr(),
           records.data_ptr())

    workers = max(1, min(int(threads or torch.get_num_threads()), nf))
    chunks = [(k * nf // workers, (k + 1) * nf // workers) for k in range(workers)]
    if workers == 1:
        run(chunks[0])
    else:  # ctypes releases the GIL during the call, so the threads run in parallel
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, chunks))
    del keep
    return records.view(n, s, nt, nr)
