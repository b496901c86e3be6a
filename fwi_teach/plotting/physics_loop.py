"""Figures of the physics loop: gathers of a prediction against the data, misfits, hybrid-FWI curves.

:func:`plot_gather_residual` shows one shot of the observed data, the data simulated in a
predicted model and their difference on one grey scale; :func:`plot_data_misfit` the
mean relative data misfit of every model kind per family with 95 % CIs;
:func:`plot_hybrid_curves` model error and data misfit along multiscale FWI, one line per
start. They return the Figure and never call ``show``.
"""

from __future__ import annotations

import numpy as np

from .style import GATHER_CMAP, KIND_COLOURS, KIND_LABELS

__all__ = ["plot_gather_residual", "plot_data_misfit", "plot_hybrid_curves", "START_COLOURS", "START_LABELS"]

#: Colour and label of each FWI start (network starts use the model kinds' colours).
START_COLOURS = {"smoothed-truth": "tab:purple", "truth": "tab:purple", **KIND_COLOURS}
START_LABELS = {"smoothed-truth": "smoothed truth", "truth": "true model", **KIND_LABELS}


def plot_gather_residual(observed, predicted, dt_s=1e-3, receiver_spacing_m=10.0, clip_percentile=99.0,
                         titles=("observed", "simulated in the prediction", "difference"), panel_inches=3.2):
    """Observed shot, the shot simulated in a predicted model, and their difference.

    Parameters
    ----------
    observed, predicted : array_like
        One shot each, ``(nt, n_receivers)``.
    dt_s, receiver_spacing_m : float
        Sampling of the time and receiver axes.
    clip_percentile : float
        One grey scale for the three panels: +- this percentile of ``abs(observed)``.
    titles : tuple of 3 str
    panel_inches : float
        Width of one panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    obs = np.asarray(observed, dtype=np.float64).squeeze()
    pred = np.asarray(predicted, dtype=np.float64).squeeze()
    if obs.ndim != 2 or obs.shape != pred.shape:
        raise ValueError(f"observed {obs.shape} and predicted {pred.shape} must be one shot each, (nt, n_receivers)")
    clip = float(np.percentile(np.abs(obs), clip_percentile)) or 1.0
    extent = (0.0, obs.shape[1] * receiver_spacing_m / 1000.0, obs.shape[0] * dt_s, 0.0)
    fig, axes = plt.subplots(1, 3, figsize=(3 * panel_inches, 1.3 * panel_inches), sharey=True,
                             constrained_layout=True)
    for ax, data, title in zip(axes, (obs, pred, obs - pred), titles):
        ax.imshow(data, cmap=GATHER_CMAP, vmin=-clip, vmax=clip, aspect="auto", extent=extent)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("receiver position (km)")
    axes[0].set_ylabel("time (s)")
    return fig


def plot_data_misfit(summary, kinds=("truth", "mean-map", "pfm", "baseline", "fft", "lora"), title=None,
                     figsize=(10, 3.8)):
    """Mean relative L2 data misfit per family and model kind, with 95 % CI error bars.

    Parameters
    ----------
    summary : list of dict
        Rows of :func:`fwi_teach.experiments.physics_results.summarise_misfit`.
    kinds : sequence of str
        Model kinds to draw, in this order (missing ones are skipped).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not summary:
        raise ValueError("summary is empty; pass the rows of summarise_misfit")
    families = sorted({r["eval_family"] for r in summary})
    present = [k for k in kinds if any(r["model"] == k for r in summary)]
    width = 0.8 / max(len(present), 1)
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    for j, kind in enumerate(present):
        rows = {r["eval_family"]: r for r in summary if r["model"] == kind}
        x = np.array([i for i, f in enumerate(families) if f in rows]) + (j - (len(present) - 1) / 2) * width
        mean = np.array([rows[f]["data_misfit"] for f in families if f in rows])
        err = np.array([[rows[f]["data_misfit"] - rows[f]["data_misfit_low"],
                         rows[f]["data_misfit_high"] - rows[f]["data_misfit"]] for f in families if f in rows]).T
        ax.bar(x, mean, width, yerr=err, capsize=2, color=START_COLOURS.get(kind, "0.5"),
               label=START_LABELS.get(kind, kind))
    ax.set_xticks(range(len(families)), families, fontsize=10)
    ax.set_ylabel("relative L2 data misfit", fontsize=10)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.set_title(title or "Does the predicted model explain the data? (lower is better, 95 % CI)", fontsize=11)
    return fig


def plot_hybrid_curves(rows, metrics=("model_rmse_mps", "data_misfit"), title=None, figsize=(10, 3.8)):
    """Model error and data misfit along hybrid FWI: one line per start (mean over samples).

    Thin lines are single samples; vertical dotted lines mark where the frequency band
    changes.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`fwi_teach.experiments.physics_loop.hybrid_rows`.
    metrics : sequence of str
        Curves to draw, one panel each (``model_rmse_mps``, ``model_mae``, ``data_misfit``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows is empty; pass the rows of hybrid_rows")
    labels = {"model_rmse_mps": "model RMSE (m/s)", "model_mae": "model MAE (normalised)",
              "data_misfit": "relative L2 data misfit"}
    bad = [m for m in metrics if m not in labels]
    if bad:
        raise ValueError(f"metrics {bad}; choose from {tuple(labels)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=figsize, constrained_layout=True, squeeze=False)
    starts = list(dict.fromkeys(r["start"] for r in rows))
    bands = rows[0]["band_hz"]
    changes = [i for i in range(1, len(bands)) if bands[i] != bands[i - 1]]
    for ax, metric in zip(axes[0], metrics):
        for start in starts:
            curves = np.array([r[metric] for r in rows if r["start"] == start], dtype=np.float64)
            colour = START_COLOURS.get(start, "0.5")
            it = np.arange(curves.shape[1])
            for c in curves:
                ax.plot(it, c, color=colour, alpha=0.2, lw=0.8)
            ax.plot(it, curves.mean(0), color=colour, lw=2.2, label=START_LABELS.get(start, start))
        for c in changes:
            ax.axvline(c, color="0.6", ls=":", lw=1)
        ax.set_xlabel("FWI iteration", fontsize=10)
        ax.set_ylabel(labels[metric], fontsize=10)
    axes[0][-1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves
    fig.suptitle(title or "Hybrid FWI from each start (thick: mean over test samples)", fontsize=11)
    return fig
