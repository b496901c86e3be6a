"""Paired bootstrap confidence intervals for differences between models.

Two models tested on the same test samples (and, with several training seeds, trained
with the same seeds on the same data) are compared *paired*: the difference of their
metric on every test sample is resampled, not the two means separately, so the
sample-to-sample spread that both share (hard and easy velocity models) cancels.

With several seeds the bootstrap resamples both: each resample draws seeds with
replacement and, independently, test samples with replacement within each stratum (test
family). Every seed is tested on the same samples, so seeds and samples are crossed, not
nested: one draw of samples is shared by all drawn seeds, and a per-sample advantage that
repeats in every seed counts once, not once per seed. The statistic is the mean over strata
of the mean over seeds and samples, so each family weighs the same whatever its number of
test samples. With as few as three seeds the percentile bootstrap understates the
seed-to-seed spread (by about a third of its variance); read intervals over three seeds as
somewhat optimistic about that part.

=========================  ================================================================
:func:`paired_interval`     mean difference and its percentile bootstrap CI
:class:`Interval`           the result; :meth:`Interval.outcome` says won / lost / tied
=========================  ================================================================

Resampling uses a fixed generator seed, so the same numbers give the same interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Interval", "paired_interval", "N_RESAMPLES", "LEVEL", "OUTCOMES"]

#: Bootstrap resamples per interval.
N_RESAMPLES = 4000
#: Confidence level of every interval.
LEVEL = 0.95
#: What a comparison can come to: its CI on the claimed side of the threshold, on the other side, or across it.
OUTCOMES = ("won", "lost", "tied")


@dataclass(frozen=True)
class Interval:
    """A mean difference with its bootstrap confidence interval.

    Attributes
    ----------
    mean : float
        The statistic on the data (mean over strata of per-stratum means).
    low, high : float
        Bounds of the ``level`` percentile interval.
    level : float
    n_seeds : int
        Seeds (outer resampling level; 1 means samples only).
    n_samples : int
        Paired test samples per seed, summed over strata.
    """

    mean: float
    low: float
    high: float
    level: float
    n_seeds: int
    n_samples: int

    def outcome(self, threshold: float = 0.0) -> str:
        """``"won"`` if the whole interval lies above ``threshold``, ``"lost"`` below, else ``"tied"``.

        Orient the difference so that the claim predicts a positive value; a
        non-inferiority margin ``m`` is ``threshold=-m``.
        """
        if self.low > threshold:
            return "won"
        if self.high < threshold:
            return "lost"
        return "tied"

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _as_strata(diffs) -> list:
    """``diffs`` as a list (strata) of float arrays of shape (seeds, samples)."""
    single = isinstance(diffs, np.ndarray) or (len(diffs) > 0 and np.ndim(diffs[0]) == 0)
    strata = [np.asarray(d, dtype=np.float64) for d in ([diffs] if single else diffs)]
    strata = [d[None, :] if d.ndim == 1 else d for d in strata]
    if not strata:
        raise ValueError("no differences to resample: pass at least one stratum with paired samples")
    seeds = {d.shape[0] for d in strata}
    for d in strata:
        if d.ndim != 2 or d.shape[1] == 0:
            raise ValueError(f"a stratum has shape {d.shape}; expected (seeds, samples) with at least one sample")
        if not np.all(np.isfinite(d)):
            raise ValueError("diffs contain NaN or infinite values; check the per-sample metrics")
    if len(seeds) != 1:
        raise ValueError(f"strata have different numbers of seeds {sorted(seeds)}; every stratum needs the same seeds")
    return strata


def paired_interval(diffs, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> Interval:
    """Mean of paired differences with a (hierarchical) percentile bootstrap interval.

    Parameters
    ----------
    diffs : array_like or list of array_like
        Per-sample differences ``metric(A) - metric(B)`` on the same test samples:
        shape ``(samples,)`` (one seed) or ``(seeds, samples)``, or a list of such
        arrays, one per stratum (test family), each with the same seeds.
    n_resamples : int, default :data:`N_RESAMPLES`
    level : float, default 0.95
    seed : int, default 0
        Seed of the resampling generator.

    Returns
    -------
    Interval

    Raises
    ------
    ValueError
        For empty strata, NaN values, strata with different seed counts, or a level
        outside (0, 1).

    Examples
    --------
    >>> ci = paired_interval([0.1, 0.2, 0.15, 0.12])
    >>> ci.outcome()
    'won'
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level}; expected a confidence level in (0, 1), e.g. 0.95")
    if int(n_resamples) != n_resamples or n_resamples < 100:
        raise ValueError(f"n_resamples={n_resamples}; expected an integer >= 100")
    strata = _as_strata(diffs)
    rng = np.random.default_rng(seed)
    n_seeds = strata[0].shape[0]
    b = int(n_resamples)
    seed_idx = rng.integers(0, n_seeds, size=(b, n_seeds)) if n_seeds > 1 else np.zeros((b, 1), dtype=np.int64)
    total = np.zeros(b)
    for d in strata:
        n = d.shape[1]
        sample_idx = rng.integers(0, n, size=(b, n))  # shared by the drawn seeds: samples are crossed with seeds
        total += d[seed_idx[:, :, None], sample_idx[:, None, :]].mean(axis=(1, 2))
    boot = total / len(strata)
    mean = float(np.mean([d.mean() for d in strata]))
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return Interval(mean, float(low), float(high), float(level), int(n_seeds), int(sum(d.shape[1] for d in strata)))
