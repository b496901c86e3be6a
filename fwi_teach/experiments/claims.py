"""The paper's claims, judged by code from per-sample test metrics with confidence intervals.

Ghosal et al. (2024) make five claims that the course tests. :func:`evaluate_claims`
takes a results folder (:func:`fwi_teach.experiments.reproduce.load_reference_results`, or any object
with ``settings``, ``per_sample`` (a :class:`fwi_teach.evaluation.evidence.SampleIndex`), ``runs``
and ``memory``) and returns one :class:`Claim` per claim, claim 4 in two parts. Each claim
is a list of paired comparisons (:func:`fwi_teach.evaluation.evidence.compare`) on the held-out test
split, each with its 95 % bootstrap CI over test samples, hierarchical over seeds; the
verdict follows :func:`fwi_teach.evaluation.evidence.verdict` (reproduced, partly reproduced,
inconclusive, contradicted). This module is the only place a verdict is computed: the
README, ``summary.md`` and every chapter call it.

A model whose CIs do not clear the training-mean map on both MAE and SSIM "did not learn"
(decided on the validation split, so that the choice of what counts never looks at the
test samples); comparisons of claims 1, 2, 3 and 5 that rest on it are listed but not
counted. Out-of-distribution comparisons (claim 4) are not gated: no model is expected to
beat the mean map on families it was not trained on, and both models start from one PFM.

The comparisons, stated once here so that a reader can change them:

- 1: the PFM against each pretraining family's task-specific baseline, by SSIM and MAE.
- 2: FFT-PFM against each target's baseline, by SSIM and MAE.
- 3: LoRA-PFM at most :data:`SSIM_MARGIN` SSIM below FFT-PFM on each target (the CI of the
  difference above ``-margin``); training at most :data:`MAX_TRAINABLE_SHARE` of the
  weights; less training memory per step (tensor account of
  :func:`fwi_teach.training.memory.claim_memory_rows` at the profile's batch; full width at batch
  256 is stated beside it).
- 4a: out of distribution: LoRA-PFM against FFT-PFM of each target, by SSIM and MAE, pooled
  over the families that are neither pretraining families nor that target.
- 4b: retention: the same on the pretraining families (what fine-tuning forgets).
  Both list the zero-shot PFM beside them (not counted).
- 5: at each small share (:data:`SMALL_SHARES`), FFT-PFM and LoRA-PFM each against scratch
  by SSIM and MAE, pooled over the low-data families; and "most clearly": the SSIM gain
  over scratch averaged over the small shares minus the gain with all of the data.
  Listed, not counted: each fine-tuned model against the zero-shot PFM at every share
  (the gain of fine-tuning) and the zero-shot PFM against scratch (the gain of pretraining).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.families import family_title
from ..evaluation.published import OPENFWI_INVERSIONNET, OPENFWI_TRAINING
from ..evaluation.evidence import MEAN_MAP, Comparison, compare, contrast, learned, verdict

__all__ = ["SSIM_MARGIN", "MAX_TRAINABLE_SHARE", "SMALL_SHARES",
           "BASELINE_TARGETS", "CLAIM_LABELS", "Claim", "LearningCheck", "evaluate_claims", "openfwi_comparison",
           "claims_markdown"]

#: Claim 3: LoRA-PFM counts as "comparable" if its SSIM is at most this much below FFT-PFM's.
SSIM_MARGIN = 0.02
#: Claim 3: LoRA-PFM should train at most this share of the weights (the paper: about 5 %).
MAX_TRAINABLE_SHARE = 0.10
#: Claim 5: the shares of the training set that count as "low data".
SMALL_SHARES = (0.1, 0.25)

#: The cpu profile's targets for every task-specific baseline: MAE at most this share of the mean
#: map's and SSIM at least the mean map's plus this much (means over seeds), besides both CIs clearing it.
BASELINE_TARGETS = {"mae_ratio": 0.6, "ssim_gain": 0.05}

_TEXT = {
    "1": "The PFM beats task-specific baselines on the six pretraining sets.",
    "2": "FFT-PFM beats task-specific models on the four target sets.",
    "3": "LoRA-PFM is within a stated margin of FFT-PFM in distribution, with about 5 % of the trainable "
         "parameters and lower training memory.",
    "4a": "LoRA-PFM beats FFT-PFM out of distribution (on families neither pretrained nor fine-tuned on).",
    "4b": "LoRA-PFM retains the pretraining families better than FFT-PFM.",
    "5": "PFM-based fine-tuning beats training from scratch most clearly at 10-25 % of the data.",
}
_HYPOTHESIS = {
    "1": "Each baseline trains on one family only; at this scale a small network that sees one family "
         "for the same number of epochs can fit it as well as a shared model that must split its capacity "
         "over six families.",
    "2": "With few samples and epochs the head start from the PFM can be used up before the end of training.",
    "3": "Accuracy: the LoRA rank and learning rate were not tuned per target, and a rank-r update of a small "
         "network may not reach what full fine-tuning reaches. Memory: activations, not weights and optimiser "
         "state, dominate at large batch.",
    "4a": "Out of distribution both fine-tuned models fall back on what the PFM knew; with short fine-tuning "
          "FFT-PFM moves the weights little, so LoRA's frozen backbone has little to protect.",
    "4b": "Short fine-tuning at a small learning rate forgets little, so both keep most of the PFM's skill.",
    "5": "With small shares every model is noisy, and the PFM's advantage depends on how close the target is "
         "to the pretraining families; a scratch model that does not learn cannot be beaten meaningfully.",
}


@dataclass
class Claim:
    """One claim of the paper with its verdict at the scale of a results folder.

    ``comparisons`` decide the verdict (those with ``counted`` false are shown only);
    ``context`` holds reference comparisons (the zero-shot PFM) that are never counted;
    ``not_learned`` names the models that did not beat the mean map where this claim
    tests them. Comparisons are stored as dicts (:meth:`Comparison.to_dict`).
    """

    number: int
    text: str
    verdict: str
    evidence: str
    hypothesis: str = ""
    numbers: dict = field(default_factory=dict)
    part: str = ""
    comparisons: list = field(default_factory=list)
    context: list = field(default_factory=list)
    not_learned: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """``"1"`` ... ``"5"``, with ``"4a"`` and ``"4b"``."""
        return f"{self.number}{self.part}"

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}

    def __str__(self) -> str:
        out = f"Claim {self.label}: {self.text}\n  verdict: {self.verdict.upper()}\n  evidence: {self.evidence}"
        return out + (f"\n  hypothesis: {self.hypothesis}" if self.hypothesis else "")


class LearningCheck:
    """Memoised :func:`fwi_teach.evaluation.evidence.learned`: did a model beat the mean map on a family?"""

    def __init__(self, index):
        self.index, self._memo = index, {}

    def result(self, model, family, fraction=1.0) -> tuple:
        """``(learned, [MAE comparison, SSIM comparison])`` against the mean map."""
        key = (model, family, float(fraction))
        if key not in self._memo:
            self._memo[key] = learned(self.index, model, family, fraction)
        return self._memo[key]

    def __call__(self, model, family, fraction=1.0) -> bool:
        return self.result(model, family, fraction)[0]


def _share(x) -> str:
    return "" if float(x) == 1.0 else f" at {100 * float(x):g} %"


def _gate(comp: Comparison, check: LearningCheck, models, missing: list) -> Comparison:
    """Do not count ``comp`` if one of ``models`` ((model, family, fraction)) did not learn; say so."""
    failed = sorted({m + _share(x) for m, f, x in models if not check(m, f, x)})
    if failed:
        comp.counted = False
        comp.note = "not counted: " + ", ".join(failed) + " did not learn"
        missing += [n for n in failed if n not in missing]
    return comp


def _claim(label, comps, context=(), missing=(), numbers=None, extra="") -> Claim:
    v = verdict(comps)
    counted = [c for c in comps if c.counted]
    tally = {o: sum(c.outcome == o for c in counted) for o in ("won", "lost", "tied")}
    head = (f"{tally['won']} won, {tally['lost']} lost, {tally['tied']} tied of {len(counted)} counted comparisons"
            + (f" ({len(comps) - len(counted)} not counted)" if len(counted) < len(comps) else "")
            + " (difference of the first model minus the second, 95 % CI): ")
    text = head + "; ".join(str(c) for c in comps) + "." + (f" {extra}" if extra else "")
    if context:
        text += " Reference, not counted: " + "; ".join(str(c) for c in context) + "."
    return Claim(int(label[0]), _TEXT[label], v, text, "" if v == "reproduced" else _HYPOTHESIS[label],
                 {**tally, "counted": len(counted), "not_counted": len(comps) - len(counted), **(numbers or {})},
                 part=label[1:], comparisons=[c.to_dict() for c in comps], context=[c.to_dict() for c in context],
                 not_learned=list(missing))


def _pairwise(label, index, check, a_kind, families) -> Claim:
    """Claims 1 and 2: ``a_kind`` against the baseline on each family, by SSIM and MAE."""
    comps, missing = [], []
    for f in families:
        a, b = ("pfm" if a_kind == "pfm" else f"{a_kind}:{f}"), f"baseline:{f}"
        if not (index.has(a, f) and index.has(b, f)):  # not trained (a live run may hold only some runs)
            continue
        for metric in ("ssim", "mae"):
            c = compare(index, a, b, f, metric, label=f"{a} vs {b} on {family_title(f)}")
            comps.append(_gate(c, check, [(a, f, 1.0), (b, f, 1.0)], missing))
    return _claim(label, comps, missing=missing)


def _run_value(runs, kind, family, key):
    values = [r[key] for r in runs if r["kind"] == kind and r["train_family"] == family
              and float(r.get("fraction", 1.0)) == 1.0 and r["eval_family"] == family and r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _memory(results, targets):
    """Claim 3's memory part: (LoRA / FFT ratio that decides, sentence, numbers)."""
    table = {(r["setting"], r["method"]): r for r in getattr(results, "memory", None) or []}
    if ("profile", "fft") in table and ("profile", "lora") in table:
        f, lo = table[("profile", "fft")], table[("profile", "lora")]
        mem = lo["total"] / f["total"]
        text = (f"Training memory per step (tensor account, {f['precision']}) of LoRA-PFM is {100 * mem:.0f} % of "
                f"FFT-PFM's at the profile's batch {int(f['batch_size'])} ({lo['total']:.0f} vs {f['total']:.0f} MiB, "
                f"width {f['width_multiplier']:g})")
        numbers = {"memory_ratio_profile": mem}
        if ("full width", "fft") in table and ("full width", "lora") in table:
            fb, lb = table[("full width", "fft")], table[("full width", "lora")]
            big = lb["total"] / fb["total"]
            text += (f", and {100 * big:.0f} % at full width and batch {int(fb['batch_size'])} ({lb['total'] / 1024:.1f} "
                     f"vs {fb['total'] / 1024:.1f} GiB{'' if fb['measured'] else ', extrapolated per sample'})")
            numbers["memory_ratio_full_width"] = big
        return mem, text + ".", numbers
    peaks = [(_run_value(results.runs, "lora", t, "peak_memory_mb"), _run_value(results.runs, "fft", t,
                                                                                 "peak_memory_mb")) for t in targets]
    peaks = [(a, b) for a, b in peaks if a and b]
    if not peaks:
        return None, "No memory measurement.", {}
    mem = float(np.mean([a / b for a, b in peaks]))
    return mem, f"Recorded peak training memory of LoRA-PFM is {100 * mem:.0f} % of FFT-PFM's.", {}


