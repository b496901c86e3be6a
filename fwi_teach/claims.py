"""The paper's five claims, evaluated by code from results tables.

Ghosal et al. (2024) make five claims that the course tests. :func:`evaluate_claims`
takes the tables written by :func:`fwi_teach.reproduce.export_results` (or loaded with
:func:`fwi_teach.reproduce.load_reference_results`) and returns one :class:`Claim` per
claim, with a verdict (``"reproduced"``, ``"partly reproduced"``, ``"not reproduced"``
or ``"not tested"``), the numbers behind it, and a hypothesis where it fails.

The rules, stated once here so that a reader can change them:

1. PFM beats the task-specific baselines on the six pretraining sets: compared per set
   by SSIM and by MAE.
2. FFT-PFM beats the task-specific baselines on the four targets: same comparison.
3. LoRA-PFM is within :data:`SSIM_MARGIN` SSIM of FFT-PFM on the targets, trains at most
   :data:`MAX_TRAINABLE_SHARE` of the weights, and needs less training memory per step:
   the tensor account of :func:`fwi_teach.memory.claim_memory_rows` at the profile's own
   batch decides; full width at batch 256 (OpenFWI's) is stated beside it.
4. LoRA-PFM beats FFT-PFM out of distribution: mean SSIM of each fine-tuned model on the
   test sets it was not fine-tuned on.
5. PFM-based fine-tuning helps most at 10-25 % of the data: the gain in SSIM of the
   better of FFT/LoRA over scratch, averaged over the low-data families, is positive at
   the smallest shares and larger there than with all of the data.

A comparison that holds for every item is "reproduced"; for a strict majority, "partly
reproduced"; otherwise "not reproduced".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["OPENFWI_INVERSIONNET", "OPENFWI_TRAINING", "SSIM_MARGIN", "MAX_TRAINABLE_SHARE", "SMALL_SHARES",
           "Claim", "evaluate_claims", "openfwi_comparison", "claims_markdown"]

#: OpenFWI's published InversionNet test metrics (Deng et al. 2022, L1 training):
#: reference values copied from the publication, not computed by this package.
OPENFWI_INVERSIONNET = {
    "flatvel-a": (0.0131, 0.0211, 0.9895), "flatvel-b": (0.0351, 0.0876, 0.9461),
    "curvevel-a": (0.0685, 0.1273, 0.8074), "curvevel-b": (0.1497, 0.2891, 0.6727),
    "flatfault-a": (0.0172, 0.0426, 0.9766), "flatfault-b": (0.1055, 0.1741, 0.7208),
    "curvefault-a": (0.0260, 0.0650, 0.9566), "curvefault-b": (0.1646, 0.2477, 0.6163),
    "style-a": (0.0625, 0.1024, 0.8859), "style-b": (0.0689, 0.1614, 0.6314),
}
#: OpenFWI's training set-up behind those numbers: full-width InversionNet, its training
#: samples per family (FlatVel/CurveVel/Fault families 24,000 or 48,000; Style 60,000) and
#: epochs. Published values, not computed.
OPENFWI_TRAINING = {"epochs": 120, "n_train": {"flatvel-a": 24_000, "flatvel-b": 24_000, "curvevel-a": 24_000,
                                                "curvevel-b": 24_000, "flatfault-a": 48_000,
                                                "flatfault-b": 48_000, "curvefault-a": 48_000,
                                                "curvefault-b": 48_000, "style-a": 60_000, "style-b": 60_000}}
#: Claim 3: LoRA-PFM counts as "comparable" if its SSIM is at most this much below FFT-PFM's.
SSIM_MARGIN = 0.02
#: Claim 3: LoRA-PFM should train at most this share of the weights (the paper: about 5 %).
MAX_TRAINABLE_SHARE = 0.10
#: Claim 5: the shares of the training set that count as "low data".
SMALL_SHARES = (0.1, 0.25)

_TEXT = {
    1: "The PFM beats task-specific baselines on the six pretraining sets.",
    2: "FFT-PFM beats task-specific models on the four target sets.",
    3: "LoRA-PFM is within a stated margin of FFT-PFM in distribution, with about 5 % of the trainable "
       "parameters and lower training memory.",
    4: "LoRA-PFM beats FFT-PFM out of distribution.",
    5: "PFM-based fine-tuning beats training from scratch most clearly at 10-25 % of the data.",
}
_HYPOTHESIS = {
    1: "Each baseline trains on one family only; at this scale a small network that sees one family "
       "for the same number of epochs can fit it as well as a shared model that must split its capacity "
       "over six families.",
    2: "The task-specific models train for more epochs than fine-tuning, and with few samples and epochs "
       "the head start from the PFM can be used up before the end of training.",
    3: "Accuracy: the LoRA rank and learning rate were not tuned per target. Memory: activations, not "
       "weights and optimiser state, dominate at large batch; LoRA only removes the gradients and AdamW "
       "state of the frozen weights (12 bytes per frozen parameter in float32) unless its computation "
       "also saves fewer activations.",
    4: "Out of distribution, both fine-tuned models fall back to what the PFM knew; with short "
       "fine-tuning FFT-PFM forgets little, so LoRA's protection of the backbone has little to show.",
    5: "With tiny subsets every method is noisy (one seed, few test samples), and the PFM's advantage "
       "depends on how close the target is to the pretraining families.",
}


@dataclass
class Claim:
    """One claim of the paper with its verdict at the scale of a results folder."""

    number: int
    text: str
    verdict: str
    evidence: str
    hypothesis: str = ""
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        out = f"Claim {self.number}: {self.text}\n  verdict: {self.verdict.upper()}\n  evidence: {self.evidence}"
        return out + (f"\n  hypothesis: {self.hypothesis}" if self.hypothesis else "")


def _verdict(wins: int, n: int) -> str:
    if n == 0:
        return "not tested"
    return "reproduced" if wins == n else "partly reproduced" if 2 * wins > n else "not reproduced"


def _index(rows, key_fields) -> dict:
    return {tuple(r[k] for k in key_fields): r for r in rows}


def _own_metrics(runs) -> dict:
    """(experiment kind, family) -> row of that model on its own family's test set, full data."""
    out = {}
    for r in runs:
        if float(r.get("fraction", 1.0)) != 1.0:
            continue
        if r["kind"] == "pfm":
            out[("pfm", r["eval_family"])] = r
        elif r["eval_family"] == r["train_family"]:
            out[(r["kind"], r["train_family"])] = r
    return out


