"""OpenFWI's on-disk layouts: file names, split files, npy headers, manifests.

Three layouts are recognised (FACTS.md section 2):

Vel / Style families (``flatvel-*``, ``curvevel-*``, ``style-*``)
    ``data/dataK.npy`` (seismic) and ``model/modelK.npy`` (velocity), ``K`` from 1.
Fault families (``flatfault-*``, ``curvefault-*``)
    ``seis{G}_1_{i}.npy`` and ``vel{G}_1_{i}.npy`` in the set's root, ``G`` in
    {2, 3, 4} for "A" sets and {6, 7, 8} for "B" sets, ``i`` from 0.
Split files
    One line per file pair, ``<seismic path>\\t<velocity path>``; relative paths
    are relative to the split file's directory.

Generated sets (:func:`fwi_teach.data.generate_dataset`) use the same names,
plus ``train.txt`` / ``val.txt`` and a manifest ``fwi_teach.json``. File number
``j`` (0-based, training files first) is named ``data{j+1}.npy`` /
``model{j+1}.npy`` for Vel/Style families and ``seis{G}_1_{i}.npy`` /
``vel{G}_1_{i}.npy`` with ``G = groups[j % 3]`` and ``i = j // 3`` for Fault
families (so files 0, 1, 2 are ``seis2_1_0``, ``seis3_1_0``, ``seis4_1_0``).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..runtime import atomic_write_bytes
from .families import FAMILIES

__all__ = [
    "MANIFEST_NAME",
    "FAULT_GROUPS",
    "family_layout",
    "pair_names",
    "read_npy_header",
    "file_tree",
    "read_split_file",
    "write_split_file",
    "read_manifest",
    "infer_family",
    "discover_pairs",
    "canonical_split",
    "download_holdout",
    "SPLITS",
]

MANIFEST_NAME = "fwi_teach.json"
#: Seismic-file group numbers G of the Fault families, by difficulty letter.
FAULT_GROUPS = {"a": (2, 3, 4), "b": (6, 7, 8)}
#: Official file counts and the last training file of a complete download.
_VEL_FILES, _VEL_LAST_TRAIN = 60, 48  # dataK.npy, K = 1..60
_STYLE_FILES, _STYLE_LAST_TRAIN = 134, 120
_FAULT_PER_GROUP, _FAULT_LAST_TRAIN_I = 36, 31  # i = 0..35
_HOLDOUT_FRACTION = 0.2  # validation share used for partial downloads

_DATA_RE = re.compile(r"^data(\d+)\.npy$")
_MODEL_RE = re.compile(r"^model(\d+)\.npy$")
_SEIS_RE = re.compile(r"^seis(\d+)_1_(\d+)\.npy$")
_VEL_RE = re.compile(r"^vel(\d+)_1_(\d+)\.npy$")


#: The three splits: training, validation (early stopping, selection, tuning), test (reporting only).
SPLITS = ("train", "val", "test")


def canonical_split(split: str) -> str:
    """Return ``"train"``, ``"val"`` or ``"test"`` (``"training"``, ``"validation"`` are accepted)."""
    s = str(split).lower()
    if s in ("train", "training"):
        return "train"
    if s in ("val", "validation"):
        return "val"
    if s == "test":
        return "test"
    raise ValueError(f"unknown split {split!r}; use 'train', 'val' or 'test'")


def download_holdout(n: int, split: str) -> range:
    """Positions (within OpenFWI's validation samples, in file order) of our val or test split.

    OpenFWI publishes a training and a validation split only. Of a download's ``n``
    validation samples, the first ``n // 2`` are our validation split (early stopping,
    selection) and the remaining ones our test split (reported only).

    A download with a single validation sample keeps it as the validation split and has
    no test split.

    Raises
    ------
    ValueError
        For the test split of a download with fewer than two validation samples.
    """
    if split == "val":
        return range(0, max(1, n // 2))
    if n < 2:
        raise ValueError(f"the download has {n} validation sample(s); at least 2 are needed to split them into "
                         "validation and test halves: download more of OpenFWI's validation files")
    return range(n // 2, n)


def family_layout(family: str) -> str:
    """``"fault"`` for the Fault families, ``"vel"`` for Vel and Style families."""
    return "fault" if "fault" in family else "vel"


def pair_names(family: str, j: int) -> tuple[str, str]:
    """Relative seismic and velocity paths of file number ``j`` (0-based) of a generated set."""
    if family_layout(family) == "vel":
        return f"data/data{j + 1}.npy", f"model/model{j + 1}.npy"
    group = FAULT_GROUPS[family[-1]][j % 3]
    return f"seis{group}_1_{j // 3}.npy", f"vel{group}_1_{j // 3}.npy"


def read_npy_header(path, check_size: bool = False) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, read from its header only.

    Parameters
    ----------
    path : path
        The ``.npy`` file.
    check_size : bool
        Also check that the file is long enough for the array its header
        announces (catches truncated downloads).

    Raises
    ------
    ValueError
        If the file is not a valid ``.npy`` file or is truncated (the message names it).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # rare version 3 headers: let numpy parse them
                arr = np.load(path, mmap_mode="r")
                shape, dtype = arr.shape, arr.dtype
            offset = fh.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path} as a .npy file ({exc}); re-download or regenerate it") from exc
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    if check_size and version in ((1, 0), (2, 0)):
        needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = path.stat().st_size
        if size < needed:
            raise ValueError(f"{path} is truncated: {size} bytes, but its header announces {dtype} {shape} "
                             f"({needed} bytes); re-download or regenerate it")
    return shape, dtype


def file_tree(root) -> str:
    """A listing of the files under ``root``: relative path, size and, for ``.npy`` files, dtype and shape.

    Parameters
    ----------
    root : str or Path
        A folder, such as one generated data set.

    Returns
    -------
    str
        ``root``'s name, then one indented line per file in sorted order.

    Raises
    ------
    NotADirectoryError
        If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder; pass the folder of a data set")
    lines = [f"{root.name}/"]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        extra = ""
        if path.suffix == ".npy":
            shape, dtype = read_npy_header(path)
            extra = f"  {dtype} {shape}"
        lines.append(f"  {path.relative_to(root).as_posix():<24}{path.stat().st_size / 1024:10.1f} KiB{extra}")
    return "\n".join(lines)