def _exact(label, value, won) -> Comparison:
    return Comparison(label, "exact", "lora", "fft", (), value, value, value, "won" if won else "lost")


def _claim3(results, index, check, targets) -> Claim:
    comps, missing = [], []
    targets = [t for t in targets if index.has(f"lora:{t}", t) and index.has(f"fft:{t}", t)]
    for t in targets:
        c = compare(index, f"lora:{t}", f"fft:{t}", t, "ssim", threshold=-SSIM_MARGIN,
                    label=f"lora:{t} vs fft:{t} on {family_title(t)} (margin {SSIM_MARGIN})")
        comps.append(_gate(c, check, [(f"lora:{t}", t, 1.0), (f"fft:{t}", t, 1.0)], missing))
    pairs = [(_run_value(results.runs, "lora", t, "trainable_params"), _run_value(results.runs, "fft", t,
                                                                                   "total_params")) for t in targets]
    shares = [a / b for a, b in pairs if a is not None and b]
    share = float(np.mean(shares)) if shares else float("nan")
    if shares:  # a target without both runs is left out, not counted as a small share
        comps.append(_exact(f"trainable share of the weights (at most {MAX_TRAINABLE_SHARE:g})", share,
                            share <= MAX_TRAINABLE_SHARE))
    mem, text, numbers = _memory(results, targets)
    if mem is not None:
        comps.append(_exact("training memory LoRA / FFT (below 1)", mem, mem < 1.0))
    claim = _claim("3", comps, missing=missing, extra=text,
                   numbers={"trainable_share": share, "memory_ratio": mem, "ssim_margin": SSIM_MARGIN, **numbers})
    if not any(c.counted and c.metric != "exact" for c in comps):  # the accuracy part could not be judged
        claim.verdict, claim.hypothesis = "inconclusive", _HYPOTHESIS["3"]
        claim.evidence += " The accuracy part could not be judged (no counted comparison), so the claim is inconclusive."
    return claim