def _versus(own, a, b, families, margin=0.0):
    """Families where model kind ``a`` beats ``b`` by SSIM (by more than -margin) and by MAE."""
    pairs = [f for f in families if (a, f) in own and (b, f) in own]
    ssim = [f for f in pairs if own[(a, f)]["ssim"] > own[(b, f)]["ssim"] - margin]
    mae = [f for f in pairs if own[(a, f)]["mae"] < own[(b, f)]["mae"]]
    diff = [own[(a, f)]["ssim"] - own[(b, f)]["ssim"] for f in pairs]
    return pairs, ssim, mae, float(np.mean(diff)) if diff else float("nan")


def _pairwise_claim(number, own, a, b, families, names) -> Claim:
    pairs, ssim, mae, mean_diff = _versus(own, a, b, families)
    n = len(pairs)
    verdict = _verdict(min(len(ssim), len(mae)), n) if n else "not tested"
    evidence = (f"{names[0]} has the higher SSIM on {len(ssim)} of {n} sets and the lower MAE on {len(mae)} of {n} "
                f"(mean SSIM difference {mean_diff:+.3f}).")
    return Claim(number, _TEXT[number], verdict, evidence, "" if verdict == "reproduced" else _HYPOTHESIS[number],
                 {"sets": n, "ssim_wins": len(ssim), "mae_wins": len(mae), "mean_ssim_difference": mean_diff})


