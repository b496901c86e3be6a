"""OpenFWI-*style* 2-D velocity families, generated on the fly.

OpenFWI (Deng et al. 2022) describes ten 2-D families but never released the recipes that
made them. The generators below are **our own recipes** that follow the published
descriptions (flat / curved layers, one fault for "A", "B" = a harder version, Style maps
from natural images). They are *OpenFWI-style*, not OpenFWI: statistics differ from the
downloadable sets, so numbers measured here are not comparable one-to-one with the paper.

Every model is 70 x 70 cells (rows = depth, columns = distance, 10 m cells), float32, m/s,
within [1500, 4500]. Sample ``i`` of family ``f`` with seed ``s`` is drawn from
``numpy.random.default_rng(SeedSequence([s, family_id, i]))`` where ``family_id`` is the
position of ``f`` in :data:`FAMILIES`; it therefore depends only on ``(f, s, i)``.

Layered recipes (FlatVel, CurveVel, FlatFault, CurveFault)
-----------------------------------------------------------
* **Layers.** ``n`` layers; thicknesses are a minimum thickness plus a Dirichlet share of
  the rest of the 70 cells. Interfaces are ``z_k(x) = depth_k + bend_k(x)``; a pixel's layer
  is the number of interfaces above it (crossing curves pinch a layer out).
* **Flat** interfaces: ``bend = 0``. **Curved, A**: all interfaces follow one shared fold,
  a sum of 1-2 sinusoids of wavelength 60-200 cells, peak amplitude 3-9 cells, scaled by
  0.5-1.0 per interface. **Curved, B**: 2-3 sinusoids of wavelength 25-90 cells, amplitude
  6-15 cells, scaled by 0.5-1.2, plus an independent wiggle (wavelength 20-60 cells,
  amplitude up to 5 cells) per interface.
* **Velocities, A ("trend")**: ``n`` values drawn uniformly among sorted sets in
  [1500, 4500] with at least 250 m/s between neighbours, increasing downward, then each
  neighbouring pair swapped with probability 0.2 (occasional low-velocity layer).
  Constant inside a layer.
* **Velocities, B ("free")**: each layer uniform in [1500, 4500], independent of depth, with
  at least 300 m/s contrast to the layer above. Inside a layer a smooth gradient is added:
  vertical -8..+12 m/s per cell (per layer) and lateral -4..+4 m/s per cell (per model).
* **Faults**: a straight fault through a point in the central part of the model, dip
  50-85 degrees, dipping left or right. The hanging wall is moved vertically by the throw
  (normal fault, down, with probability 0.7; otherwise reverse, up), ``|throw|`` 4-15 cells
  (A) or 4-20 cells (B). With two faults the second (younger) one also offsets the first.
  Fault parameters are redrawn (up to 20 times) until the fault moves at least 20 pixels
  into another layer, so every fault model has a visible offset.

Family settings: FlatVel-A 2-5 layers, trend; FlatVel-B 4-8 layers, free + gradients;
CurveVel-A/B as FlatVel-A/B with curved A/B interfaces; FlatFault-A 3-6 flat layers,
trend, one fault; FlatFault-B 4-8 flat layers, free + gradients, 1-2 faults; CurveFault-A/B
as FlatFault-A/B with curved A/B interfaces. Minimum layer thickness 5 cells (A), 3 (B).

How B is harder than A (all layered families): more layers (thinner, down to 3 cells),
velocity no longer tied to depth and stronger contrasts, gradients inside layers (no
piecewise-constant prior), stronger and less regular curvature, and up to two faults.
Style-A/B: see :mod:`fwi_teach.data.style`. :func:`total_variation` is the statistic the
tests use to check that B is more complex than A.
"""

from __future__ import annotations

import re

import numpy as np

from .style import style_model

__all__ = [
    "FAMILIES", "PRETRAIN_FAMILIES", "FINETUNE_FAMILIES", "V_MIN_MPS", "V_MAX_MPS",
    "canonical_family", "family_title", "velocity_models", "describe_family", "total_variation",
]

NZ = NX = 70
V_MIN_MPS, V_MAX_MPS = 1500.0, 4500.0

#: The ten canonical names; the order fixes each family's seed id - never reorder it.
FAMILIES = (
    "flatvel-a", "flatvel-b", "curvevel-a", "curvevel-b", "flatfault-a",
    "flatfault-b", "curvefault-a", "curvefault-b", "style-a", "style-b",
)
#: The six families the paper's foundation model (PFM) is pretrained on.
PRETRAIN_FAMILIES = ("flatvel-a", "curvevel-a", "curvevel-b", "flatfault-a", "flatfault-b", "curvefault-a")
#: The four families the paper fine-tunes on.
FINETUNE_FAMILIES = ("flatvel-b", "curvefault-b", "style-a", "style-b")

