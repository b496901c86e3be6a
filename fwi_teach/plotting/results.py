"""Figures of experiment results: model comparisons, the evaluation matrix, the low-data sweep, memory.

The functions take the row tables of a results folder
(:class:`fwi_teach.experiments.reproduce.ReferenceResults`, or the ``rows`` of a results record) and
return the :class:`matplotlib.figure.Figure` they drew; :func:`save_reference_figures`
writes all of them for a results folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_model_comparison", "plot_evaluation_matrix", "plot_low_data",
           "plot_openfwi_comparison", "plot_memory_breakdown", "save_reference_figures"]

from .style import KIND_COLOURS, KIND_LABELS, METRIC_TITLES, check_metric


def plot_model_comparison(results, families, kinds, metrics=("mae", "rmse", "ssim"), title=None):
    """Grouped bars: each model kind on each family's test set, one panel per metric.

    Parameters
    ----------
    results : fwi_teach.experiments.results.ReferenceResults or callable
        Its :meth:`~fwi_teach.experiments.results.ReferenceResults.metric` gives the values;
        or a function ``value(kind, family, metric)`` (for example over a live run's records).
    families : sequence of str
        Test families (x axis); each kind is the model trained / fine-tuned on that family
        (the PFM is the one shared model).
    kinds : sequence of str
        Model kinds among "pfm", "baseline", "fft", "lora".
    metrics : sequence of str
        Among "mae", "rmse", "ssim".

    Raises
    ------
    ValueError
        Unknown metric or kind; KeyError if a run is missing from ``results``.
    """
    import matplotlib.pyplot as plt

    for m in metrics:
        check_metric(m)
    bad = [k for k in kinds if k not in ("pfm", "baseline", "fft", "lora")]
    if bad:
        raise ValueError(f"unknown model kind(s) {bad}; use pfm, baseline, fft or lora")
    value = results if callable(results) else results.metric
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False,
                             constrained_layout=True)
    x, width = np.arange(len(families)), 0.8 / len(kinds)
    for ax, m in zip(axes[0], metrics):
        for k, kind in enumerate(kinds):
            values = [value(kind, f, m) for f in families]
            ax.bar(x + (k - (len(kinds) - 1) / 2) * width, values, width, label=KIND_LABELS[kind],
                   color=KIND_COLOURS[kind])
        ax.set_xticks(x, families, rotation=30, ha="right", fontsize=8)
        ax.set_title(METRIC_TITLES[m], fontsize=10)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_evaluation_matrix(rows, metric="ssim", title=None, scale=1.0, fmt="{:.2f}", label=None,
                           figsize=None, fontsize=9):
    """Heat map of every model (rows) on every family's test set (columns).

    Cells a model was trained on are outlined in black, sets seen only in pretraining in
    grey; the rest are out of distribution. ``rows`` are those of the evaluation matrix
    (:func:`fwi_teach.experiments.evaluation_matrix`). Values are multiplied by ``scale``
    (1500 turns normalised MAE / RMSE into m/s), written with ``fmt`` and the colour bar
    is labelled ``label`` (default: the metric's name). ``figsize`` defaults to the page
    width (10 inches) and 0.36 inches per model; ``fontsize`` (points) sets the numbers in
    the cells and the tick labels, so that a 19 x 10 matrix stays legible on the page.
    """
    import matplotlib.pyplot as plt

    check_metric(metric)
    if not rows:
        raise ValueError("rows is empty; pass the rows of an evaluation matrix")
    models = list(dict.fromkeys(r["model"] for r in rows))
    families = list(dict.fromkeys(r["eval_family"] for r in rows))
    cell = {(r["model"], r["eval_family"]): r for r in rows}
    values = np.array([[cell[(m, f)][metric] * scale if (m, f) in cell else np.nan for f in families]
                       for m in models])
    figsize = figsize or (10.0, 0.36 * len(models) + 2.4)
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    im = ax.imshow(values, cmap="viridis" if metric == "ssim" else "viridis_r", aspect="auto")
    middle = (np.nanmax(values) + np.nanmin(values)) / 2
    for i, m in enumerate(models):
        for j, f in enumerate(families):
            if (m, f) not in cell:
                continue
            v = values[i, j]
            dark = (v < middle) == (metric == "ssim")
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
            rel = cell[(m, f)]["relation"]
            if rel in ("train", "pretrain"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.4,
                                           edgecolor="black" if rel == "train" else "0.6"))
    ax.set_xticks(range(len(families)), families, rotation=40, ha="right", fontsize=fontsize)
    ax.set_yticks(range(len(models)), models, fontsize=fontsize)
    ax.set_xlabel("test set", fontsize=fontsize + 1)
    bar = fig.colorbar(im, ax=ax)
    bar.set_label(label or metric.upper(), fontsize=fontsize + 1)
    bar.ax.tick_params(labelsize=fontsize)
    ax.set_title(title or f"{metric.upper()} of every model on every test set (black: trained on it, "
                          "grey: seen in pretraining)", fontsize=fontsize + 1)
    return fig


def plot_low_data(rows, metric="ssim", title=None):
    """One panel per family: ``metric`` against the share of the training data, per method."""
    import matplotlib.pyplot as plt

    check_metric(metric)
    if not rows:
        raise ValueError("rows is empty; pass the rows of a low-data sweep")
    families = list(dict.fromkeys(r["train_family"] for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(min(3.8 * len(families), 10.0), 3.4), squeeze=False,
                             sharey=True, constrained_layout=True)
    for ax, fam in zip(axes[0], families):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((float(r["fraction"]), r[metric]) for r in rows
                         if r["train_family"] == fam and r["method"] == method)
            ax.plot([100 * x for x, _ in pts], [y for _, y in pts], "o-", label=KIND_LABELS.get(method, method),
                    color=KIND_COLOURS.get(method))
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("share of the training set (%)", fontsize=9)
        ax.tick_params(labelsize=9)
    axes[0, 0].set_ylabel(METRIC_TITLES[metric], fontsize=9)
    axes[0, 0].legend(fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_openfwi_comparison(rows, title=None, figsize=None, fontsize=9):
    """Bars of our baseline SSIM next to OpenFWI's published InversionNet SSIM, per family.

    ``rows`` are those of :func:`fwi_teach.experiments.claims.openfwi_comparison`. Where
    they carry the training-mean map's SSIM (``mean_map_ssim``), its bar is drawn between
    the two, so that the reader sees how far above a structureless prediction each model
    is. ``figsize`` defaults to the page width (10 inches); ``fontsize`` (points) sets the
    tick labels, legend and axis label.
    """
    import matplotlib.pyplot as plt

    from ..data.families import family_title

    if not rows:
        raise ValueError("rows is empty; pass fwi_teach.experiments.claims.openfwi_comparison(results)")
    fams = [r["family"] for r in rows]
    bars = [("ssim", KIND_COLOURS["baseline"], "this course (baseline)")]
    if all(r.get("mean_map_ssim") is not None for r in rows):
        bars.append(("mean_map_ssim", KIND_COLOURS["mean-map"], KIND_LABELS["mean-map"]))
    bars.append(("openfwi_ssim", "tab:purple", "OpenFWI, published"))
    x, width = np.arange(len(fams)), 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=figsize or (10.0, 3.8), constrained_layout=True)
    for k, (key, colour, label) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, [r[key] for r in rows], width, color=colour,
               label=label)
    ax.set_xticks(x, [family_title(f) for f in fams], rotation=30, ha="right", fontsize=fontsize)
    ax.tick_params(axis="y", labelsize=fontsize)
    ax.set_ylim(0, 1)
    ax.set_ylabel("SSIM on the test split", fontsize=fontsize)
    ax.legend(fontsize=fontsize, ncol=len(bars), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    ax.set_title(title or "Task-specific InversionNet: this course vs OpenFWI", fontsize=fontsize + 1)
    return fig


def plot_memory_breakdown(accounts: dict, title=None, ax=None):
    """Stacked bars of one training step's memory per component, one group of bars per batch size.

    Parameters
    ----------
    accounts : dict of str to list of fwi_teach.training.memory.StepMemory
        Method label -> its accounts at the same batch sizes (:func:`fwi_teach.training.memory.memory_account`).
        Extrapolated accounts are hatched.
    title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from ..training.memory import COMPONENTS

    if not accounts:
        raise ValueError("accounts is empty; pass {method: memory_account(...)}")
    batches = [r.batch_size for r in next(iter(accounts.values()))]
    if any([r.batch_size for r in rows] != batches for rows in accounts.values()):
        raise ValueError("every method needs accounts at the same batch sizes")
    fig, ax = (plt.subplots(figsize=(10, 4.2), constrained_layout=True) if ax is None else (ax.figure, ax))
    colours = dict(zip(COMPONENTS, ("tab:blue", "tab:purple", "tab:red", "tab:orange", "tab:gray")))
    n, width = len(accounts), 0.8 / len(accounts)
    for k, (method, rows) in enumerate(accounts.items()):
        xpos = np.arange(len(batches)) + (k - (n - 1) / 2) * width
        bottom = np.zeros(len(rows))
        for comp in COMPONENTS:
            gib = np.array([getattr(r, comp) for r in rows]) / 1024
            bars = ax.bar(xpos, gib, width * 0.92, bottom=bottom, color=colours[comp],
                          label=comp.replace("_", " ") if k == 0 else None)
            if comp in ("saved_activations", "batch"):  # the parts that are extrapolated
                for bar, r in zip(bars, rows):
                    if not r.measured:
                        bar.set_hatch("//")
                        bar.set_edgecolor("white")
                        bar.set_linewidth(0)
            bottom += gib
        for x, top in zip(xpos, bottom):
            ax.text(x, top, f" {method}", rotation=90, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("GiB per training step")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title((title or "Training memory per step") + "  (hatched: extrapolated per sample)")
    return fig


def save_reference_figures(results, folder) -> list:
    """Draw the figures of a results folder into ``folder`` (PNG); return their paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    s = results.settings
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "pretraining": plot_model_comparison(results, s["pretrain_families"], ("baseline", "pfm"),
                                             title="PFM vs task-specific baselines"),
        "finetuning": plot_model_comparison(results, s["finetune_families"], ("baseline", "fft", "lora"),
                                            title="Fine-tuned PFM vs task-specific baselines"),
        "ood_matrix": plot_evaluation_matrix(results.mean_rows("matrix")),
        "lowdata": plot_low_data(results.mean_rows("lowdata"), title="Low-data sweep (mean over seeds)"),
        "openfwi": plot_openfwi_comparison(results.openfwi),
    }
    from .evidence import plot_claim, plot_histories, plot_predictions, plot_with_references

    figures["baselines_vs_mean_map"] = plot_with_references(results, list(s["baseline_families"]), ("baseline",),
                                                            title="Task-specific baselines vs the training-mean map")
    figures["finetuning_references"] = plot_with_references(results, list(s["finetune_families"]),
                                                            ("baseline", "pfm", "fft", "lora"))
    for claim in results.claims():
        if claim.context or any(c["metric"] != "exact" for c in claim.comparisons):  # something with a CI to draw
            figures[f"claim{claim.label}"] = plot_claim(claim)
    figures["histories"] = plot_histories(results, ["pfm", f"baseline:{s['finetune_families'][0]}",
                                                    f"fft:{s['finetune_families'][0]}",
                                                    f"lora:{s['finetune_families'][0]}"])
    if results.predictions():
        for fam in s["finetune_families"]:
            figures[f"predictions_{fam}"] = plot_predictions(results, fam)
    paths = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