def _claim4(label, index, targets, families_of) -> Claim:
    comps, context = [], []
    for t in targets:
        fams = [f for f in families_of(t) if index.has(f"lora:{t}", f) and index.has(f"fft:{t}", f)
                and index.has("pfm", f)]
        if not fams:
            continue
        where = "unseen families" if label == "4a" else "pretraining families"
        for metric in ("ssim", "mae"):
            comps.append(compare(index, f"lora:{t}", f"fft:{t}", fams, metric,
                                 label=f"lora:{t} vs fft:{t} on the {len(fams)} {where}"))
        for m in ("lora", "fft"):
            context.append(compare(index, f"{m}:{t}", "pfm", fams, "ssim",
                                   label=f"{m}:{t} vs the zero-shot PFM on the {len(fams)} {where}"))
    return _claim(label, comps, context)


def _claim5(index, check, families, fractions) -> Claim:
    families = [f for f in families if all(index.has(f"{k}:{f}", f, x) for k in ("baseline", "fft", "lora")
                                           for x in fractions)]
    small = [x for x in SMALL_SHARES if x in fractions]
    if not small or 1.0 not in fractions or not families:
        return _claim("5", [], extra=f"The low-data sweep lacks the shares {SMALL_SHARES} or 1.0, or its runs.")
    comps, context, missing = [], [], []

    def both_learned(m, f, shares):
        models = [(f"{k}:{f}", f, x) for x in shares for k in (m, "baseline")]
        _gate(Comparison("", "ssim", "", "", (), 0.0, 0.0, 0.0, "tied"), check, models, missing)
        return all(check(*model) for model in models)

    for x in small:
        for m in ("fft", "lora"):
            ok = [f for f in families if both_learned(m, f, [x])]
            for metric in ("ssim", "mae"):
                c = contrast(index, [(1.0, m + ":{f}", x), (-1.0, "baseline:{f}", x)], ok or families, metric,
                             label=f"{m} vs scratch at {100 * x:g} % on {len(ok)} of {len(families)} families")
                if not ok:
                    c.counted, c.note = False, "not counted: on no family did both models learn"
                comps.append(c)
    k = len(small)
    for m in ("fft", "lora"):
        ok = [f for f in families if both_learned(m, f, small + [1.0])]
        terms = [t for x in small for t in ((1.0 / k, m + ":{f}", x), (-1.0 / k, "baseline:{f}", x))]
        terms += [(-1.0, m + ":{f}", 1.0), (1.0, "baseline:{f}", 1.0)]
        c = contrast(index, terms, ok or families, "ssim",
                     label=f"{m} gain over scratch at {'/'.join(f'{100 * x:g}' for x in small)} % minus its gain at "
                           f"100 % on {len(ok)} of {len(families)} families")
        if not ok:
            c.counted, c.note = False, "not counted: on no family did every model learn"
        comps.append(c)
    zero_shot = [f for f in families if index.has("pfm", f)]  # evaluated by the matrix
    for x in fractions if zero_shot == families else ():
        for m in ("fft", "lora"):
            context.append(contrast(index, [(1.0, m + ":{f}", x), (-1.0, "pfm", 1.0)], families, "ssim",
                                    label=f"{m} at {100 * x:g} % vs the zero-shot PFM (gain of fine-tuning)"))
        context.append(contrast(index, [(1.0, "pfm", 1.0), (-1.0, "baseline:{f}", x)], families, "ssim",
                                label=f"zero-shot PFM vs scratch at {100 * x:g} % (gain of pretraining alone)"))
    return _claim("5", comps, context, missing)


