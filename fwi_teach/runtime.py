"""Where the package computes and keeps its files: the device, the cache folder, the course's root.

Every part of the package resolves these three things here and nowhere else:

- :func:`resolve_device` turns ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a
  :class:`torch.device` (used by the solver, the training engine, the experiments and the book);
- :func:`resolve_cache_dir` finds the cache (``$FWI_TEACH_CACHE`` or ``~/.cache/fwi_teach``);
- :func:`find_book_root` finds the clone of the repository (the folder with ``_config.yml``);
- :func:`process_fingerprint` and :func:`process_alive` tell whether the process that left a
  lock or a temporary file is still running, also across reboots and PID reuse;
- :func:`atomic_write` and its helpers write every file of the package: a temporary name in
  the same folder, then a rename, so nothing is ever left half-written; :func:`folder_swap`
  does the same for a whole folder;
- :func:`load_tensors` reads a torch file safely (``weights_only``), and a damaged or foreign
  file raises :class:`CorruptFileError` with the file's path and what to do about it;
- :func:`compile_disabled`, :func:`cpu_compiler`, :func:`compile_unavailable`,
  :func:`inductor_cache_dir` and :func:`exception_summary` are what the compiled time step
  (:mod:`fwi_teach.physics.engines`) and the compiled training step
  (:mod:`fwi_teach.training.compiled`) both ask before they compile, and how they report a failure.

This module imports nothing else of the package, so every sub-package may use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["DEVICES", "resolve_device", "resolve_cache_dir", "find_book_root", "CorruptFileError", "load_tensors",
           "process_fingerprint", "process_alive", "TEMP_SUFFIX", "atomic_write", "atomic_write_bytes", "atomic_save_npy",
           "remove_stale_temporaries", "display_path", "folder_swap", "compile_disabled", "cpu_compiler",
           "compile_unavailable", "inductor_cache_dir", "exception_summary"]

#: Device names the command line and the book's parameters accept (``cuda:N`` too).
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device="auto", local_rank: int = 0):
    """Turn a device name into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    local_rank : int
        Under ``torchrun``, the process's local rank: a bare ``"cuda"`` becomes
        ``cuda:<local_rank mod device count>``. Leave 0 in a single process.

    Raises
    ------
    TypeError
        ``device`` is neither a string nor a :class:`torch.device`.
    ValueError
        An unknown name, or CUDA asked for on a machine (or torch build) without it.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device is a {type(device).__name__}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    name = device.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"device {device!r} is not known; use one of {DEVICES} or 'cuda:N'")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but torch {torch.__version__} sees no CUDA GPU; "
                             "use device 'cpu' or 'auto', or install a CUDA build of torch "
                             "(see FWI_TEACH_TORCH in the README)")
        dev = torch.device(name)
        if dev.index is None:
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return dev
    return torch.device("cpu")


def resolve_cache_dir(cache_dir=None) -> Path:
    """Return the absolute cache directory (it is not created).

    ``None`` or ``""`` means the environment variable ``FWI_TEACH_CACHE``, or
    ``~/.cache/fwi_teach`` when that is unset.
    """
    if cache_dir is None or str(cache_dir) == "":
        cache_dir = os.environ.get("FWI_TEACH_CACHE") or Path.home() / ".cache" / "fwi_teach"
    return Path(cache_dir).expanduser().resolve()


def find_book_root(start=None) -> Path:
    """Find the repository root, the folder holding ``_config.yml`` and ``_toc.yml``.

    Searches upwards from ``start``; ``None`` tries the working directory, then the folder
    of the installed package (an editable install). Raises FileNotFoundError if none is found.
    """
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for first in starts:
        for folder in [first.resolve(), *first.resolve().parents]:
            if (folder / "_config.yml").is_file() and (folder / "_toc.yml").is_file():
                return folder
    raise FileNotFoundError(
        f"no _config.yml and _toc.yml found above {[str(s) for s in starts]}; run from a clone "
        "of the fwi_teach repository or pass its path with --root"
    )


def display_path(path, cache_dir=None) -> str:
    """A path as a page of the book prints it, without naming the build machine's folders.

    Under the cache (``cache_dir``, resolved as :func:`resolve_cache_dir` does) it is
    written ``<cache>/...``; under the repository, relative to it; under the home folder,
    ``~/...``; anything else unchanged. ``display_path(cache)`` itself is ``<cache>`` when
    the cache is not the default ``~/.cache/fwi_teach``, which is written as such.
    """
    p = Path(path).expanduser().resolve()
    cache = resolve_cache_dir(cache_dir)
    default = (Path.home() / ".cache" / "fwi_teach").resolve()
    bases = [(cache, "~/.cache/fwi_teach" if cache == default else "<cache>")]
    try:
        bases.append((find_book_root(), "."))
    except FileNotFoundError:
        pass
    bases.append((Path.home().resolve(), "~"))
    for base, label in bases:
        if p == base or base in p.parents:
            rest = p.relative_to(base).as_posix()
            return label if rest == "." else f"{label}/{rest}"
    return str(p)


class CorruptFileError(ValueError):
    """A file the package wrote or reads is damaged (truncated, empty, altered) or is not what it should be.

    The message names the file and what to do (usually: delete it, or retrain with ``--force``).
    """