def _memory_evidence(results, own, targets):
    """Claim 3's memory part: (LoRA / FFT ratio that decides, sentence, numbers).

    From the ``memory`` table (:func:`fwi_teach.memory.claim_memory_rows`) where the
    results have one: the tensor account per training step at the profile's own setting
    decides, and full width at batch 256 is stated beside it. Otherwise from the runs'
    recorded peaks.
    """
    table = {(r["setting"], r["method"]): r for r in getattr(results, "memory", None) or []}
    if ("profile", "fft") in table and ("profile", "lora") in table:
        def part(setting):
            f, lo = table[(setting, "fft")], table[(setting, "lora")]
            return lo["total"] / f["total"], f, lo

        mem, f, lo = part("profile")
        text = (f"its training memory per step (tensor account, {f['precision']}) is {100 * mem:.0f} % of "
                f"FFT-PFM's at the profile's batch {int(f['batch_size'])} ({lo['total']:.0f} vs {f['total']:.0f} "
                f"MiB, width {f['width_multiplier']:g})")
        numbers = {"memory_ratio_profile": mem}
        if ("full width", "fft") in table:
            big, fb, lb = part("full width")
            frozen = fb["gradients"] + fb["optimizer_state"] - lb["gradients"] - lb["optimizer_state"]
            act = 1 - lb["saved_activations"] / fb["saved_activations"]
            text += (f", and {100 * big:.0f} % at full width and batch {int(fb['batch_size'])} ({lb['total'] / 1024:.1f} "
                     f"vs {fb['total'] / 1024:.1f} GiB{'' if fb['measured'] else ', extrapolated per sample'}): "
                     f"there activations dominate, the frozen weights' gradients and AdamW state account for "
                     f"{frozen:.0f} MiB of the saving and the lean LoRA computation's {100 * act:.0f} % fewer saved "
                     f"activations for the rest.")
            numbers["memory_ratio_full_width"] = big
        else:
            text += "."
        return mem, text, numbers
    mem = float(np.mean([own[("lora", f)]["peak_memory_mb"] / own[("fft", f)]["peak_memory_mb"] for f in targets]))
    kind = own[("lora", targets[0])]["memory_kind"] if targets else "-"
    return mem, f"its peak training memory is {100 * mem:.0f} % of FFT-PFM's ({kind}).", {}