def read_split_file(path) -> list[tuple[Path, Path]]:
    """Parse a split file into ``(seismic, velocity)`` absolute paths.

    Blank lines and lines starting with ``#`` are skipped. Fields are separated
    by a tab (OpenFWI's convention); a line without a tab may use other
    whitespace if it then has exactly two fields. A relative path is looked up
    as OpenFWI's own loader does, against the working directory, and, where no
    file is there, against the split file's folder (how this package writes them);
    where both hold a different file, that is an error.

    Raises
    ------
    ValueError
        On a malformed line (the message gives its number).
    """
    path = Path(path)
    base = path.resolve().parent
    pairs = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        fields = [f for f in fields if f]
        if len(fields) != 2:
            raise ValueError(
                f"{path}, line {lineno}: expected '<seismic path>\\t<velocity path>', got {raw!r}; "
                "fix or delete that line"
            )
        pairs.append(tuple(_split_entry(f, base) for f in fields))
    return pairs


def _split_entry(field: str, base: Path) -> Path:
    """A split file's path: absolute as written; relative, against the working directory, else ``base``."""
    path = Path(field)
    if path.is_absolute():
        return path
    here, there = (Path.cwd() / path).resolve(), base / path
    if here.exists() and there.exists() and not here.samefile(there):
        raise ValueError(f"the split file entry {field!r} names two files: {here} (from the working directory, as "
                         f"OpenFWI reads it) and {there} (beside the split file); write absolute paths, or run "
                         f"from the folder the paths are relative to")
    return here if here.exists() else there


