"""Figure helpers for the course (matplotlib).

Every function returns the :class:`matplotlib.figure.Figure` it drew on and never calls
``plt.show()``; notebooks display the returned figure, scripts save it. Velocities are in
m/s on input and shown in km/s; distances are shown in km, times in s.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_velocity", "plot_shot_gather", "plot_family_gallery", "plot_velocity_comparison"]

from .style import DIFFERENCE_CMAP, GATHER_CMAP, VELOCITY_CMAP


def _new_axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def _as_2d(a, what: str) -> np.ndarray:
    """Accept (H, W), (1, H, W) or (1, 1, H, W) numpy/torch input; return a float64 (H, W) array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{what} has shape {a.shape}; expected a single 2-D array (H, W) "
                         f"(index one sample/shot first, e.g. {what}[0])")
    return a


def _velocity_image(ax, v_mps, dx_m, vmin_kmps, vmax_kmps):
    nz, nx = v_mps.shape
    extent = (0.0, nx * dx_m / 1000.0, nz * dx_m / 1000.0, 0.0)
    return ax.imshow(v_mps / 1000.0, cmap=VELOCITY_CMAP, extent=extent, aspect="equal",
                     vmin=vmin_kmps, vmax=vmax_kmps, interpolation="nearest")


def plot_velocity(v, ax=None, title=None, dx_m=10.0, vmin_mps=None, vmax_mps=None, colorbar=True):
    """Show one velocity model with km axes and a km/s colour bar.

    Parameters
    ----------
    v : array_like
        Velocity in m/s, (nz, nx) (or with leading singleton axes), rows = depth.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when omitted.
    title : str, optional
        Axes title.
    dx_m : float, default 10.0
        Grid spacing in metres (both directions).
    vmin_mps, vmax_mps : float, optional
        Colour limits in m/s (default: the model's own range).
    colorbar : bool, default True
        Add a colour bar labelled in km/s.

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = _as_2d(v, "velocity")
    if dx_m <= 0:
        raise ValueError(f"dx_m must be positive, got {dx_m}")
    fig, ax = _new_axes(ax, (4.2, 3.5))
    vmin = (v.min() if vmin_mps is None else vmin_mps) / 1000.0
    vmax = (v.max() if vmax_mps is None else vmax_mps) / 1000.0
    im = _velocity_image(ax, v, dx_m, vmin, vmax)
    ax.set_xlabel("distance x (km)")
    ax.set_ylabel("depth z (km)")
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label="velocity (km/s)")
    return fig


def plot_shot_gather(seis, ax=None, dt_s=1e-3, title=None, clip_percentile=99, receiver_spacing_m=10.0,
                     source_x_m=None, receiver_x0_m=0.0, colorbar=False):
    """Show one shot gather (time down, receivers across) with a symmetric gray clip.

    Parameters
    ----------
    seis : array_like
        One shot, shape (nt, n_receivers) (leading singleton axes allowed).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when omitted.
    dt_s : float, default 1e-3
        Time sampling in seconds.
    title : str, optional
        Axes title.
    clip_percentile : float, default 99
        Colour limits are +- this percentile of ``abs(seis)``; strong direct waves saturate so
        weaker reflections stay visible.
    receiver_spacing_m : float, default 10.0
        Receiver spacing in metres.
    source_x_m : float, optional
        Source position in metres; when given the x axis is the offset receiver - source,
        otherwise the receiver position.
    receiver_x0_m : float, default 0.0
        Position of the first receiver in metres.
    colorbar : bool, default False
        Add an amplitude colour bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    d = _as_2d(seis, "seis")
    if dt_s <= 0:
        raise ValueError(f"dt_s must be positive, got {dt_s}")
    if not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    fig, ax = _new_axes(ax, (4.0, 4.5))
    nt, nr = d.shape
    clip = float(np.percentile(np.abs(d), clip_percentile)) or 1.0
    x0 = float(receiver_x0_m) - (0.0 if source_x_m is None else float(source_x_m))
    extent = (x0 / 1000.0, (x0 + nr * receiver_spacing_m) / 1000.0, nt * dt_s, 0.0)
    im = ax.imshow(d, cmap=GATHER_CMAP, vmin=-clip, vmax=clip, extent=extent, aspect="auto",
                   interpolation="bilinear")
    ax.set_xlabel("offset (km)" if source_x_m is not None else "receiver position x (km)")
    ax.set_ylabel("time (s)")
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label="amplitude")
    return fig


