"""Where the package computes and keeps its files: the device, the cache folder, the course's root.

Every part of the package resolves these three things here and nowhere else:

- :func:`resolve_device` turns ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a
  :class:`torch.device` (used by the solver, the training engine, the experiments and the book);
- :func:`resolve_cache_dir` finds the cache (``$FWI_TEACH_CACHE`` or ``~/.cache/fwi_teach``);
- :func:`find_book_root` finds the clone of the repository (the folder with ``_config.yml``).

This module imports nothing else of the package, so every sub-package may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEVICES", "resolve_device", "resolve_cache_dir", "find_book_root"]

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
