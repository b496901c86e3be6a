"""From per-sample test metrics to comparisons with confidence intervals, and to verdicts.

Every evaluation of the experiments keeps the MAE, RMSE and SSIM of each test sample.
Exported results hold them in one long table (``per_sample.csv.gz``), one row per
``(model, fraction, eval_family, seed, sample)``; models are named as in
:func:`fwi_teach.experiments.cache.model_specs` (``"pfm"``, ``"baseline:flatvel-a"``,
``"fft:style-a"``, ``"lora:style-a"``), and ``"mean-map:<family>"`` is the trivial
reference: the family's training-mean velocity map predicted for every test sample.

=============================  =============================================================
:class:`SampleIndex`            the table, indexed: values of one model on one family
:func:`compare`                 paired difference of two models, with its 95 % CI
:func:`learned`                 does a model beat the mean map on MAE *and* SSIM (CIs)?
:func:`verdict`                 reproduced / partly reproduced / inconclusive / contradicted
=============================  =============================================================

A comparison is **won** when its CI lies on the side of zero (or of a stated margin) that
the claim predicts, **lost** when it lies on the other side and **tied** when it spans it.
A claim's verdict counts its comparisons (:func:`verdict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .stats import paired_interval

__all__ = ["METRICS", "BETTER", "VERDICTS", "MEAN_MAP", "relative_improvement", "SampleIndex", "Comparison", "compare",
           "contrast", "learned", "verdict"]

#: Per-sample metrics kept for every evaluation.
METRICS = ("mae", "rmse", "ssim")
#: Direction of improvement of each metric.
BETTER = {"mae": "lower", "rmse": "lower", "ssim": "higher"}

#: Possible verdicts of a claim, from best to worst supported.
VERDICTS = ("reproduced", "partly reproduced", "inconclusive", "contradicted")
#: Model-name prefix of the training-mean-map reference.
MEAN_MAP = "mean-map"


def relative_improvement(metric: str, value: float, reference: float) -> float:
    """How much better ``value`` is than ``reference`` on ``metric``, in percent of the reference.

    Positive means better in the metric's own direction (:data:`BETTER`): a lower MAE or
    RMSE, a higher SSIM.

    Raises
    ------
    ValueError
        For a metric not in :data:`METRICS`.
    """
    if metric not in BETTER:
        raise ValueError(f"metric={metric!r}; expected one of {METRICS}")
    gain = (reference - value) if BETTER[metric] == "lower" else (value - reference)
    return 100.0 * gain / abs(reference)


class SampleIndex:
    """Per-sample metrics indexed by model, training share, family, seed and split.

    Parameters
    ----------
    rows : iterable of dict
        Keys ``model``, ``fraction``, ``eval_family``, ``seed``, ``sample``, the
        :data:`METRICS` and optionally ``split`` (``"test"``, the default, or ``"val"``:
        the validation split, on which :func:`learned` decides). Rows of a
        ``mean-map:<family>`` model need no seed (it applies to every seed).

    Raises
    ------
    ValueError
        If a row lacks a key, or one (model, fraction, family, seed) has duplicate or
        missing sample numbers.
    """

    def __init__(self, rows):
        groups = {}
        for r in rows:
            try:
                key = (str(r["model"]), float(r["fraction"]), str(r["eval_family"]),
                       None if r.get("seed") in (None, "") else int(r["seed"]), str(r.get("split") or "test"))
                groups.setdefault(key, []).append((int(r["sample"]), [float(r[m]) for m in METRICS]))
            except KeyError as err:
                raise ValueError(f"a per-sample row lacks {err}; expected keys model, fraction, eval_family, seed, "
                                 f"sample, {', '.join(METRICS)}") from None
        self._data = {}
        for key, items in groups.items():
            items.sort()
            numbers = [i for i, _ in items]
            if numbers != list(range(len(numbers))):
                raise ValueError(f"per-sample rows of {key} number their samples {numbers[:5]}...; expected 0..n-1 "
                                 "once each (merged twice, or cut short?)")
            values = np.array([v for _, v in items], dtype=np.float64)
            self._data[key] = {m: values[:, j] for j, m in enumerate(METRICS)}

    def __len__(self) -> int:
        return len(self._data)

    @property
    def seeds(self) -> list:
        """Training seeds present."""
        return sorted({k[3] for k in self._data if k[3] is not None})

    def has(self, model, eval_family, fraction=1.0, split="test") -> bool:
        """Whether any seed of ``model`` at ``fraction`` was evaluated on ``eval_family``'s ``split``."""
        return any(k[:3] == (model, float(fraction), eval_family) and k[4] == split for k in self._data)

    def values(self, model, eval_family, metric, fraction=1.0, seeds=None, split="test") -> np.ndarray:
        """Array ``(seeds, samples)`` of ``metric`` of ``model`` on ``eval_family``'s ``split``.

        ``seeds`` default: every seed of the model. A mean-map model repeats its one
        row for each requested seed.

        Raises
        ------
        KeyError
            If the model was not tested there (for one of the seeds).
        """
        seeds = self.seeds if seeds is None else list(seeds)
        if model.startswith(MEAN_MAP):
            key = (model, 1.0, eval_family, None, split)
            if key not in self._data:
                raise KeyError(f"no per-sample metrics of {model} on {eval_family} ({split} split)")
            return np.repeat(self._data[key][metric][None, :], max(1, len(seeds)), axis=0)
        out = []
        for s in seeds:
            key = (model, float(fraction), eval_family, s, split)
            if key not in self._data:
                raise KeyError(f"no per-sample metrics of {model} (share {fraction:g}, seed {s}) on {eval_family} "
                               f"({split} split)")
            out.append(self._data[key][metric])
        return np.stack(out)

    def model_seeds(self, model, eval_family, fraction=1.0, split="test") -> list:
        """Seeds at which ``model`` was evaluated on ``eval_family``'s ``split``."""
        return sorted(k[3] for k in self._data
                      if k[:3] == (model, float(fraction), eval_family) and k[3] is not None and k[4] == split)