def write_split_file(path, pairs) -> None:
    """Write ``(seismic, velocity)`` pairs as a split file, paths relative to its directory."""
    base = Path(path).resolve().parent
    lines = [f"{os.path.relpath(Path(s).resolve(), base)}\t{os.path.relpath(Path(v).resolve(), base)}\n" for s, v in pairs]
    atomic_write_bytes(path, "".join(lines).encode())


def read_manifest(root) -> dict | None:
    """The ``fwi_teach.json`` manifest of a generated set, or ``None`` if there is none."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"manifest {path} is not valid JSON ({exc}); delete the set and regenerate it") from exc


def infer_family(path) -> str | None:
    """Guess a family from a manifest next to ``path`` or from its path components.

    ``/data/FlatVel_A/train.txt``, ``flatvel-a`` and ``CurveFault-B_data`` all
    resolve; returns ``None`` when nothing matches.
    """
    path = Path(path).resolve()
    root = path if path.is_dir() else path.parent
    manifest = read_manifest(root)
    if manifest and manifest.get("family") in FAMILIES:
        return manifest["family"]
    for part in reversed(path.parts):
        name = part.lower().replace("_", "-").replace(" ", "-")
        found = [f for f in FAMILIES if re.search(rf"(?<![a-z]){re.escape(f)}(?![a-z0-9])", name)]
        if len(found) == 1:
            return found[0]
    return None


def _numbered(directory: Path, pattern: re.Pattern) -> dict:
    out = {}
    for p in directory.iterdir():
        m = pattern.match(p.name)
        if m:
            out[tuple(int(g) for g in m.groups())] = p
    return out


def _check_matching(seis: dict, vel: dict, root: Path, what: tuple[str, str], name) -> None:
    if seis.keys() == vel.keys():
        return
    only_s = sorted(set(seis) - set(vel))
    only_v = sorted(set(vel) - set(seis))
    missing = [name(k, 1) for k in only_s[:3]] + [name(k, 0) for k in only_v[:3]]
    raise ValueError(
        f"data/model file count mismatch in {root}: {len(seis)} {what[0]} files but {len(vel)} {what[1]} files "
        f"(missing, for example: {', '.join(missing)}); every seismic file needs its velocity file: "
        "finish the download or remove the unpaired files"
    )


def _split_keys(keys, official_train, full: bool, root: Path, split: str):
    """Official split for a full download, otherwise the documented fallback (with a warning)."""
    keys = sorted(keys, key=lambda k: (k[-1], k[0]) if len(k) == 2 else k)
    train = [k for k in keys if official_train(k)]
    val = [k for k in keys if not official_train(k)]
    if not full:
        if not train or not val:
            n_val = max(1, round(_HOLDOUT_FRACTION * len(keys))) if len(keys) > 1 else 0
            train, val = keys[: len(keys) - n_val], keys[len(keys) - n_val:]
            rule = f"the highest-numbered {n_val} of {len(keys)} files are held out for validation"
        else:
            rule = "files keep their official train/val assignment"
        warnings.warn(
            f"{root} holds {len(keys)} files, not a complete OpenFWI download; {rule}. "
            "Pass a split file as source for a different split.",
            stacklevel=4,
        )
    return train if split == "train" else val


def discover_pairs(root, split: str = "train", family: str | None = None) -> tuple[list[tuple[Path, Path]], str]:
    """Find the ``(seismic, velocity)`` file pairs of one split of a data set directory.

    Parameters
    ----------
    root : path
        A generated set (``train.txt`` / ``val.txt``), a Vel/Style download
        (``data/``, ``model/``) or a Fault download (``seis*``/``vel*`` files).
    split : {"train", "val", "test"}
        Which split. For a download, "val" and "test" both return OpenFWI's
        validation files; :class:`~fwi_teach.data.OpenFWIDataset` then keeps the
        first or second half of their samples (:func:`download_holdout`).
    family : str, optional
        Canonical family name; selects the Style convention (files 1-120 train,
        121-134 val) over the Vel one (1-48 train, 49-60 val) and the Fault groups.

    Returns
    -------
    pairs, layout : list of (Path, Path), str
        ``layout`` is ``"split-file"``, ``"vel"`` or ``"fault"``.

    Notes
    -----
    A complete download uses OpenFWI's split. A partial one (fewer files) keeps
    the official assignment of the files present when both splits are then
    non-empty; otherwise the highest-numbered 20 % of the files present (at
    least one; Fault files ordered by ``i`` then ``G``) become validation. A
    warning says which rule applied.
    """
    root = Path(root)
    split = canonical_split(split)
    if not root.exists():
        raise FileNotFoundError(f"data set directory {root} does not exist; check the path or generate the set first")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory or split file")
    manifest = read_manifest(root)
    if manifest is not None and not manifest.get("complete", False):
        done = sum(bool(f.get("complete")) for f in manifest.get("files", []))
        raise ValueError(
            f"generated set {root} is incomplete ({done} of {len(manifest.get('files', []))} files); "
            "rerun `fwi-teach data generate` with the same settings to finish it"
        )
    split_file = root / f"{split}.txt"
    if split_file.is_file():
        return read_split_file(split_file), "split-file"
    if split == "test" and any((root / f"{s}.txt").is_file() for s in ("train", "val")):
        raise ValueError(f"{root} has split files but no test.txt: it was generated without test samples, or its "
                         "split files were written by hand. Regenerate it with n_test > 0 (generate_dataset(..., "
                         "n_test=N) or `fwi-teach data generate --test N`), or add a test.txt disjoint from the others")
    split = "val" if split == "test" else split
    if (root / "data").is_dir() and (root / "model").is_dir():
        seis, vel = _numbered(root / "data", _DATA_RE), _numbered(root / "model", _MODEL_RE)
        _check_matching(seis, vel, root, ("data/dataK.npy", "model/modelK.npy"),
                        lambda k, s: f"model/model{k[0]}.npy" if s else f"data/data{k[0]}.npy")
        if seis:
            style = family.startswith("style") if family else max(k[0] for k in seis) > _VEL_FILES
            n_full, last_train = (_STYLE_FILES, _STYLE_LAST_TRAIN) if style else (_VEL_FILES, _VEL_LAST_TRAIN)
            full = set(seis) == {(k,) for k in range(1, n_full + 1)}
            keys = _split_keys(seis, lambda k: k[0] <= last_train, full, root, split)
            return [(seis[k], vel[k]) for k in keys], "vel"
    seis, vel = _numbered(root, _SEIS_RE), _numbered(root, _VEL_RE)
    if seis or vel:
        _check_matching(seis, vel, root, ("seis{G}_1_{i}.npy", "vel{G}_1_{i}.npy"),
                        lambda k, s: f"vel{k[0]}_1_{k[1]}.npy" if s else f"seis{k[0]}_1_{k[1]}.npy")
        groups = FAULT_GROUPS[family[-1]] if family and "fault" in family else tuple(sorted({k[0] for k in seis}))
        full = set(seis) == {(g, i) for g in groups for i in range(_FAULT_PER_GROUP)} and len(groups) == 3
        keys = _split_keys(seis, lambda k: k[1] <= _FAULT_LAST_TRAIN_I, full, root, split)
        return [(seis[k], vel[k]) for k in keys], "fault"
    raise ValueError(
        f"no recognised OpenFWI layout in {root}: expected train.txt / val.txt split files, "
        "data/dataK.npy with model/modelK.npy (Vel and Style families), or "
        "seis{G}_1_{i}.npy with vel{G}_1_{i}.npy in the directory itself (Fault families)"
    )