def evaluate_claims(results) -> list:
    """Evaluate the paper's five claims from a results folder's tables.

    Parameters
    ----------
    results : fwi_teach.reproduce.ReferenceResults
        Or any object with ``runs``, ``matrix``, ``lowdata`` (lists of row dicts) and
        ``settings`` (the profile settings dict).

    Returns
    -------
    list of Claim
        Claims 1 to 5, in order.
    """
    s = results.settings
    own = _own_metrics(results.runs)
    claims = [_pairwise_claim(1, own, "pfm", "baseline", s["pretrain_families"], ("the PFM",)),
              _pairwise_claim(2, own, "fft", "baseline", s["finetune_families"], ("FFT-PFM",))]

    targets = [f for f in s["finetune_families"] if ("lora", f) in own and ("fft", f) in own]
    close = [f for f in targets if own[("lora", f)]["ssim"] >= own[("fft", f)]["ssim"] - SSIM_MARGIN]
    share = float(np.mean([own[("lora", f)]["trainable_params"] / own[("fft", f)]["total_params"] for f in targets]))
    mem, mem_text, mem_numbers = _memory_evidence(results, own, targets)
    ok = len(close) == len(targets) and share <= MAX_TRAINABLE_SHARE and mem < 1.0
    parts = [2 * len(close) > len(targets), share <= MAX_TRAINABLE_SHARE, mem < 1.0]
    verdict = "not tested" if not targets else "reproduced" if ok else (
        "partly reproduced" if sum(parts) >= 2 else "not reproduced")
    claims.append(Claim(3, _TEXT[3], verdict,
                        f"LoRA-PFM is within {SSIM_MARGIN} SSIM of FFT-PFM on {len(close)} of {len(targets)} targets; "
                        f"it trains {100 * share:.2f} % of the weights; {mem_text}",
                        "" if ok else _HYPOTHESIS[3],
                        {"targets": len(targets), "within_margin": len(close), "trainable_share": share,
                         "memory_ratio": mem, "ssim_margin": SSIM_MARGIN, **mem_numbers}))

    ood = {}
    for r in results.matrix:
        if r["kind"] in ("fft", "lora") and r["relation"] != "train":
            ood.setdefault((r["kind"], r["train_family"]), []).append(r["ssim"])
    fams = [f for f in s["finetune_families"] if ("fft", f) in ood and ("lora", f) in ood]
    means = {k: float(np.mean(v)) for k, v in ood.items()}
    wins = [f for f in fams if means[("lora", f)] > means[("fft", f)]]
    diff = float(np.mean([means[("lora", f)] - means[("fft", f)] for f in fams])) if fams else float("nan")
    verdict = _verdict(len(wins), len(fams))
    claims.append(Claim(4, _TEXT[4], verdict,
                        f"LoRA-PFM has the higher mean out-of-distribution SSIM for {len(wins)} of {len(fams)} "
                        f"targets (mean difference {diff:+.3f} SSIM over the sets each model was not "
                        f"fine-tuned on).", "" if verdict == "reproduced" else _HYPOTHESIS[4],
                        {"targets": len(fams), "lora_wins": len(wins), "mean_ssim_difference": diff}))

    gain = {}
    for fam in s["low_data_families"]:
        rows = [r for r in results.lowdata if r["train_family"] == fam]
        by = _index(rows, ("method", "fraction"))
        for x in sorted({float(r["fraction"]) for r in rows}):
            if all((m, x) in by for m in ("scratch", "fft", "lora")):
                best = max(by[("fft", x)]["ssim"], by[("lora", x)]["ssim"])
                gain.setdefault(x, []).append(best - by[("scratch", x)]["ssim"])
    mean_gain = {x: float(np.mean(v)) for x, v in sorted(gain.items())}
    gains = {f"{x:g}": g for x, g in mean_gain.items()}
    small = [mean_gain[x] for x in SMALL_SHARES if x in mean_gain]
    if not small or 1.0 not in mean_gain:
        claims.append(Claim(5, _TEXT[5], "not tested", "the low-data table lacks the shares needed.", "",
                            {"mean_gain": gains}))
    else:
        positive, larger = min(small) > 0, float(np.mean(small)) > mean_gain[1.0]
        verdict = "reproduced" if positive and larger else "partly reproduced" if positive or larger else \
            "not reproduced"
        shown = ", ".join(f"{100 * x:g} %: {g:+.3f}" for x, g in mean_gain.items())
        claims.append(Claim(5, _TEXT[5], verdict,
                            f"SSIM gain of the better PFM method over scratch, mean over {len(s['low_data_families'])} "
                            f"families, by share of the data: {shown}.",
                            "" if verdict == "reproduced" else _HYPOTHESIS[5],
                            {"mean_gain": gains}))
    return claims


def openfwi_comparison(results) -> list:
    """Rows comparing our task-specific baselines with OpenFWI's published InversionNet.

    One row per family with our ``mae``, ``rmse``, ``ssim``, training samples, epochs and
    network size next to the published values (``openfwi_*``) and OpenFWI's set-up.
    """
    import torch

    from .models import InversionNet, count_parameters

    with torch.device("meta"):
        full = count_parameters(InversionNet())  # OpenFWI's network: width 1, 1000 time samples
    own = _own_metrics(results.runs)
    rows = []
    for fam, (mae, rmse, ssim) in OPENFWI_INVERSIONNET.items():
        r = own.get(("baseline", fam))
        if r is None:
            continue
        rows.append({"family": fam, "mae": r["mae"], "rmse": r["rmse"], "ssim": r["ssim"],
                     "n_train": r["n_train_samples"], "epochs": r["epochs"], "parameters": r["total_params"],
                     "openfwi_mae": mae, "openfwi_rmse": rmse, "openfwi_ssim": ssim,
                     "openfwi_n_train": OPENFWI_TRAINING["n_train"][fam], "openfwi_epochs": OPENFWI_TRAINING["epochs"],
                     "openfwi_parameters": full})
    return rows


def claims_markdown(claims, profile: str) -> str:
    """A Markdown list of the verdicts, for the README and ``summary.md`` of a results folder."""
    lines = [f"Verdicts at the `{profile}` profile (computed by `fwi_teach.claims.evaluate_claims`):", ""]
    for c in claims:
        lines.append(f"{c.number}. **{c.verdict}**: {c.text} {c.evidence}")
    return "\n".join(lines) + "\n"