def plot_family_gallery(families=None, n_per_family=3, seed=0, with_gathers=False, acquisition=None,
                        boundary="thin"):
    """Grid of sample models: one row per family, ``n_per_family`` models per row.

    With ``with_gathers=True`` each model is followed by its middle shot gather, simulated
    with :func:`fwi_teach.physics.simulate`. All velocity panels share the colour range
    1.5-4.5 km/s and one colour bar (the figure's last axes).

    Parameters
    ----------
    families : sequence of str, optional
        Family names (default: all of :data:`fwi_teach.data.families.FAMILIES`).
    n_per_family : int, default 3
        Models per family.
    seed : int, default 0
        Seed passed to :func:`~fwi_teach.data.families.velocity_models`.
    with_gathers : bool, default False
        Also show the middle shot of each model.
    acquisition : fwi_teach.physics.Acquisition, optional
        Geometry for the gathers (default ``Acquisition.openfwi()``).
    boundary : str, default "thin"
        Absorbing boundary passed to ``simulate``.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(families) * n_per_family * (2 if with_gathers else 1)`` panels + 1 colour bar.
    """
    import matplotlib.pyplot as plt

    from ..data.families import FAMILIES, V_MAX_MPS, V_MIN_MPS, canonical_family, velocity_models

    fams = [canonical_family(f) for f in (FAMILIES if families is None else families)]
    if not fams:
        raise ValueError("families is empty; pass None for all ten or a list such as ['flatvel-a']")
    if int(n_per_family) < 1:
        raise ValueError(f"n_per_family must be >= 1, got {n_per_family}")
    n_per_family = int(n_per_family)
    per = 2 if with_gathers else 1
    if with_gathers:
        from ..physics import Acquisition, simulate  # lazy: physics is optional here

        acq = Acquisition.openfwi() if acquisition is None else acquisition
    ncols = n_per_family * per
    fig, axes = plt.subplots(len(fams), ncols, figsize=(2.0 * ncols + 0.8, 2.0 * len(fams) + 0.3),
                             squeeze=False, constrained_layout=True)
    im = None
    for r, fam in enumerate(fams):
        v = velocity_models(fam, n_per_family, seed=seed)
        seis = simulate(v, acquisition=acq, boundary=boundary) if with_gathers else None
        for j in range(n_per_family):
            ax = axes[r, j * per]
            im = _velocity_image(ax, v[j, 0], 10.0, V_MIN_MPS / 1000.0, V_MAX_MPS / 1000.0)
            ax.set_title(f"{fam} #{j}", fontsize=9)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("depth (km)", fontsize=8)
            if r == len(fams) - 1:
                ax.set_xlabel("x (km)", fontsize=8)
            if with_gathers:
                gax = axes[r, j * per + 1]
                mid = seis.shape[1] // 2
                cols = [c for _, c in acq.receiver_locations]
                step = (cols[-1] - cols[0]) / max(len(cols) - 1, 1) if len(cols) > 1 else 1.0
                plot_shot_gather(seis[j, mid], ax=gax, dt_s=acq.dt_s, receiver_spacing_m=step * acq.dx_m,
                                 receiver_x0_m=cols[0] * acq.dx_m)
                gax.set_title(f"shot {mid}", fontsize=9)
                gax.tick_params(labelsize=7)
                gax.set_xlabel("x (km)" if r == len(fams) - 1 else "", fontsize=8)
                gax.set_ylabel("time (s)" if j == 0 else "", fontsize=8)
    fig.colorbar(im, ax=axes, label="velocity (km/s)", shrink=0.6)
    return fig