#: Labels of the claims, in order.
CLAIM_LABELS = ("1", "2", "3", "4a", "4b", "5")


def evaluate_claims(results, only=None) -> list:
    """Judge the paper's claims from a results folder's per-sample test metrics.

    Parameters
    ----------
    results : fwi_teach.experiments.reproduce.ReferenceResults
        Or any object with ``settings`` (profile settings dict), ``per_sample`` (a
        :class:`fwi_teach.evaluation.evidence.SampleIndex`), ``runs`` (row dicts) and optionally
        ``memory`` (:func:`fwi_teach.training.memory.claim_memory_rows`).
    only : sequence of str, optional
        Labels of the claims to judge (:data:`CLAIM_LABELS`), e.g. ``["1"]`` for a chapter
        whose live run trained only what claim 1 needs. Default: all.

    Returns
    -------
    list of Claim
        Claims 1, 2, 3, 4a, 4b and 5 (or those of ``only``), in order.

    Raises
    ------
    ValueError
        If the results hold no per-sample metrics (exported before they were kept):
        re-export them with the current code.
    """
    index = getattr(results, "per_sample", None)
    if index is None or len(index) == 0:
        raise ValueError("these results hold no per-sample test metrics, so no confidence interval can be computed; "
                         "make them with this version of fwi_teach: `fwi-teach reproduce --profile PROFILE --seeds 0`")
    only = CLAIM_LABELS if only is None else tuple(str(x) for x in only)
    bad = [x for x in only if x not in CLAIM_LABELS]
    if bad:
        raise ValueError(f"unknown claim(s) {bad}; choose from {CLAIM_LABELS}")
    s = results.settings
    check = LearningCheck(index)
    pretrain, targets = list(s["pretrain_families"]), list(s["finetune_families"])
    tested = sorted({k[2] for k in index._data if k[0] == "pfm" and k[4] == "test"})
    judge = {"1": lambda: _pairwise("1", index, check, "pfm", pretrain),
             "2": lambda: _pairwise("2", index, check, "fft", targets),
             "3": lambda: _claim3(results, index, check, targets),
             "4a": lambda: _claim4("4a", index, targets, lambda t: [f for f in tested if f not in pretrain and f != t]),
             "4b": lambda: _claim4("4b", index, targets, lambda t: [f for f in tested if f in pretrain]),
             "5": lambda: _claim5(index, check, list(s["low_data_families"]),
                                  [float(x) for x in s["low_data_fractions"]])}
    return [judge[label]() for label in CLAIM_LABELS if label in only]