@dataclass
class Comparison:
    """One paired comparison: model ``a`` against ``b`` on ``metric`` over ``families``.

    ``mean``, ``low`` and ``high`` are the difference ``a - b`` in the metric's own units
    and its 95 % CI; ``outcome`` is "won" (the CI lies on the claimed side of
    ``threshold``, in the direction of improvement), "lost", "tied" or "not counted"
    (``note`` says why).
    """

    label: str
    metric: str
    a: str
    b: str
    families: tuple
    mean: float
    low: float
    high: float
    outcome: str
    threshold: float = 0.0
    counted: bool = True
    note: str = ""
    n_seeds: int = 0
    n_samples: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["families"] = list(self.families)
        return d

    def __str__(self) -> str:
        if self.metric in METRICS:
            text = (f"{self.label}: {self.metric.upper()} {self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
                    f"{self.outcome}")
        else:  # an exact quantity (a share of weights, a memory ratio): no interval
            text = f"{self.label}: {self.mean:.3g} {self.outcome}"
        if not self.counted and not self.note:
            text += ", not counted"
        return text + (f" ({self.note})" if self.note else "")


def contrast(index: SampleIndex, terms, families, metric="ssim", threshold=0.0, label=None, seed=0,
             split="test") -> Comparison:
    """A paired linear contrast ``sum(weight * metric(model at share))`` over ``families`` (strata).

    :func:`compare` is the contrast ``[(1, a, fa), (-1, b, fb)]``; a difference of
    differences such as "the gain of fine-tuning over scratch at 10 % minus that at
    100 %" is four terms. The contrast is evaluated sample by sample and seed by seed
    (over the seeds every trained model of the contrast has), then bootstrapped.

    Parameters
    ----------
    terms : list of (weight, model, fraction)
        ``model`` may hold ``{f}``, replaced by each test family (``"fft:{f}"`` pools
        every family's own fine-tuned model).
    families, metric, threshold, label, seed, split
        As :func:`compare`.

    Returns
    -------
    Comparison
        ``a`` and ``b`` name the models with positive and negative weights.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {METRICS}")
    families = (families,) if isinstance(families, str) else tuple(families)
    if not families:
        raise ValueError("no test family to compare on")
    sign = 1.0 if BETTER[metric] == "higher" else -1.0
    if all(m.startswith(MEAN_MAP) for _, m, _ in terms):
        raise ValueError("a contrast of mean maps only compares nothing; include a trained model")
    strata, n_seeds = [], 0
    for fam in families:
        here = [(w, m.format(f=fam), x) for w, m, x in terms]
        trained = [(m, x) for _, m, x in here if not m.startswith(MEAN_MAP)]
        common = set.intersection(*(set(index.model_seeds(m, fam, x, split)) for m, x in trained))
        if not common:
            raise KeyError(f"{', '.join(m for m, _ in trained)} share no training seed on {fam} (or one of them was "
                           "not tested there); train them with the same seeds")
        arrays = [(w, index.values(m, fam, metric, x, sorted(common), split)) for w, m, x in here]
        if len({v.shape for _, v in arrays}) != 1:
            raise ValueError(f"the models were tested on different numbers of {fam} samples; they must share the "
                             "test set")
        strata.append(sign * sum(w * v for w, v in arrays))
        n_seeds = len(common)
    ci = paired_interval(strata, seed=seed)
    low, high = sorted((sign * ci.low, sign * ci.high))
    pos = " + ".join(m for w, m, _ in terms if w > 0)
    neg = " + ".join(m for w, m, _ in terms if w < 0)
    return Comparison(label or f"{pos} vs {neg}", metric, pos, neg, families, sign * ci.mean, low, high,
                      ci.outcome(threshold), threshold, n_seeds=n_seeds, n_samples=ci.n_samples)


def compare(index: SampleIndex, a, b, families, metric="ssim", fraction_a=1.0, fraction_b=1.0, threshold=0.0,
            label=None, seed=0, split="test") -> Comparison:
    """Paired comparison of models ``a`` and ``b`` on the test sets of ``families`` (strata).

    Parameters
    ----------
    index : SampleIndex
    a, b : str
        Model names (``"fft:style-a"``, ``"mean-map:style-a"`` ...).
    families : str or sequence of str
        Test families; several are pooled as strata of equal weight.
    metric : {"mae", "rmse", "ssim"}
    fraction_a, fraction_b : float
        Training shares of the two models (low-data runs).
    threshold : float
        In the direction of improvement: the comparison is won when the improvement's
        CI lies above it (``-margin`` for "at most ``margin`` worse").
    label : str, optional
    seed : int
        Bootstrap seed.
    split : {"test", "val"}
        Which split's samples (claims use the test split; :func:`learned` the validation split).

    Returns
    -------
    Comparison
        ``mean``, ``low``, ``high``: ``a - b`` in the metric's units, over the seeds
        both models have (the mean map has every seed).

    Raises
    ------
    KeyError
        If a model was not tested on a family, or the two share no training seed there.
    ValueError
        For an unknown metric, or test sets of different sizes.
    """
    return contrast(index, [(1.0, a, fraction_a), (-1.0, b, fraction_b)], families, metric, threshold,
                    label or f"{a} vs {b}", seed, split)


def learned(index: SampleIndex, model, family, fraction=1.0, split="val") -> tuple:
    """Whether ``model`` beats the training-mean map on ``family`` by MAE and by SSIM (both CIs won).

    Decided on the validation split by default, so that which comparisons a claim counts
    is never chosen by looking at the test samples that then give its intervals.

    Returns
    -------
    (bool, list of Comparison)
        The verdict and the two comparisons behind it. A model that does not is
        marked "did not learn"; claims do not count comparisons that rest on it.
    """
    comps = [compare(index, model, f"{MEAN_MAP}:{family}", family, m, fraction_a=fraction, split=split,
                     label=f"{model} vs mean map on {family} ({split} split)") for m in ("mae", "ssim")]
    return all(c.outcome == "won" for c in comps), comps


def verdict(comparisons) -> str:
    """The verdict of a claim from its comparisons (those with ``counted=False`` are ignored).

    - **reproduced**: every counted comparison is won;
    - **partly reproduced**: some are won, and more are won than lost;
    - **contradicted**: at least one is lost, and no fewer are lost than won;
    - **inconclusive**: none is won or lost (all tied), or none could be counted.
    """
    counted = [c for c in comparisons if c.counted]
    won = sum(c.outcome == "won" for c in counted)
    lost = sum(c.outcome == "lost" for c in counted)
    if counted and won == len(counted):
        return "reproduced"
    if won > lost:
        return "partly reproduced"
    if lost and lost >= won:
        return "contradicted"
    return "inconclusive"