def plot_velocity_comparison(true, predicted_dict, dx_m=10.0, titles=None, diff_limit_mps=None):
    """Compare predictions with the true model: columns true, each prediction, each difference.

    Parameters
    ----------
    true : array_like
        True velocity in m/s, (70, 70) for one model or (N, 70, 70) / (N, 1, 70, 70) for N rows.
    predicted_dict : dict[str, array_like]
        Label -> predicted velocity in m/s, same shape as ``true``.
    dx_m : float, default 10.0
        Grid spacing in metres.
    titles : sequence of str, optional
        One label per row (e.g. sample ids), written on the left.
    diff_limit_mps : float, optional
        Symmetric colour limit of the difference panels (default: the largest absolute difference).

    Returns
    -------
    matplotlib.figure.Figure
        N rows x (1 + 2 * len(predicted_dict)) panels, plus two colour bars (velocity,
        difference). Velocity panels share one colour range; difference panels share another.

    Raises
    ------
    ValueError
        Empty ``predicted_dict`` or shapes that do not match.
    """
    import matplotlib.pyplot as plt

    def rows(a, what):
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"{what} has shape {a.shape}; expected (H, W), (N, H, W) or (N, 1, H, W)")
        return a

    if not predicted_dict:
        raise ValueError("predicted_dict is empty; pass e.g. {'InversionNet': prediction}")
    t = rows(true, "true")
    preds = {k: rows(p, f"prediction {k!r}") for k, p in predicted_dict.items()}
    for k, p in preds.items():
        if p.shape != t.shape:
            raise ValueError(f"prediction {k!r} has shape {p.shape}; expected the shape of true, {t.shape}")
    if titles is not None and len(titles) != t.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries; expected one per row ({t.shape[0]})")
    diffs = {k: p - t for k, p in preds.items()}
    vmin = min(t.min(), *(p.min() for p in preds.values())) / 1000.0
    vmax = max(t.max(), *(p.max() for p in preds.values())) / 1000.0
    lim = diff_limit_mps or max(float(np.abs(d).max()) for d in diffs.values()) or 1.0
    nrow, ncol = t.shape[0], 1 + 2 * len(preds)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol + 1.2, 2.3 * nrow + 0.4), squeeze=False,
                             constrained_layout=True)
    nz, nx = t.shape[1:]
    extent = (0.0, nx * dx_m / 1000.0, nz * dx_m / 1000.0, 0.0)
    im_v = im_d = None
    for r in range(nrow):
        im_v = _velocity_image(axes[r, 0], t[r], dx_m, vmin, vmax)
        axes[r, 0].set_title("true" if r == 0 else "", fontsize=9)
        axes[r, 0].set_ylabel(("" if titles is None else f"{titles[r]}\n") + "depth (km)", fontsize=8)
        for c, (k, p) in enumerate(preds.items(), start=1):
            _velocity_image(axes[r, c], p[r], dx_m, vmin, vmax)
            axes[r, c].set_title(k if r == 0 else "", fontsize=9)
        for c, (k, d) in enumerate(diffs.items(), start=1 + len(preds)):
            im_d = axes[r, c].imshow(d[r], cmap=DIFFERENCE_CMAP, vmin=-lim, vmax=lim, extent=extent,
                                     interpolation="nearest")
            mae = float(np.abs(d[r]).mean())
            axes[r, c].set_title(f"{k} - true\nMAE {mae:.0f} m/s" if r == 0 else f"MAE {mae:.0f} m/s", fontsize=8)
        for ax in axes[r]:
            ax.tick_params(labelsize=7)
            if r == nrow - 1:
                ax.set_xlabel("x (km)", fontsize=8)
    fig.colorbar(im_v, ax=axes[:, : 1 + len(preds)], label="velocity (km/s)", shrink=0.8)
    fig.colorbar(im_d, ax=axes[:, 1 + len(preds):], label="difference (m/s)", shrink=0.8)
    return fig
