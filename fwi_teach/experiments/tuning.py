"""What the cpu profile's baseline targets would take: the tuning probes and their extrapolation.

``benchmarks/tune_cpu.py --record`` trains task-specific baselines on data of their own seed
(never a profile's test split) at several training-set sizes and epoch counts and writes
each probe's best validation SSIM and MAE, next to the training-mean map's on the same
validation samples, to ``results/<profile>/tuning.json``. :func:`scaling` fits, per family,
the gain over the mean map against log2 of the training-set size and says how many
samples (and, at the measured throughput, how many minutes of training per family) the
targets of :data:`~fwi_teach.experiments.claims.BASELINE_TARGETS` and
:data:`FLATVEL_A_SSIM` would take if that trend held. A log-linear trend is a rough
model (gains usually flatten as a model saturates), so its figures are probably
optimistic about the data needed, and the text says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..data.families import family_title
from .claims import BASELINE_TARGETS

__all__ = ["FLATVEL_A_SSIM", "TARGETS", "TUNING_FILE", "load_tuning", "base_epochs", "scaling", "tuning_lines"]

#: The FlatVel-A baseline's SSIM target at the cpu profile.
FLATVEL_A_SSIM = 0.85
#: Every baseline target: the MAE ratio and SSIM gain over the mean map, and FlatVel-A's SSIM.
TARGETS = {**BASELINE_TARGETS, "flatvel_a_ssim": FLATVEL_A_SSIM}
#: The probes' file inside ``results/<profile>/``.
TUNING_FILE = "tuning.json"
_KEYS = ("family", "n_train", "epochs", "val_ssim", "val_mae", "mean_map_ssim", "mean_map_mae", "samples_per_s")


def load_tuning(folder) -> list[dict]:
    """The probes recorded in ``folder/tuning.json`` ([] when there is no such file).

    Raises
    ------
    ValueError
        If the file is not a list of probes with the fields :func:`scaling` reads.
    """
    path = Path(folder) / TUNING_FILE
    if not path.is_file():
        return []
    probes = json.loads(path.read_text())
    bad = [p for p in probes if not isinstance(p, dict) or any(k not in p for k in _KEYS)] \
        if isinstance(probes, list) else [probes]
    if bad:
        raise ValueError(f"{path} is not a list of tuning probes with the fields {_KEYS}; record it again with "
                         "`python benchmarks/tune_cpu.py --record`")
    return probes


def base_epochs(probes: list[dict]) -> int | None:
    """The epoch count most probes share (the smaller on a tie): the series :func:`scaling` fits.

    The probes keep the epochs they were trained at when a profile is retuned later, so the
    series is found from the probes themselves, not from a profile's ``epochs_baseline``.
    """
    counts = {}
    for p in probes:
        counts[p["epochs"]] = counts.get(p["epochs"], 0) + 1
    return min(counts, key=lambda e: (-counts[e], e)) if counts else None


def _fit(points):
    """Least-squares line ``y = a + b x`` through ``(x, y)`` points (b None with fewer than two distinct x)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return my, None
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


def _needed(fit, target, rising=True):
    """Training-set size where the trend ``fit`` (intercept, slope against log2 of the size) reaches
    ``target``, rising to it or (``rising=False``) falling to it; None where it never does."""
    a, b = fit
    if b is None or (b <= 0 if rising else b >= 0):
        return None
    return 2 ** ((target - a) / b)


def _gain(probe: dict) -> float:
    """A probe's validation SSIM minus the training-mean map's."""
    return probe["val_ssim"] - probe["mean_map_ssim"]


