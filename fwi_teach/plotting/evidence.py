"""Figures of the evidence: comparisons with confidence intervals, references, learning curves, predictions.

Each function takes a results folder (:class:`fwi_teach.experiments.results.ReferenceResults`) or the
claims of :func:`fwi_teach.experiments.claims.evaluate_claims` and returns the
:class:`matplotlib.figure.Figure` it drew.

=============================  ============================================================
:func:`plot_claim`              every comparison of a claim: mean difference and 95 % CI
:func:`plot_with_references`    models on their test sets with CIs, beside the mean map
                                and the zero-shot PFM
:func:`plot_histories`          training and validation loss per epoch (mean over seeds)
:func:`plot_predictions`        test samples: truth, mean map, and the models' predictions
:func:`plot_tuning`             what the baseline targets would take: validation gain by
                                training-set size, from the tuning probes
=============================  ============================================================
"""

from __future__ import annotations

import numpy as np

from .style import KIND_COLOURS, KIND_LABELS, OUTCOME_COLOURS

__all__ = ["plot_claim", "plot_with_references", "plot_histories", "plot_predictions", "plot_tuning"]


def _as_dict(c):
    return c if isinstance(c, dict) else c.to_dict()


def plot_claim(claim, title=None, context=True):
    """Horizontal error bars: each comparison's mean difference with its 95 % CI.

    Green: won (CI on the claimed side), red: lost, grey: tied; hollow markers are not
    counted (a model did not learn) or reference comparisons (the zero-shot PFM). MAE
    differences are drawn with their sign flipped, so right is always "first model better".

    Parameters
    ----------
    claim : fwi_teach.experiments.claims.Claim
    title : str, optional
    context : bool
        Also draw the reference comparisons.
    """
    import matplotlib.pyplot as plt

    comps = [(_as_dict(c), False) for c in claim.comparisons if _as_dict(c)["metric"] in ("mae", "rmse", "ssim")]
    if context:
        comps += [(_as_dict(c), True) for c in claim.context]
    if not comps:
        raise ValueError(f"claim {claim.label} has no comparison with a confidence interval to draw")
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(comps) + 1.3), constrained_layout=True)
    for i, (c, ref) in enumerate(comps):
        flip = -1.0 if c["metric"] in ("mae", "rmse") else 1.0
        mean, low, high = flip * c["mean"], *sorted((flip * c["low"], flip * c["high"]))
        colour = "tab:blue" if ref else OUTCOME_COLOURS.get(c["outcome"], "0.45")
        hollow = ref or not c.get("counted", True)
        ax.errorbar(mean, i, xerr=[[mean - low], [high - mean]], fmt="o", color=colour, capsize=3,
                    mfc="white" if hollow else colour)
        tag = "reference" if ref else c["outcome"] + ("" if c.get("counted", True) else ", not counted")
        ax.text(1.01, i, f"{c['metric'].upper()}  {tag}", transform=ax.get_yaxis_transform(), fontsize=7,
                va="center")
    ax.axvline(0, color="black", lw=0.8)
    thresholds = {c["threshold"] for c, _ in comps if c.get("threshold")}
    for t in thresholds:
        ax.axvline(t, color="tab:red", lw=0.8, ls="--")
    ax.set_yticks(range(len(comps)), [c["label"] for c, _ in comps], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("difference, first model minus second (MAE sign flipped: right = first model better)")
    ax.set_title(title or f"Claim {claim.label}: {claim.verdict}", fontsize=10)
    return fig


def _mean_ci(values):
    from ..evaluation.stats import paired_interval

    ci = paired_interval(values)
    return ci.mean, ci.low, ci.high


def plot_with_references(results, families, kinds, metric="ssim", title=None):
    """Each model on its own family's test set, with 95 % CIs, beside the references.

    Bars: the mean over seeds and test samples of ``metric`` for each kind (the model
    trained / fine-tuned on the family; "pfm" is the one shared model, zero-shot on
    families it was not pretrained on), the training-mean map as a black bar; error bars
    are bootstrap CIs of the mean (samples and seeds). Kinds not trained on a family are
    left out.
    """
    import matplotlib.pyplot as plt

    index = results.per_sample
    entries = list(kinds) + ["mean-map"]
    fig, ax = plt.subplots(figsize=(1.5 * len(families) + 2.5, 3.4), constrained_layout=True)
    x, width = np.arange(len(families)), 0.8 / len(entries)
    for k, kind in enumerate(entries):
        xs, ys, errs = [], [], [[], []]
        for j, fam in enumerate(families):
            model = kind if kind == "pfm" else f"{kind}:{fam}"
            if not index.has(model, fam):
                continue
            mean, low, high = _mean_ci(index.values(model, fam, metric))
            xs.append(x[j] + (k - (len(entries) - 1) / 2) * width)
            ys.append(mean)
            errs[0].append(mean - low)
            errs[1].append(high - mean)
        ax.bar(xs, ys, width, yerr=errs, capsize=2, color=KIND_COLOURS.get(kind, "0.5"),
               label=KIND_LABELS.get(kind, kind), alpha=0.9)
    from ..data.families import family_title

    ax.set_xticks(x, [family_title(f) for f in families], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric.upper()} on the test split ({'higher' if metric == 'ssim' else 'lower'} is better)")
    if metric == "ssim":
        ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=len(entries), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_title(title or f"{metric.upper()} with 95 % CIs, beside the training-mean map", fontsize=10)
    return fig


def plot_histories(results, models, title=None):
    """Training (dashed) and validation (solid) loss per epoch of ``models``, mean over seeds.

    ``models`` are names as in the per-sample table (``"pfm"``, ``"baseline:flatvel-a"``
    ...), at full data.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    for i, model in enumerate(models):
        rows = [h for h in results.histories if h["model"] == model and float(h["fraction"]) == 1.0]
        if not rows:
            raise KeyError(f"no learning history of {model} in {results.folder}")
        epochs = sorted({int(h["epoch"]) for h in rows})
        colour = f"C{i}"
        for key, style in (("train_loss", "--"), ("val_loss", "-")):
            ys = [np.mean([h[key] for h in rows if int(h["epoch"]) == e and h[key] is not None]) for e in epochs]
            ax.plot(epochs, ys, style, color=colour, label=f"{model} ({key.split('_')[0]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("L1 loss (normalised velocity)")
    ax.legend(fontsize=7)
    ax.set_title(title or "Learning curves (mean over seeds)", fontsize=10)
    return fig


def plot_predictions(results, family, kinds=("baseline", "pfm", "fft", "lora"), n=3, title=None):
    """Test samples of ``family``: truth, training-mean map and each kind's prediction (m/s).

    From ``predictions.npz`` of the results folder (the smallest seed's models).
    """
    import matplotlib.pyplot as plt

    from ..evaluation.metrics import VELOCITY_SCALE_MPS

    pred = results.predictions()
    truth = pred.get(f"{family}/truth")
    if truth is None:
        raise KeyError(f"{results.folder} holds no predictions for {family}")
    columns = [("truth", truth), ("mean-map", np.repeat(pred[f"{family}/mean-map"][None], len(truth), 0))]
    columns += [(k, pred[f"{family}/{k}"]) for k in kinds if f"{family}/{k}" in pred]
    n = min(n, len(truth))
    fig, axes = plt.subplots(n, len(columns), figsize=(1.7 * len(columns), 1.7 * n + 0.5), squeeze=False,
                             constrained_layout=True)
    for i in range(n):
        for j, (name, maps) in enumerate(columns):
            ax = axes[i, j]
            im = ax.imshow(3000 + VELOCITY_SCALE_MPS * maps[i], cmap="viridis", vmin=1500, vmax=4500)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("truth" if name == "truth" else KIND_LABELS.get(name, name), fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="velocity (m/s)")
    from ..data.families import family_title

    fig.suptitle(title or f"{family_title(family)}: test samples and predictions", fontsize=10)
    return fig


def plot_tuning(probes, table, epochs, targets, title=None):
    """What the baseline targets would take: validation scores against the training-set size.

    Panels: the SSIM gain over the training-mean map of every probed family but FlatVel-A;
    FlatVel-A's SSIM against its absolute target (where probed); every family's MAE as a
    share of the mean map's. Targets are dashed lines. Filled circles and a solid line:
    probes at ``epochs`` epochs; the dotted line extends their log2-linear fit
    (:func:`fwi_teach.experiments.tuning.scaling`) to where it meets the target (at most 16
    times the largest size; twice it where the trend never does); hollow triangles: twice
    the epochs; hollow squares: more data, fewer epochs, as many steps as the equal-compute
    base of ``table`` (``scaling``'s ``n_train`` x ``epochs``).

    Parameters
    ----------
    probes : list of dict
        The probes of :func:`fwi_teach.experiments.tuning.load_tuning`.
    table : dict
        Their extrapolation, :func:`fwi_teach.experiments.tuning.scaling`.
    epochs : int
        The epochs of the series ``table`` fits (the probes' own,
        :func:`fwi_teach.experiments.tuning.base_epochs`; not a retuned profile's).
    targets : dict
        ``mae_ratio``, ``ssim_gain`` and ``flatvel_a_ssim``
        (:data:`fwi_teach.experiments.tuning.TARGETS`).
    """
    import matplotlib.pyplot as plt

    from ..data.families import family_title

    if not table:
        raise ValueError("no family has probes at two training-set sizes; record some with "
                         "`python benchmarks/tune_cpu.py --record`")
    colours = {fam: f"C{i}" for i, fam in enumerate(table)}
    others = [f for f in table if f != "flatvel-a"]
    panels = ([("gain", others)] if others else []) + ([("flatvel-a", ["flatvel-a"])] if "flatvel-a" in table
                                                       else []) + [("mae", list(table))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), constrained_layout=True, squeeze=False)
    value = {"gain": lambda p: p["val_ssim"] - p["mean_map_ssim"], "flatvel-a": lambda p: p["val_ssim"],
             "mae": lambda p: p["val_mae"] / p["mean_map_mae"]}
    target = {"gain": targets["ssim_gain"], "flatvel-a": targets["flatvel_a_ssim"], "mae": targets["mae_ratio"]}
    ylabel = {"gain": "validation SSIM minus the mean map's", "flatvel-a": "FlatVel-A validation SSIM",
              "mae": "validation MAE / the mean map's"}
    for ax, (kind, fams) in zip(axes[0], panels):
        for fam in fams:
            s, colour = table[fam], colours[fam]
            at = {p["n_train"]: p for p in probes if p["family"] == fam and p["epochs"] == epochs}
            ys = [value[kind](at[n]) for n in s["sizes"]]
            ax.plot(s["sizes"], ys, "o-", color=colour, label=family_title(fam))
            icpt, slope = s[{"gain": "ssim_fit", "flatvel-a": "ssim_level_fit", "mae": "mae_fit"}[kind]]
            need = s["n_for_mae"] if kind == "mae" else s["n_for_ssim"]
            end = 2 * max(s["sizes"]) if need is None else min(need, 16 * max(s["sizes"]))
            if end > max(s["sizes"]):
                grid = np.linspace(np.log2(max(s["sizes"])), np.log2(end), 20)
                ax.plot(2 ** grid, slope * grid + icpt, ":", color=colour)
            for p in probes:
                if p["family"] == fam and p["epochs"] != epochs:
                    ax.plot(p["n_train"], value[kind](p), "^" if p["epochs"] == 2 * epochs else "s", mfc="none",
                            color=colour, ms=8)
        ax.axhline(target[kind], color="black", ls="--", lw=1, label=f"target {target[kind]:g}"
                   + ("x" if kind == "mae" else ""))
        ax.plot([], [], "^", mfc="none", color="0.3", label=f"{2 * epochs} epochs")
        ax.plot([], [], "s", mfc="none", color="0.3", label="more data, as many steps")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"training samples ({epochs} epochs)")
        ax.set_ylabel(ylabel[kind])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title or "What the baseline targets would take (tuning probes, validation split; "
                 "dotted: log2-linear trend)")
    return fig