_A = dict(layers=(2, 5), min_thick=5, free=False, faults=(0, 0), throw=(4, 15))
_B = dict(layers=(4, 8), min_thick=3, free=True, faults=(0, 0), throw=(4, 20))
_SPECS = {
    "flatvel-a": dict(_A, curve=None),
    "flatvel-b": dict(_B, curve=None),
    "curvevel-a": dict(_A, curve="a"),
    "curvevel-b": dict(_B, curve="b"),
    "flatfault-a": dict(_A, curve=None, layers=(3, 6), faults=(1, 1)),
    "flatfault-b": dict(_B, curve=None, faults=(1, 2)),
    "curvefault-a": dict(_A, curve="a", layers=(3, 6), faults=(1, 1)),
    "curvefault-b": dict(_B, curve="b", faults=(1, 2)),
}

_DESCRIPTIONS = {
    "flatvel-a": "2-5 flat layers, constant velocity per layer, velocity mostly increasing with depth "
                 "(neighbours >= 250 m/s apart, each neighbouring pair inverted with probability 0.2).",
    "flatvel-b": "4-8 flat layers (>= 3 cells thick), velocities drawn freely in 1500-4500 m/s with >= 300 m/s "
                 "contrast between neighbours, plus a smooth vertical (-8..+12 m/s/cell) and lateral (+-4 m/s/cell) "
                 "gradient inside layers. Harder than A: more and thinner layers, no depth trend, sharper contrasts, "
                 "not piecewise constant.",
    "curvevel-a": "2-5 layers whose interfaces follow one shared gentle fold (1-2 sinusoids, wavelength 60-200 cells, "
                  "amplitude 3-9 cells); velocities as FlatVel-A (mostly increasing with depth).",
    "curvevel-b": "4-8 layers with strongly curved interfaces (2-3 sinusoids, wavelength 25-90 cells, amplitude 6-15 "
                  "cells, plus an independent wiggle per interface, pinch-outs allowed); free velocities and in-layer "
                  "gradients as FlatVel-B.",
    "flatfault-a": "3-6 flat layers with FlatVel-A velocities cut by one straight fault (dip 50-85 deg, throw 4-15 "
                   "cells, normal or reverse).",
    "flatfault-b": "4-8 flat layers with FlatVel-B velocities and gradients cut by 1-2 faults (throw 4-20 cells); "
                   "the younger fault offsets the older one.",
    "curvefault-a": "3-6 gently curved layers (CurveVel-A folds) with FlatVel-A velocities cut by one fault "
                    "(dip 50-85 deg, throw 4-15 cells).",
    "curvefault-b": "4-8 strongly curved layers (CurveVel-B folds) with free velocities and gradients cut by 1-2 "
                    "faults (throw 4-20 cells).",
    "style-a": "Natural scikit-image picture: random crop, resize to 70x70, rotation/flip, strong Gaussian blur "
               "(sigma 1.5-2.5 cells), 20-50 % linear depth trend, mapped to a 1500-2500 m/s wide range starting "
               "at 1500-2200 m/s.",
    "style-b": "As Style-A but weak blur (sigma 0.6-1.2 cells), random gamma 0.5-2 for contrast, 0-30 % depth trend, "
               "and a 1800-3000 m/s wide range: finer detail, sharper edges, less prior structure.",
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY = {_key(f): f for f in FAMILIES}


def canonical_family(name: str) -> str:
    """Return the canonical name of a family given any common spelling.

    Parameters
    ----------
    name : str
        E.g. ``"FlatVel-A"``, ``"flatvel_a"``, ``"FLATVEL-A"``, ``"flatvel a"``.

    Returns
    -------
    str
        One of :data:`FAMILIES`, e.g. ``"flatvel-a"``.

    Raises
    ------
    ValueError
        If the name matches no family; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"family name must be a string, got {type(name).__name__}; valid names: {', '.join(FAMILIES)}")
    try:
        return _BY_KEY[_key(name)]
    except KeyError:
        raise ValueError(f"unknown velocity family {name!r}; valid names are: {', '.join(FAMILIES)}") from None


def family_title(name: str) -> str:
    """The display name of a family, as OpenFWI writes it: ``"curvefault-b"`` -> ``"CurveFault-B"``.

    Names that are not a family's (such as ``"mean-map"``) come back unchanged.
    """
    if name not in FAMILIES:
        return name
    kind, _, letter = name.rpartition("-")
    for low, title in (("flatvel", "FlatVel"), ("curvevel", "CurveVel"), ("flatfault", "FlatFault"),
                       ("curvefault", "CurveFault"), ("style", "Style")):
        kind = kind.replace(low, title)
    return f"{kind}-{letter.upper()}" if kind else name


def describe_family(family: str) -> str:
    """Human-readable recipe of one family (see the module docstring for the full recipe).

    Parameters
    ----------
    family : str
        Any spelling accepted by :func:`canonical_family`.

    Returns
    -------
    str
        ``"<name> (OpenFWI-style, our recipe): <recipe>"``.
    """
    f = canonical_family(family)
    return f"{f} (OpenFWI-style, our own recipe, not the OpenFWI generator): {_DESCRIPTIONS[f]}"


def _check_int(value, name: str, minimum: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}; pass e.g. {name}=0")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# --------------------------------------------------------------------------- layered models
def _thickness_interfaces(rng, n_layers: int, min_thick: int) -> np.ndarray:
    """Depths (cells, float) of the ``n_layers - 1`` interfaces, top to bottom."""
    spare = NZ - n_layers * min_thick
    thick = min_thick + spare * rng.dirichlet(np.full(n_layers, 1.5))
    return np.cumsum(thick)[:-1]


def _sinusoids(rng, x, n_terms, wavelength, amplitude):
    """Sum of ``n_terms`` random sinusoids rescaled to a peak of ``amplitude`` cells."""
    s = np.zeros_like(x)
    for _ in range(n_terms):
        lam = rng.uniform(*wavelength)
        s += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * x / lam + rng.uniform(0, 2 * np.pi))
    return amplitude * s / max(np.abs(s).max(), 1e-9)


def _interfaces(rng, spec, x) -> np.ndarray:
    """Interface depths z_k(x), shape (n_layers - 1, NX), sorted per column."""
    n_layers = int(rng.integers(spec["layers"][0], spec["layers"][1] + 1))
    base = _thickness_interfaces(rng, n_layers, spec["min_thick"])
    z = np.repeat(base[:, None], NX, axis=1)
    if spec["curve"] == "a":
        fold = _sinusoids(rng, x, int(rng.integers(1, 3)), (60, 200), rng.uniform(3, 9))
        z += rng.uniform(0.5, 1.0, size=(len(base), 1)) * fold
    elif spec["curve"] == "b":
        fold = _sinusoids(rng, x, int(rng.integers(2, 4)), (25, 90), rng.uniform(6, 15))
        z += rng.uniform(0.5, 1.2, size=(len(base), 1)) * fold
        for k in range(len(base)):
            z[k] += _sinusoids(rng, x, 1, (20, 60), rng.uniform(0, 5))
    return np.sort(z, axis=0)


def _layer_velocities(rng, n_layers: int, free: bool) -> np.ndarray:
    if not free:
        # Uniform among sorted sets with >= 250 m/s between neighbours, then rare inversions.
        gap = 250.0
        v = np.sort(rng.uniform(V_MIN_MPS, V_MAX_MPS - (n_layers - 1) * gap, n_layers)) + gap * np.arange(n_layers)
        for k in range(n_layers - 1):
            if rng.random() < 0.2:
                v[k], v[k + 1] = v[k + 1], v[k]
        return v
    v = [rng.uniform(V_MIN_MPS, V_MAX_MPS)]
    while len(v) < n_layers:
        cand = rng.uniform(V_MIN_MPS, V_MAX_MPS)
        if abs(cand - v[-1]) >= 300.0:
            v.append(cand)
    return np.asarray(v)


def _draw_fault(rng, throw_range):
    x0, z0 = rng.uniform(20, 50), rng.uniform(15, 55)
    dip = np.deg2rad(rng.uniform(50, 85))
    side = 1.0 if rng.random() < 0.5 else -1.0
    throw = rng.uniform(*throw_range) * (1.0 if rng.random() < 0.7 else -1.0)
    return x0, z0, dip, side, throw


def _unfault(z, x, fault):
    """Map present-day depth ``z`` back across one fault (vertical throw on the hanging wall)."""
    x0, z0, dip, side, throw = fault
    x_fault = x0 + side * (z - z0) / np.tan(dip)
    hanging = side * (x - x_fault) > 0
    return np.where(hanging, z - throw, z)


def _labels(zq, interfaces):
    """Layer index of each query depth ``zq`` (NZ, NX) given sorted interfaces (K, NX)."""
    return (zq[None, :, :] >= interfaces[:, None, :]).sum(axis=0)


def _layered_model(rng, spec):
    """One layered model; returns (velocity (NZ, NX) float64, info dict)."""
    x = np.arange(NX, dtype=np.float64)
    z = np.arange(NZ, dtype=np.float64)[:, None] + np.zeros((1, NX))
    xx = np.broadcast_to(x, (NZ, NX))
    zi = _interfaces(rng, spec, x)
    n_layers = zi.shape[0] + 1
    vel = _layer_velocities(rng, n_layers, spec["free"])
    label0 = _labels(z, zi)
    n_faults = int(rng.integers(spec["faults"][0], spec["faults"][1] + 1))
    faults, zq, offset = [], z, 0
    for _ in range(n_faults):
        for _attempt in range(20):
            fault = _draw_fault(rng, spec["throw"])
            # The new fault is younger: undo it first, then the older ones.
            trial = _unfault(z, xx, fault)
            for old in reversed(faults):
                trial = _unfault(trial, xx, old)
            moved = int((_labels(trial, zi) != _labels(zq, zi)).sum())
            if moved >= 20:
                break
        faults.append(fault)
        zq = trial
        offset += moved
    label = _labels(zq, zi)
    v = vel[label].astype(np.float64)
    if spec["free"]:
        top = np.vstack([np.zeros((1, NX)), zi])  # top of layer k at column x
        layer_top = np.take_along_axis(top, label, axis=0)
        gz = rng.uniform(-8.0, 12.0, n_layers)
        gx = rng.uniform(-4.0, 4.0)
        v = v + gz[label] * (zq - layer_top) + gx * (xx - (NX - 1) / 2)
    info = dict(n_layers=n_layers, n_faults=n_faults, offset_pixels=offset,
                unfaulted_labels=label0, labels=label)
    return v, info


def _sample(family: str, rng: np.random.Generator):
    """Draw one model of a canonical family; returns (float32 (NZ, NX), info dict)."""
    if family.startswith("style-"):
        return style_model(rng, family[-1]), {}
    v, info = _layered_model(rng, _SPECS[family])
    return np.clip(v, V_MIN_MPS, V_MAX_MPS).astype(np.float32), info


def velocity_models(family: str, n: int, seed: int = 0, start: int = 0, progress: bool = False) -> np.ndarray:
    """Generate ``n`` velocity models of one OpenFWI-style family.

    Parameters
    ----------
    family : str
        Family name, any spelling accepted by :func:`canonical_family`.
    n : int
        Number of models (>= 0).
    seed : int, default 0
        Non-negative seed of the whole set.
    start : int, default 0
        Global index of the first model; model ``i`` depends only on ``(family, seed, i)``,
        so ``velocity_models(f, 10, s)[5:]`` equals ``velocity_models(f, 5, s, start=5)``.
    progress : bool, default False
        Show a ``tqdm`` progress bar.

    Returns
    -------
    numpy.ndarray
        float32 array (n, 1, 70, 70) in m/s, rows = depth (10 m cells), within [1500, 4500].

    Raises
    ------
    ValueError
        Unknown family, or negative ``n`` / ``seed`` / ``start``.
    TypeError
        Non-integer ``n`` / ``seed`` / ``start``.
    """
    fam = canonical_family(family)
    n, seed, start = _check_int(n, "n"), _check_int(seed, "seed"), _check_int(start, "start")
    fid = FAMILIES.index(fam)
    out = np.empty((n, 1, NZ, NX), dtype=np.float32)
    indices = range(start, start + n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"{fam} models", unit="model")
    for j, i in enumerate(indices):
        rng = np.random.default_rng(np.random.SeedSequence([seed, fid, i]))
        out[j, 0] = _sample(fam, rng)[0]
    return out


def total_variation(velocity_mps) -> np.ndarray:
    """Mean absolute velocity jump between neighbouring cells (m/s per cell), per model.

    ``TV = mean(|v[z+1, x] - v[z, x]|) + mean(|v[z, x+1] - v[z, x]|)``. It grows with the
    number of layers, their contrast, curvature, faults and fine texture; the tests use it to
    check that each "B" family is more complex than its "A" family.

    Parameters
    ----------
    velocity_mps : array_like
        (70, 70), (N, 70, 70) or (N, 1, 70, 70) velocities in m/s.

    Returns
    -------
    numpy.ndarray
        float64 (N,) (a 0-d array for one 2-D model).
    """
    v = np.asarray(velocity_mps, dtype=np.float64)
    if v.ndim == 4 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim not in (2, 3) or v.shape[-2:] != (NZ, NX):
        raise ValueError(f"velocity has shape {v.shape}; expected (70, 70), (N, 70, 70) or (N, 1, 70, 70)")
    dz = np.abs(np.diff(v, axis=-2)).mean(axis=(-2, -1))
    dx = np.abs(np.diff(v, axis=-1)).mean(axis=(-2, -1))
    return dz + dx