def load_tensors(path, fix: str = "delete it and run again", weights_only: bool = True):
    """``torch.load`` a checkpoint or state dict on the CPU, refusing pickled code.

    Parameters
    ----------
    path : str or Path
        The file.
    fix : str
        What the user should do if the file is damaged, for the error message.
    weights_only : bool, default True
        ``False`` lets pickled Python objects run: only for files you trust.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CorruptFileError
        If the file is empty, truncated or damaged, or holds Python objects that safe
        loading refuses; the message names the file and ``fix``.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CorruptFileError(f"{path} holds Python objects that safe loading refuses ({first}); it was not "
                               f"written by fwi_teach. If you trust the file, load it with weights_only=False; "
                               f"otherwise {fix}") from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        size = path.stat().st_size
        raise CorruptFileError(f"{path} is damaged or incomplete ({size} bytes; {type(err).__name__}: {first}); "
                               f"{fix}") from None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks after boot (Linux), or "" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name in (...) may hold spaces


def process_fingerprint(pid: int | None = None) -> str:
    """``"<pid>:<boot id>:<start time>"``: one process instance, not just a PID that may be reused.

    Where ``/proc`` is missing (not Linux) the boot id and start time are empty and
    only the PID is compared.
    """
    pid = os.getpid() if pid is None else int(pid)
    return f"{pid}:{_boot_id()}:{_start_ticks(pid)}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OSError, OverflowError):
        return False
    return True


def process_alive(fingerprint: str) -> bool:
    """Whether the process of a :func:`process_fingerprint` (or a bare PID) is still running.

    False when the PID is gone, when the machine has rebooted since (another boot id),
    or when the PID now belongs to a process that started at another time (PID reuse).
    """
    pid_text, _, rest = str(fingerprint).strip().partition(":")
    if not pid_text.isdigit() or int(pid_text) <= 0 or not _pid_exists(int(pid_text)):
        return False
    boot, _, start = rest.partition(":")
    if boot and _boot_id() and boot != _boot_id():
        return False
    return not (start and _start_ticks(int(pid_text)) and start != _start_ticks(int(pid_text)))


#: Suffix of the temporary files of :func:`atomic_write`.
TEMP_SUFFIX = ".partial"


def atomic_write(path, write) -> None:
    """Write a file via a temporary name in the same directory, then ``os.replace``.

    ``write(fh)`` writes to a binary file handle; the data are flushed and synced
    before the rename, and the temporary file is removed if anything fails, so
    ``path`` is either the old file or the complete new one, never half-written.
    The temporary name holds the writer's process id (:func:`remove_stale_temporaries`
    removes only those of processes that have ended), and the file gets the
    permissions ``open`` would give it (``0o666`` less the umask), so data sets and
    caches can be shared.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            _explain_write_error(err, path)
        raise


def _explain_write_error(err: OSError, path: Path) -> None:
    """Re-raise a full disk or a folder that cannot be written as an error that says so (else return)."""
    import errno

    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        raise OSError(err.errno, f"the disk is full: could not write {path} ({err.strerror}); free some space "
                                 "or write to another folder (the cache: set FWI_TEACH_CACHE)") from None
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise PermissionError(err.errno, f"cannot write {path} ({err.strerror}): the folder is read-only or "
                                         "belongs to someone else; choose a folder you can write to") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder) -> list:
    """Delete the temporary files of :func:`atomic_write` in ``folder`` whose writer has ended.

    A temporary file of a process that is still running (another writer sharing the
    folder) is left alone. Returns the removed paths.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        parts = tmp.name.split(".")  # "", name..., pid, random + suffix
        pid = next((int(x) for x in reversed(parts[:-2]) if x.isdigit()), None)
        if pid is not None and (pid == os.getpid() or process_alive(str(pid))):
            continue  # a writer that may still be at work
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_save_npy(path, array) -> None:
    """``np.save`` to ``path`` atomically (see :func:`atomic_write`; byte-deterministic)."""
    import numpy as np

    atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


@contextlib.contextmanager
def folder_swap(path):
    """Write a folder under a temporary name beside ``path`` and rename it into place.

    Use it as ``with folder_swap(final) as tmp:`` and write into ``tmp``; when the block
    ends without error, the old ``path`` (if any) is renamed aside, ``tmp`` takes its name
    and the old one is deleted, so a reader sees the old folder or the whole new one, never
    half of either. If the block raises, the temporary folder is removed and ``path`` is
    left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The folder's final place; its parent is created if needed.

    Yields
    ------
    pathlib.Path
        The empty temporary folder to write into.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- compiled code
def compile_disabled() -> bool:
    """Whether ``FWI_TEACH_COMPILE`` is set to 0 / false / no / off: then nothing of the package compiles."""
    return os.environ.get("FWI_TEACH_COMPILE", "1").strip().lower() in ("0", "false", "no", "off")


def cpu_compiler() -> str | None:
    """The C++ compiler inductor would find (``$CXX``, g++, c++ or clang++), or None."""
    return next((shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c and shutil.which(c)),
                None)


def compile_unavailable(device) -> str | None:
    """Why ``torch.compile`` cannot be tried on ``device`` here, or None when it can.

    Reasons: ``FWI_TEACH_COMPILE=0``, no C++ compiler (CPU), no Triton (CUDA), or another
    device type. None is a precondition only: the first compilation itself can still fail.
    """
    import torch

    if compile_disabled():
        return "FWI_TEACH_COMPILE=0 is set"
    kind = torch.device(device).type
    if kind == "cpu":
        return None if cpu_compiler() is not None else "no C++ compiler (g++, c++ or clang++) on the PATH"
    if kind == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    return f"torch.compile is not used on {kind} devices"


def exception_summary(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 200 characters of it), for one-line warnings."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def inductor_cache_dir() -> None:
    """Keep compiled kernels in the package cache (``$FWI_TEACH_CACHE/inductor``) unless the user chose a place.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first compiles; its on-disk
    caches then let every later process reuse the kernels of a shape it has seen.
    """
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(resolve_cache_dir() / "inductor")