def openfwi_comparison(results) -> list:
    """Our task-specific baselines beside the mean map and OpenFWI's published InversionNet.

    One row per family: our ``mae``, ``rmse``, ``ssim`` (means over seeds), the mean
    map's; the paired CIs of baseline minus mean map on the test split, which the means
    are of (``*_vs_mean_test``, ``_low`` / ``_high``; ``learned_test``: both clear the mean
    map), and on the validation split, the gate the claims use (``*_vs_mean``, ``_low`` /
    ``_high``; ``learned``); the ratios the cpu profile aims at (:data:`BASELINE_TARGETS`:
    ``mae_ratio``, ``ssim_gain``, and ``meets_targets``: both ratios met and both test
    CIs clear the mean map), training samples, epochs and network size next to OpenFWI's
    published values and set-up.
    """
    import torch

    from ..models import InversionNet, count_parameters

    with torch.device("meta"):
        full = count_parameters(InversionNet())  # OpenFWI's network: width 1, 1000 time samples
    index, check = results.per_sample, LearningCheck(results.per_sample)
    rows = []
    for fam, (mae, rmse, ssim) in OPENFWI_INVERSIONNET.items():
        model = f"baseline:{fam}"
        if not index.has(model, fam) or not index.has(f"{MEAN_MAP}:{fam}", fam):
            continue
        ours = {m: float(index.values(model, fam, m).mean()) for m in ("mae", "rmse", "ssim")}
        ref = {m: float(index.values(f"{MEAN_MAP}:{fam}", fam, m).mean()) for m in ("mae", "rmse", "ssim")}
        ok, (c_mae, c_ssim) = check.result(model, fam)  # validation split: the claims' gate
        ok_test, (t_mae, t_ssim) = learned(index, model, fam, split="test")
        ratio, gain = ours["mae"] / ref["mae"], ours["ssim"] - ref["ssim"]
        runs = [r for r in results.runs if r["kind"] == "baseline" and r["train_family"] == fam
                and float(r.get("fraction", 1.0)) == 1.0]
        rows.append({"family": fam, **ours, **{f"mean_map_{k}": v for k, v in ref.items()},
                     **{f"{m}_vs_mean{tag}{end}": v for tag, cs in (("", (c_mae, c_ssim)), ("_test", (t_mae, t_ssim)))
                        for m, c in zip(("mae", "ssim"), cs) for end, v in (("", c.mean), ("_low", c.low), ("_high", c.high))},
                     "learned": ok, "learned_test": ok_test, "mae_ratio": ratio, "ssim_gain": gain,
                     "meets_targets": bool(ok_test and ratio <= BASELINE_TARGETS["mae_ratio"]
                                           and gain >= BASELINE_TARGETS["ssim_gain"]),
                     "seeds": len(index.model_seeds(model, fam)),
                     "n_train": runs[0]["n_train_samples"] if runs else None,
                     "epochs": runs[0]["epochs"] if runs else None,
                     "parameters": runs[0]["total_params"] if runs else None,
                     "openfwi_mae": mae, "openfwi_rmse": rmse, "openfwi_ssim": ssim,
                     "openfwi_n_train": OPENFWI_TRAINING["n_train"][fam], "openfwi_epochs": OPENFWI_TRAINING["epochs"],
                     "openfwi_parameters": full})
    return rows


def claims_markdown(claims, profile: str) -> str:
    """A Markdown list of the verdicts, for the README and ``summary.md`` of a results folder."""
    lines = [f"Verdicts at the `{profile}` profile (computed by `fwi_teach.experiments.claims.evaluate_claims`; a comparison "
             "is won when its 95 % CI lies on the claimed side of zero, or of the stated margin):", ""]
    for c in claims:
        lines.append(f"- **{c.label}. {c.verdict}**: {c.text} {c.evidence}")
    return "\n".join(lines) + "\n"
