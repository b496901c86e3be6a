"""A memory-mapped PyTorch dataset over OpenFWI-format files.

:class:`OpenFWIDataset` reads a downloaded OpenFWI set (any of its layouts, see
:mod:`fwi_teach.data.layout`), a set made by :func:`fwi_teach.data.generate_dataset`,
or a split file. Files are opened with ``np.load(mmap_mode="r")`` so a 43 GB
set never has to fit in memory; the index is built from the ``.npy`` headers
alone. Each item copies one sample out of its file before normalising it, so
cached arrays are never modified.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .families import canonical_family
from .layout import canonical_split, discover_pairs, download_holdout, infer_family, read_manifest, read_npy_header, read_split_file
from .normalize import DATA_BOUNDS, SeismicTransform, denormalize_velocity, normalize_velocity

__all__ = ["OpenFWIDataset", "dataset_summary", "low_data_fractions", "subset_indices", "VELOCITY_SAMPLE_SHAPE"]

#: Training-set fractions of the paper's low-data experiment (Fig. 5).
low_data_fractions = (0.1, 0.25, 0.5, 0.75, 1.0)
#: Shape of one velocity sample: (channel, depth, width).
VELOCITY_SAMPLE_SHAPE = (1, 70, 70)


def subset_indices(n: int, fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """Sorted indices of a deterministic, nested random subset of ``range(n)``.

    A permutation drawn from ``seed`` is cut after ``round(fraction * n)``
    entries (at least one), so for one seed the 10 % subset lies inside the
    25 % subset, which lies inside the 50 % one, and so on.

    Parameters
    ----------
    n : int
        Number of samples.
    fraction : float
        Share to keep, in (0, 1].
    seed : int
        Seed of the permutation.

    Returns
    -------
    numpy.ndarray
        int64 indices in increasing order.

    Raises
    ------
    ValueError
        If ``fraction`` is outside (0, 1].
    """
    fraction = float(fraction)
    if not (0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}; use e.g. 0.1 for 10 % of the samples")
    if fraction == 1.0:
        return np.arange(n, dtype=np.int64)
    keep = max(1, int(math.floor(fraction * n + 0.5)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:keep]).astype(np.int64)


class OpenFWIDataset(Dataset):
    """OpenFWI seismic / velocity pairs as normalised float32 tensors.

    Parameters
    ----------
    source : path
        A directory in Vel/Style layout (``data/dataK.npy``, ``model/modelK.npy``),
        in Fault layout (``seis{G}_1_{i}.npy``, ``vel{G}_1_{i}.npy``), a generated
        set (with ``train.txt`` / ``val.txt`` / ``test.txt``), or a split file. A complete
        download is split as OpenFWI does (FlatVel/CurveVel: files 1-48 train,
        49-60 val; Style: 1-120 / 121-134; Fault: ``i <= 31`` / ``32..35``); for
        a partial download see :func:`fwi_teach.data.layout.discover_pairs`.
    family : str, optional
        Family name in any spelling (``"FlatVel-A"``, ``"flatvel_a"``). Inferred
        from a manifest or the directory name when omitted; needed to normalise.
    split : {"train", "val", "test"}
        Which split (ignored when ``source`` is a split file). Generated sets have
        three disjoint splits. A download has OpenFWI's two: its validation samples,
        in file order, are halved (:func:`fwi_teach.data.layout.download_holdout`),
        the first half being "val" (early stopping, selection) and the second "test"
        (reported only).
    normalize : bool
        Normalise seismic (log, then min-max to [-1, 1] with the family's
        published bounds) and velocity (``(v - 3000) / 1500``).
    time_decimation : int
        Keep every ``time_decimation``-th time sample: ``nt // time_decimation``
        samples starting at sample 0.
    fraction : float
        Share of the split to use, in (0, 1]; nested subsets (see :func:`subset_indices`).
    subset_seed : int
        Seed of the subset permutation.
    mmap : bool
        Memory-map the files (default). ``False`` loads each file fully on first use.
    seismic_bounds : tuple of float or "observed", optional
        Raw ``(data_min, data_max)`` used instead of ``DATA_BOUNDS[family]``;
        ``"observed"`` takes them from a generated set's manifest.

    Attributes
    ----------
    family : str or None
    pairs : list of (Path, Path)
        Seismic and velocity file of each file pair, in order.
    file_sizes : list of int
        Samples per file pair.
    indices : numpy.ndarray
        Global sample indices (over all pairs) that make up this dataset.
    seismic_shape : tuple
        Shape of one returned seismic sample ``(shots, nt // time_decimation, receivers)``.
    transform : SeismicTransform or None
        Seismic normalisation in use.

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    ValueError
        For an unrecognised layout, unpaired or mis-shaped files, an unknown
        family, a bad fraction or a malformed split file line.
    """

    def __init__(self, source, family=None, split="train", normalize=True, time_decimation=1,
                 fraction=1.0, subset_seed=0, mmap=True, seismic_bounds=None):
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"data set source {source} does not exist; check the path or generate the set first")
        self.split = canonical_split(split)
        self.source = source
        self.family = canonical_family(family) if family is not None else infer_family(source)
        if source.is_file():
            self.pairs, self.layout = read_split_file(source), "split-file"
        else:
            self.pairs, self.layout = discover_pairs(source, self.split, self.family)
        if not self.pairs:
            raise ValueError(f"split {self.split!r} of {source} has no files; generate or download some, or use the other split")
        self.normalize = bool(normalize)
        self.mmap = bool(mmap)
        if int(time_decimation) != time_decimation or int(time_decimation) < 1:
            raise ValueError(f"time_decimation must be a positive integer, got {time_decimation!r}")
        self.time_decimation = int(time_decimation)
        self._index_files()
        base = np.arange(self.n_total, dtype=np.int64)
        if self.layout != "split-file" and self.split != "train":
            held = download_holdout(self.n_total, self.split)
            base = base[held.start:held.stop]
        self.indices = base[subset_indices(len(base), fraction, subset_seed)]
        self.fraction = float(fraction)
        self.transform = self._make_transform(seismic_bounds)
        if self.normalize and self.transform is None:
            raise ValueError(
                f"cannot tell the family of {source}, so its normalisation bounds are unknown; "
                "pass family= (e.g. 'flatvel-a'), seismic_bounds=(min, max), or normalize=False"
            )
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- construction helpers -------------------------------------------------
    def _index_files(self) -> None:
        sizes, raw_shape = [], None
        for seis_path, vel_path in self.pairs:
            for p in (seis_path, vel_path):
                if not Path(p).is_file():
                    raise FileNotFoundError(f"file {p} listed for this data set does not exist; fix the split file or the download")
            s_shape, s_dtype = read_npy_header(seis_path, check_size=True)
            v_shape, v_dtype = read_npy_header(vel_path, check_size=True)
            if len(s_shape) != 4 or s_dtype != np.float32:
                raise ValueError(
                    f"seismic file {seis_path} holds {s_dtype} of shape {s_shape}; expected float32 of shape "
                    "(samples, shots, time, receivers), e.g. (500, 5, 1000, 70)"
                )
            if len(v_shape) != 4 or v_shape[1:] != VELOCITY_SAMPLE_SHAPE or v_dtype != np.float32:
                raise ValueError(
                    f"velocity file {vel_path} holds {v_dtype} of shape {v_shape}; expected float32 of shape "
                    f"(samples, {', '.join(map(str, VELOCITY_SAMPLE_SHAPE))}), e.g. (500, 1, 70, 70)"
                )
            if s_shape[0] != v_shape[0]:
                raise ValueError(
                    f"seismic/velocity sample counts differ: {seis_path} has {s_shape[0]} samples but "
                    f"{vel_path} has {v_shape[0]}; the pair is corrupt, re-download or regenerate it"
                )
            if raw_shape is None:
                raw_shape = s_shape[1:]
            elif s_shape[1:] != raw_shape:
                raise ValueError(
                    f"seismic file {seis_path} has samples of shape {s_shape[1:]}, but earlier files have {raw_shape}; "
                    "all files of a data set need the same acquisition"
                )
            sizes.append(s_shape[0])
        self.file_sizes = sizes
        self._offsets = np.cumsum([0] + sizes)
        self.n_total = int(self._offsets[-1])
        self.raw_seismic_shape = raw_shape
        n_shots, nt, n_rec = raw_shape
        if self.time_decimation > nt:
            raise ValueError(f"time_decimation={self.time_decimation} exceeds the {nt} time samples per trace")
        self.seismic_shape = (n_shots, nt // self.time_decimation, n_rec)
        self.velocity_shape = VELOCITY_SAMPLE_SHAPE

    def _make_transform(self, seismic_bounds):
        if seismic_bounds is None:
            return SeismicTransform(*DATA_BOUNDS[self.family]) if self.family else None
        if isinstance(seismic_bounds, str):
            if seismic_bounds != "observed":
                raise ValueError(f"seismic_bounds must be (min, max), 'observed' or None, got {seismic_bounds!r}")
            root = self.source if self.source.is_dir() else self.source.parent
            manifest = read_manifest(root)
            if not manifest or manifest.get("data_min") is None:
                raise ValueError(f"seismic_bounds='observed' needs a generated set with a manifest; {root} has none")
            return SeismicTransform(manifest["data_min"], manifest["data_max"])
        lo, hi = seismic_bounds
        return SeismicTransform(lo, hi)

    # -- data access ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.indices)

    def _arrays(self, file_idx: int):
        arrays = self._cache.get(file_idx)
        if arrays is None:
            mode = "r" if self.mmap else None
            seis_path, vel_path = self.pairs[file_idx]
            arrays = (np.load(seis_path, mmap_mode=mode), np.load(vel_path, mmap_mode=mode))
            self._cache[file_idx] = arrays
        return arrays

    def locate(self, i: int) -> tuple[int, int]:
        """File number and row within it of dataset item ``i``."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a dataset of {n} samples")
        g = int(self.indices[i])
        f = int(np.searchsorted(self._offsets, g, side="right") - 1)
        return f, g - int(self._offsets[f])

    def raw_sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Un-normalised copies ``(seismic, velocity_mps)`` of item ``i`` as float32 numpy arrays."""
        f, row = self.locate(int(i))
        seis_arr, vel_arr = self._arrays(f)
        td = self.time_decimation
        nt_keep = self.seismic_shape[1] * td
        seis = np.array(seis_arr[row, :, :nt_keep:td, :], dtype=np.float32, copy=True)
        vel = np.array(vel_arr[row], dtype=np.float32, copy=True)
        return seis, vel

    def velocity_maps(self, items=None) -> np.ndarray:
        """Velocity maps of ``items`` (default: every item), ``(n, 1, 70, 70)`` float32, normalised
        like the items (m/s with ``normalize=False``). Reads the velocity files only, not the seismic."""
        items = range(len(self)) if items is None else items
        out = []
        for i in items:
            f, row = self.locate(int(i))
            out.append(np.array(self._arrays(f)[1][row], dtype=np.float32, copy=True))
        vel = np.stack(out) if out else np.zeros((0, *VELOCITY_SAMPLE_SHAPE), np.float32)
        return normalize_velocity(vel).astype(np.float32, copy=False) if self.normalize else vel

    def __getitem__(self, i):
        seis, vel = self.raw_sample(i)
        if self.normalize:
            seis = self.transform(seis).astype(np.float32, copy=False)
            vel = normalize_velocity(vel).astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(seis)), torch.from_numpy(np.ascontiguousarray(vel))

    # -- helpers ----------------------------------------------------------------
    def denormalize_velocity(self, velocity_norm):
        """Normalised velocity (numpy or torch) back to m/s."""
        return denormalize_velocity(velocity_norm)

    def denormalize_seismic(self, seismic_norm):
        """Normalised seismic (numpy or torch) back to raw amplitudes with this set's bounds."""
        if self.transform is None:
            raise ValueError("this dataset has no seismic bounds; create it with family= or seismic_bounds=")
        return self.transform.inverse(seismic_norm)

    def __getstate__(self):
        # DataLoader workers re-open files themselves; never pickle memory maps.
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __repr__(self) -> str:
        return (f"OpenFWIDataset(source={str(self.source)!r}, family={self.family!r}, split={self.split!r}, "
                f"samples={len(self)} of {self.n_total}, files={len(self.pairs)}, seismic_shape={self.seismic_shape})")


