"""Style-A / Style-B: OpenFWI-*style* velocity maps made from natural images.

OpenFWI built its Style sets by neural style transfer from natural photographs; that
pipeline and its parameters were never released. This module uses a simpler, documented
recipe that keeps the spirit (smooth, irregular, non-layered structures taken from real
images) and runs offline: it only uses images that ship inside scikit-image
(:data:`STYLE_SOURCES`; no download, no ``pooch``).

Recipe for one sample (all random numbers come from the caller's generator):

1. pick a source image from :data:`STYLE_SOURCES` (uniformly), as gray levels in [0, 1];
2. cut a random square crop whose side is 25-70 % of the image's shorter side;
3. resize it to 70 x 70 (``skimage.transform.resize``, bilinear, anti-aliased); a crop
   with almost no content (standard deviation < 0.04, e.g. sky) is redrawn, up to 10 times;
4. rotate it by a random multiple of 90 degrees, flip it left-right with probability 1/2;
5. Gaussian blur: **Style-A** sigma 1.5-2.5 cells (smooth, large bodies);
   **Style-B** sigma 0.6-1.2 cells (keeps edges and small-scale texture);
6. stretch to [0, 1] between the 1st and 99th percentiles; **Style-B only**: random
   gamma in [0.5, 2] (more contrast, skewed histograms);
7. mix in a linear depth trend, ``m = (1 - w) * image + w * depth``, so velocity tends to
   increase with depth: **Style-A** w in [0.2, 0.5], **Style-B** w in [0, 0.3];
8. rescale to [0, 1] and map linearly to a random velocity interval inside [1500, 4500] m/s:
   **Style-A** lowest 1500-2200 m/s, span 1500-2500 m/s (capped at 4500 m/s);
   **Style-B** lowest 1500-2000 m/s, span 1800 m/s up to 3000 m/s (capped at 4500 m/s).

How Style-B is harder than Style-A: less smoothing (finer detail, sharper edges), more
contrast, a wider velocity span and a weaker depth trend (less prior structure to lean on).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["STYLE_SOURCES", "source_image", "style_model", "STYLE_RECIPES"]

#: scikit-image sample images used as sources (all bundled with scikit-image >= 0.21).
STYLE_SOURCES = (
    "camera", "astronaut", "coffee", "chelsea", "rocket", "moon", "coins",
    "brick", "immunohistochemistry", "retina", "stereo_motorcycle",
)

#: Per-variant parameters of the recipe in the module docstring.
STYLE_RECIPES = {
    "a": dict(sigma=(1.5, 2.5), gamma=None, trend=(0.2, 0.5), vlow=(1500.0, 2200.0), span=(1500.0, 2500.0)),
    "b": dict(sigma=(0.6, 1.2), gamma=(0.5, 2.0), trend=(0.0, 0.3), vlow=(1500.0, 2000.0), span=(1800.0, 3000.0)),
}

_NZ = _NX = 70


@lru_cache(maxsize=None)
def source_image(name: str) -> np.ndarray:
    """Load one bundled scikit-image picture as read-only gray levels in [0, 1].

    Parameters
    ----------
    name : str
        One of :data:`STYLE_SOURCES`.

    Returns
    -------
    numpy.ndarray
        float32 array (height, width), values in [0, 1], cached for the process.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`STYLE_SOURCES`.
    RuntimeError
        If the installed scikit-image cannot provide the image offline.
    """
    if name not in STYLE_SOURCES:
        raise ValueError(f"unknown style source image {name!r}; choose one of {', '.join(STYLE_SOURCES)}")
    import skimage.data
    from skimage.color import rgb2gray

    try:
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
            img = img[0]
    except Exception as exc:  # pragma: no cover - depends on the installed scikit-image
        raise RuntimeError(
            f"scikit-image could not load its bundled image {name!r} offline ({exc}); "
            "install scikit-image>=0.21 from a wheel that includes its data files"
        ) from exc
    img = np.asarray(img)
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / max(hi - lo, 1e-12)
    out = img.astype(np.float32)
    out.setflags(write=False)
    return out


def _stretch(a: np.ndarray) -> np.ndarray:
    """Stretch between the 1st and 99th percentiles and clip to [0, 1]."""
    lo, hi = np.percentile(a, [1.0, 99.0])
    if hi - lo < 1e-6:  # a flat crop: keep it flat rather than amplify noise
        return np.full_like(a, 0.5)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def style_model(rng: np.random.Generator, variant: str) -> np.ndarray:
    """Draw one 70 x 70 Style velocity map (m/s) with the recipe of this module.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all random numbers (the caller seeds it per sample).
    variant : {"a", "b"}
        Style-A (smooth) or Style-B (detailed, high contrast).

    Returns
    -------
    numpy.ndarray
        float32 (70, 70), depth along rows, values within [1500, 4500] m/s.
    """
    from skimage.transform import resize

    if variant not in STYLE_RECIPES:
        raise ValueError(f"style variant must be 'a' or 'b', got {variant!r}")
    p = STYLE_RECIPES[variant]
    img = source_image(STYLE_SOURCES[int(rng.integers(len(STYLE_SOURCES)))])
    h, w = img.shape
    short = min(h, w)
    for _attempt in range(10):
        side = int(rng.integers(int(0.25 * short), int(0.70 * short) + 1))
        r0 = int(rng.integers(0, h - side + 1))
        c0 = int(rng.integers(0, w - side + 1))
        small = resize(img[r0:r0 + side, c0:c0 + side], (_NZ, _NX), order=1, anti_aliasing=True,
                       preserve_range=True)
        if small.std() >= 0.04:
            break
    small = np.rot90(small, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        small = small[:, ::-1]
    small = gaussian_filter(small, sigma=rng.uniform(*p["sigma"]), mode="reflect")
    m = _stretch(small)
    if p["gamma"] is not None:
        m = m ** rng.uniform(*p["gamma"])
    weight = rng.uniform(*p["trend"])
    depth = np.linspace(0.0, 1.0, _NZ)[:, None]
    m = (1.0 - weight) * m + weight * depth
    m = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
    vlow = rng.uniform(*p["vlow"])
    span = rng.uniform(p["span"][0], min(p["span"][1], 4500.0 - vlow))
    v = vlow + span * m
    return np.clip(v, 1500.0, 4500.0).astype(np.float32)
