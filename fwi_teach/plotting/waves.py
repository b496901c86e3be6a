"""Figures of the wave physics: wavefield snapshots, the FWI gradient and the Taylor test.

:func:`plot_wavefield_snapshots` draws :func:`fwi_teach.physics.wavefield_snapshots`
results, one row per boundary and one column per time, with the physical domain
outlined inside its sponge; :func:`plot_gradient` draws a signed image such as
:func:`fwi_teach.physics.misfit_gradient`'s; :func:`plot_taylor_test` draws the two
remainders of :func:`fwi_teach.physics.taylor_test` against the step with slopes 1
and 2 for reference. Like every figure of :mod:`fwi_teach.plotting` they return the
Figure and never call ``show``.
"""

from __future__ import annotations

import numpy as np

from .maps import _as_2d, _new_axes
from .style import DIFFERENCE_CMAP, GATHER_CMAP

__all__ = ["plot_wavefield_snapshots", "plot_gradient", "plot_taylor_test"]


def plot_wavefield_snapshots(snapshots, clip_percentile: float = 99.5, window_cells: int | None = None,
                             panel_inches: float = 2.4, domain_colour: str = "tab:orange"):
    """Pressure snapshots: one row per boundary, one column per time, sponge included.

    Parameters
    ----------
    snapshots : dict of str to WavefieldSnapshots
        Row label -> result of :func:`fwi_teach.physics.wavefield_snapshots`; all
        rows must have the same times.
    clip_percentile : float, default 99.5
        One grey scale for every panel: +- this percentile of ``abs(pressure)``
        inside the physical domain over all rows and times, so that panels compare
        directly (the strong wave near the source saturates).
    window_cells : int, optional
        Every panel shows the physical domain and this many cells around it;
        default the widest padding of the rows (a row with less padding shows
        blank space there).
    panel_inches : float, default 2.4
        Width and height of one panel.
    domain_colour : str, default "tab:orange"
        Colour of the outline of the physical domain and of the source star.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    rows = list(snapshots.items())
    if not rows:
        raise ValueError("snapshots is empty; pass {label: wavefield_snapshots(...)}")
    times = rows[0][1].times_s
    for label, snap in rows:
        if not np.array_equal(snap.times_s, times):
            raise ValueError(f"row {label!r} has times {snap.times_s.tolist()}; expected {times.tolist()} like "
                             f"row {rows[0][0]!r}")
    if not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    n_rows, n_cols = len(rows), len(times)
    window = max(s.padding_cells for _, s in rows) if window_cells is None else int(window_cells)
    if window < 0:
        raise ValueError(f"window_cells must be >= 0, got {window_cells}")
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel_inches * n_cols + 0.8, panel_inches * n_rows + 0.3),
                             constrained_layout=True, squeeze=False)
    clip = float(np.percentile(np.abs(np.concatenate([s.interior().ravel() for _, s in rows])),
                               clip_percentile)) or 1.0
    for i, (label, snap) in enumerate(rows):
        nz, nx = snap.model_shape
        width_km, depth_km = nx * snap.dx_m / 1000.0, nz * snap.dx_m / 1000.0
        src_z, src_x = ((c + 0.5) * snap.dx_m / 1000.0 for c in snap.source_location)
        margin_km = window * snap.dx_m / 1000.0
        for k, ax in enumerate(axes[i]):
            ax.imshow(snap.pressure[k], cmap=GATHER_CMAP, vmin=-clip, vmax=clip, extent=snap.extent_km(),
                      interpolation="bilinear")
            ax.set(xlim=(-margin_km, width_km + margin_km), ylim=(depth_km + margin_km, -margin_km))
            ax.plot([0, width_km, width_km, 0, 0], [0, 0, depth_km, depth_km, 0], color=domain_colour, lw=1.2,
                    ls="--")
            ax.plot(src_x, src_z, marker="*", color=domain_colour, ms=8)
            ax.tick_params(labelsize=9)
            if i == 0:
                ax.set_title(f"t = {snap.times_s[k]:.2f} s", fontsize=11)
            if i == n_rows - 1:
                ax.set_xlabel("x (km)", fontsize=10)
            if k == 0:
                ax.set_ylabel(f"{label}\nz (km)", fontsize=10)
    return fig


def plot_gradient(gradient, ax=None, title=None, dx_m: float = 10.0, clip_percentile: float = 99.0,
                  colorbar: bool = True, label: str = "relative value"):
    """A signed map (e.g. an FWI gradient or update) in a red-blue scale centred on zero.

    Parameters
    ----------
    gradient : array_like
        ``(nz, nx)`` (leading singleton axes allowed), rows = depth.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when omitted.
    title : str, optional
        Axes title.
    dx_m : float, default 10.0
        Grid spacing in metres.
    clip_percentile : float, default 99.0
        Colour limits are +- this percentile of ``abs(gradient)``; the map is divided
        by that value, so the colour bar reads from -1 to 1.
    colorbar : bool, default True
        Add a colour bar.
    label : str, default "relative value"
        Colour-bar label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    g = _as_2d(gradient, "gradient")
    if dx_m <= 0:
        raise ValueError(f"dx_m must be positive, got {dx_m}")
    if not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    fig, ax = _new_axes(ax, (4.2, 3.5))
    clip = float(np.percentile(np.abs(g), clip_percentile)) or 1.0
    nz, nx = g.shape
    im = ax.imshow(g / clip, cmap=DIFFERENCE_CMAP, vmin=-1, vmax=1, interpolation="nearest",
                   extent=(0.0, nx * dx_m / 1000.0, nz * dx_m / 1000.0, 0.0))
    ax.set_xlabel("distance x (km)")
    ax.set_ylabel("depth z (km)")
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label=label)
    return fig


def plot_taylor_test(result, ax=None, title: str | None = "Taylor test"):
    """The two remainders of a Taylor test against the step ``h``, log-log, with slopes 1 and 2.

    Parameters
    ----------
    result : TaylorTest
        Result of :func:`fwi_teach.physics.taylor_test`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when omitted.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Reference lines of slope 1 and 2 start at each remainder's largest step:
        a correct gradient puts the second remainder on the slope-2 line.
    """
    h = np.asarray(result.steps, dtype=np.float64)
    first, second = (np.asarray(r, dtype=np.float64) for r in (result.remainder_first, result.remainder_second))
    fig, ax = _new_axes(ax, (5.5, 4.0))
    ax.loglog(h, first, "o-", color="tab:blue", label=r"$|J(m+h\,dm)-J(m)|$")
    ax.loglog(h, second, "s-", color="tab:red", label=r"$|J(m+h\,dm)-J(m)-h\,\langle g,dm\rangle|$")
    ax.loglog(h, first[0] * h / h[0], ":", color="tab:blue", label="slope 1")
    ax.loglog(h, second[0] * (h / h[0]) ** 2, ":", color="tab:red", label="slope 2")
    ax.set_xlabel("step h")
    ax.set_ylabel("remainder")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=9)
    return fig