def dataset_summary(source, family=None, scan=False, progress=True) -> dict:
    """Describe a data set: family, layout, files and samples per split, shapes, amplitude range.

    Parameters
    ----------
    source : path
        Anything :class:`OpenFWIDataset` accepts.
    family : str, optional
        Family name when it cannot be inferred.
    scan : bool
        Compute the seismic min / max by reading every file when no manifest
        records them (slow for a full download).
    progress : bool
        Progress bar for the scan.

    Returns
    -------
    dict
        Keys ``source``, ``family``, ``layout``, ``splits`` (per split: ``files``,
        ``samples``, ``seismic_shape``, ``velocity_shape``, or ``error``),
        ``data_min``, ``data_max`` and ``range_from`` (``"manifest"``, ``"scan"`` or ``None``).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"data set source {source} does not exist; check the path")
    root = source if source.is_dir() else source.parent
    manifest = read_manifest(root)
    info = {"source": str(source), "family": None, "layout": None, "splits": {},
            "data_min": None, "data_max": None, "range_from": None}
    splits = ("file",) if source.is_file() else ("train", "val", "test")
    datasets = []
    for split in splits:
        try:
            ds = OpenFWIDataset(source, family=family, split="train" if split == "file" else split, normalize=False)
        except ValueError as exc:
            info["splits"][split] = {"error": str(exc)}
            continue
        datasets.append(ds)
        info["family"], info["layout"] = ds.family, ds.layout
        info["splits"][split] = {"files": len(ds.pairs), "samples": len(ds),
                                 "seismic_shape": list(ds.raw_seismic_shape), "velocity_shape": list(ds.velocity_shape)}
    if not datasets:
        raise ValueError(f"no readable split in {source}: " + "; ".join(v["error"] for v in info["splits"].values()))
    if manifest is not None and manifest.get("data_min") is not None:
        info.update(data_min=manifest["data_min"], data_max=manifest["data_max"], range_from="manifest")
    elif scan:
        lo, hi = math.inf, -math.inf
        files = [p for ds in datasets for p, _ in ds.pairs]
        for path in tqdm(files, desc="scanning seismic range", unit="file", disable=not progress):
            arr = np.load(path, mmap_mode="r")
            for a in range(0, arr.shape[0], 50):  # bounded memory per step
                block = np.asarray(arr[a:a + 50])
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        info.update(data_min=lo, data_max=hi, range_from="scan")
    return info
