"""One process per training run: a lock that is taken atomically and outlives no crash.

:func:`run_lock` guards a run's folder while one process trains it, so two processes that
share a cache never write the same checkpoints. On POSIX systems the lock is the
operating system's (``fcntl.flock`` on ``<folder>.lock``): taking it is atomic, and the
kernel releases it when its process ends, however it ends, so a crash, a reboot or a
reused PID can never leave a stale lock. Elsewhere the lock file itself is the lock: it is
created with its content in one step (written under a temporary name, then hard-linked
into place) and names its holder by :func:`fwi_teach.runtime.process_fingerprint` (PID,
boot id, start time), so a stale one is recognised and taken over. A second process that
asks for a run that is being trained waits, with a message, until the first is done; the
caller then finds the finished results and reads them instead of training again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from ..runtime import process_alive, process_fingerprint

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): the lock file itself is the lock
    fcntl = None

__all__ = ["run_lock", "LockTimeout"]


class LockTimeout(RuntimeError):
    """Another live process held the lock for longer than the caller would wait."""


def _try_create(lock: Path) -> bool:
    """Create ``lock`` holding this process's fingerprint, atomically; False if it exists."""
    tmp = lock.with_name(f".{lock.name}.{os.getpid()}.new")
    tmp.write_text(process_fingerprint())
    try:
        os.link(tmp, lock)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: create-exclusive, then write
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(process_fingerprint())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _holder(lock: Path) -> str | None:
    """The fingerprint in ``lock``, or None if the lock is gone."""
    try:
        return lock.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def _wait(folder, lock: Path, pid: str, start: float, wait: bool, timeout_s, poll_s: float, told: bool) -> bool:
    """Another live process holds ``lock``: raise :class:`LockTimeout` if the caller will not wait (longer),
    else say so once, sleep ``poll_s`` and return True (it has been told)."""
    if not wait or (timeout_s is not None and time.monotonic() - start >= timeout_s):
        raise LockTimeout(f"run {Path(folder).name!r} is being trained by process {pid} (lock {lock}); "
                          "wait for it to finish, or stop that process")
    if not told:
        print(f"fwi_teach: run {Path(folder).name!r} is being trained by process {pid}; waiting for it to finish "
              f"(lock {lock})", file=sys.stderr, flush=True)
    time.sleep(poll_s)
    return True


def _flock(lock: Path, folder, wait, timeout_s, poll_s):
    """Take ``fcntl.flock`` on ``lock``; returns the open file (keep it open to hold the lock)."""
    fh = open(lock, "a+")
    start, told = time.monotonic(), False
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip().split(":", 1)[0] or "another process"
            try:
                told = _wait(folder, lock, pid, start, wait, timeout_s, poll_s, told)
            except LockTimeout:
                fh.close()
                raise
    fh.seek(0)
    fh.truncate()
    fh.write(process_fingerprint())
    fh.flush()
    return fh


@contextlib.contextmanager
def run_lock(folder, wait: bool = True, timeout_s: float | None = None, poll_s: float = 2.0):
    """Hold ``<folder>.lock`` while this process trains the run in ``folder``.

    Parameters
    ----------
    folder : str or Path
        The run's folder (it need not exist yet).
    wait : bool, default True
        If another live process holds the lock, wait for it (printing one line to
        stderr); ``False`` raises at once.
    timeout_s : float, optional
        Give up waiting after this many seconds (default: wait as long as it takes).
    poll_s : float, default 2.0
        How often to look again while waiting.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    LockTimeout
        If a live process holds the lock and ``wait`` is False, or ``timeout_s`` has
        passed; the message names the process and the lock file.
    """
    lock = Path(folder).with_name(Path(folder).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is not None:
        fh = _flock(lock, folder, wait, timeout_s, poll_s)
        try:
            yield lock
        finally:
            fh.seek(0)
            fh.truncate()  # the file stays (removing it under the lock would race); its content says "free"
            fh.close()
        return
    start, told = time.monotonic(), False
    while not _try_create(lock):
        holder = _holder(lock)
        if holder is None:
            continue  # released meanwhile: try again at once
        if holder == process_fingerprint():
            raise LockTimeout(f"this process already holds {lock}; a run cannot wait for itself")
        if not process_alive(holder):
            # stale: a crash, a reboot or a reused PID. Remove it only if it is still the same stale lock.
            if _holder(lock) == holder:
                lock.unlink(missing_ok=True)
            continue
        told = _wait(folder, lock, holder.split(":", 1)[0], start, wait, timeout_s, poll_s, told)
    try:
        yield lock
    finally:
        if _holder(lock) == process_fingerprint():
            lock.unlink(missing_ok=True)