def scaling(probes: list[dict], epochs: int, n_train: int | None = None) -> dict[str, dict]:
    """Per family: the probes at ``epochs`` epochs by training-set size, the gain per doubling, what the targets take.

    Returns a dict per family with ``sizes`` (sorted training-set sizes), ``ssim_gain`` and
    ``mae_ratio`` at each, ``ssim_fit``, ``ssim_level_fit`` (of the SSIM itself) and ``mae_fit``
    (intercept and slope of each against log2 of the size), ``per_doubling`` (SSIM gain added per doubling of the data),
    ``n_for_ssim`` and ``n_for_mae`` (sizes at which the trend meets the SSIM-gain and MAE-ratio
    targets; None where it never does; FlatVel-A's ``n_for_ssim`` is for :data:`FLATVEL_A_SSIM`),
    ``minutes_per_family`` (training time at that size and the probes' median throughput),
    ``more_epochs`` (the gain at twice ``epochs`` minus the gain at ``epochs``, at the
    largest size probed with both, or None), and ``same_compute`` (``(size, epochs, gain
    minus the gain at n_train and epochs)`` of the probe with the most data among those
    that train on as many samples in all as ``n_train`` x ``epochs``, or None).
    """
    out = {}
    for fam in dict.fromkeys(p["family"] for p in probes):
        at = {p["n_train"]: p for p in probes if p["family"] == fam and p["epochs"] == epochs}
        if len(at) < 2:
            continue
        sizes = sorted(at)
        gain = [_gain(at[n]) for n in sizes]
        ratio = [at[n]["val_mae"] / at[n]["mean_map_mae"] for n in sizes]
        x = [math.log2(n) for n in sizes]
        ssim = [at[n]["val_ssim"] for n in sizes]
        fits = {"ssim_fit": _fit(list(zip(x, gain))), "ssim_level_fit": _fit(list(zip(x, ssim))),
                "mae_fit": _fit(list(zip(x, ratio)))}
        # FlatVel-A's SSIM target is absolute, the others' a gain over the mean map
        series, fit, target = ((ssim, fits["ssim_level_fit"], FLATVEL_A_SSIM) if fam == "flatvel-a"
                               else (gain, fits["ssim_fit"], BASELINE_TARGETS["ssim_gain"]))
        # a target met at the smallest size probed is met there, not at a size the trend runs back to
        n_ssim = float(sizes[0]) if series[0] >= target else _needed(fit, target)
        n_mae = (float(sizes[0]) if ratio[0] <= BASELINE_TARGETS["mae_ratio"]
                 else _needed(fits["mae_fit"], BASELINE_TARGETS["mae_ratio"], rising=False))
        rates = sorted(at[n]["samples_per_s"] for n in sizes)
        rate = rates[len(rates) // 2]
        n_max = max((n for n in (n_ssim, n_mae) if n is not None), default=None)
        twice = {p["n_train"]: p for p in probes if p["family"] == fam and p["epochs"] == 2 * epochs}
        both = [n for n in sizes if n in twice]
        more = None
        if both:
            n = max(both)
            more = _gain(twice[n]) - _gain(at[n])
        same = None
        if n_train in at:
            equal = [p for p in probes if p["family"] == fam and p["n_train"] > n_train
                     and p["n_train"] * p["epochs"] == n_train * epochs]
            if equal:
                q = max(equal, key=lambda p: p["n_train"])
                same = (q["n_train"], q["epochs"], _gain(q) - _gain(at[n_train]))
        out[fam] = {"sizes": sizes, "ssim_gain": gain, "mae_ratio": ratio, "ssim": ssim, **fits,
                    "per_doubling": fits["ssim_fit"][1], "n_for_ssim": n_ssim, "n_for_mae": n_mae,
                    "more_epochs": more, "more_epochs_at": max(both) if both else None, "same_compute": same,
                    "minutes_per_family": None if n_max is None else n_max * epochs / rate / 60}
    return out


def _size(n, sizes):
    if n is None:
        return "never on this trend"
    return f"{sizes[0]:,} already" if n == sizes[0] else f"about {n:,.0f}"


def tuning_lines(folder, epochs: int | None = None, n_train: int | None = None,
                 run_epochs: int | None = None) -> list[str]:
    """The README's "what the targets would take" paragraph from ``folder/tuning.json`` ([] without probes):
    an opening sentence, then one Markdown list item per family.

    ``epochs``: the probes' series to fit (default :func:`base_epochs`); ``n_train``: the
    reference run's training-set size (the base of the equal-compute comparison);
    ``run_epochs``: the reference run's baseline epochs, named in the opening sentence
    when they differ from the probes'.
    """
    probes = load_tuning(folder)
    epochs = base_epochs(probes) if epochs is None else epochs
    table = scaling(probes, epochs, n_train) if epochs is not None else {}
    if not table:
        return []
    seeds = sorted({p.get("data_seed") for p in probes if p.get("data_seed") is not None})
    parts = []
    for fam, s in table.items():
        by_size = ", ".join(f"{n:,}: SSIM {v:.3f} ({g:+.3f}), MAE {r:.2f}x" for n, v, g, r in
                            zip(s["sizes"], s["ssim"], s["ssim_gain"], s["mae_ratio"]))
        target = (f"SSIM {FLATVEL_A_SSIM:g}" if fam == "flatvel-a"
                  else f"SSIM +{BASELINE_TARGETS['ssim_gain']:g}")
        text = (f"{family_title(fam)} ({by_size}; {s['per_doubling']:+.3f} SSIM per doubling of the data): {target} "
                f"at {_size(s['n_for_ssim'], s['sizes'])} samples, MAE {BASELINE_TARGETS['mae_ratio']:g}x at "
                f"{_size(s['n_for_mae'], s['sizes'])}")
        if s["minutes_per_family"] is not None:
            text += f" (about {s['minutes_per_family']:.0f} min of training per family at the probes' throughput)"
        if s["more_epochs"] is not None:
            text += (f"; {2 * epochs} instead of {epochs} epochs at {s['more_epochs_at']:,} samples: "
                     f"{s['more_epochs']:+.3f} SSIM")
        if s["same_compute"] is not None:
            n, e, d = s["same_compute"]
            text += f"; {n:,} samples x {e} epochs (as many steps as {n_train:,} x {epochs}): {d:+.3f} SSIM"
        parts.append(f"- {text}.")
    return [f"What the baseline targets would take: probes of task-specific baselines at {epochs} epochs on "
            f"validation samples of data seed(s) {', '.join(map(str, seeds)) or '?'} (never the test split; "
            f"`benchmarks/tune_cpu.py --record`, `{TUNING_FILE}`), best-epoch SSIM and MAE by training-set size, "
            "with the gain over the training-mean map; the sizes at which a log2-linear trend through them meets "
            "each target are rough and probably optimistic, since gains usually flatten as the quarter-width "
            "network saturates" + (f" (the reference run's baselines train {n_train:,} samples x {run_epochs} epochs)"
                                   if run_epochs is not None and n_train is not None and run_epochs != epochs else "")
            + ":", *parts]
