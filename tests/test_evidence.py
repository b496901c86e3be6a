"""Paired bootstrap intervals, comparisons and verdicts, on tables with known answers."""

import numpy as np
import pytest

from fwi_teach.experiments.claims import SSIM_MARGIN, evaluate_claims
from fwi_teach.evaluation.evidence import Comparison, SampleIndex, compare, contrast, learned, verdict
from fwi_teach.experiments.results import ReferenceResults
from fwi_teach.evaluation.stats import paired_interval


# ------------------------------------------------------------------------------ intervals
def test_interval_covers_a_known_difference_and_ties_a_zero_one():
    rng = np.random.default_rng(0)
    hard = rng.normal(0, 0.2, size=(3, 200))  # sample difficulty shared by both models: cancels when paired
    a, b = 0.7 + hard + rng.normal(0, 0.02, hard.shape), 0.65 + hard + rng.normal(0, 0.02, hard.shape)
    ci = paired_interval(a - b)
    assert ci.low < 0.05 < ci.high and ci.high - ci.low < 0.02 and ci.outcome() == "won"
    assert ci.n_seeds == 3 and ci.n_samples == 200
    same = paired_interval(rng.normal(0, 0.05, size=(3, 200)))
    assert same.low < 0 < same.high and same.outcome() == "tied"
    assert paired_interval(-(a - b)).outcome() == "lost"
    assert ci.outcome(threshold=0.06) == "lost" and ci.outcome(threshold=-0.02) == "won"  # margins


def test_interval_coverage_is_near_its_level():
    rng = np.random.default_rng(1)
    covered = []
    for i in range(150):
        ci = paired_interval(rng.normal(0.1, 1.0, 60), n_resamples=500, seed=i)
        covered.append(ci.low < 0.1 < ci.high)
    assert 0.88 <= np.mean(covered) <= 0.99


def test_seeds_widen_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(2)
    samples = rng.normal(0, 0.05, size=(1, 300))
    agree = np.repeat(samples + 0.03, 3, axis=0)
    disagree = np.concatenate([samples + 0.00, samples + 0.03, samples + 0.06])
    width = lambda d: paired_interval(d).high - paired_interval(d).low  # noqa: E731
    assert width(disagree) > 2 * width(agree)


def test_repeating_one_seed_does_not_narrow_the_interval():
    rng = np.random.default_rng(4)
    one = rng.normal(0.02, 0.05, size=(1, 200))
    width = lambda d: paired_interval(d).high - paired_interval(d).low  # noqa: E731
    assert width(np.repeat(one, 3, axis=0)) == pytest.approx(width(one), rel=0.15)


def test_strata_weigh_equally_and_bad_input_is_refused():
    ci = paired_interval([np.full(10, 1.0), np.full(1000, 0.0)])
    assert ci.mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN"):
        paired_interval([0.1, np.nan])
    with pytest.raises(ValueError, match="same seeds"):
        paired_interval([np.zeros((2, 5)), np.zeros((3, 5))])
    with pytest.raises(ValueError, match="level"):
        paired_interval([0.1, 0.2], level=95)
    assert paired_interval([0.1, 0.2, 0.3]) == paired_interval([0.1, 0.2, 0.3])  # deterministic


# ------------------------------------------------------------------------------ verdicts
def _c(outcome, counted=True):
    return Comparison("x", "ssim", "a", "b", ("f",), 0.0, -1.0, 1.0, outcome, counted=counted)


@pytest.mark.parametrize("outcomes, expected", [
    (["won", "won", "won"], "reproduced"),
    (["won", "won", "tied"], "partly reproduced"),
    (["won", "tied", "lost", "won"], "partly reproduced"),
    (["tied", "tied"], "inconclusive"),
    ([], "inconclusive"),
    (["won", "lost"], "contradicted"),
    (["lost", "tied", "tied"], "contradicted"),
])
def test_verdict_counts_the_comparisons(outcomes, expected):
    assert verdict([_c(o) for o in outcomes]) == expected


def test_uncounted_comparisons_do_not_change_a_verdict():
    assert verdict([_c("won"), _c("lost", counted=False)]) == "reproduced"
    assert verdict([_c("won", counted=False)]) == "inconclusive"


# ------------------------------------------------------------------------------ a made-up results folder
PRE, TARGETS, UNSEEN = ["a1", "a2"], ["t1", "t2"], ["u1"]
FAMILIES = PRE + TARGETS + UNSEEN
N, SEEDS = 120, (0, 1)


def _folder(effects, fractions=(0.1, 0.25, 1.0)):
    """Per-sample rows: SSIM = 0.4 (mean map) + effect + shared sample difficulty + noise."""
    rng = np.random.default_rng(3)
    hard = {f: rng.normal(0, 0.08, N) for f in FAMILIES}
    rows = []

    def add(model, fam, ssim_gain, fraction=1.0, seed=None):
        for split in ("test", "val"):  # the validation split decides whether a model learned
            noise = rng.normal(0, 0.005, N)
            for i in range(N):
                ssim = 0.4 + ssim_gain + hard[fam][i] + noise[i]
                mae = 0.5 - ssim_gain + hard[fam][i] / 2 + noise[i]
                rows.append({"model": model, "fraction": fraction, "eval_family": fam, "seed": seed, "sample": i,
                             "split": split, "mae": mae, "rmse": mae * 1.2, "ssim": ssim})

    for fam in FAMILIES:
        add(f"mean-map:{fam}", fam, 0.0)
    for s in SEEDS:
        for fam in FAMILIES:
            add("pfm", fam, effects.get(("pfm", fam), 0.3 if fam in PRE else 0.1), seed=s)
            add(f"baseline:{fam}", fam, effects.get(("baseline", fam), 0.2), seed=s)
        for t in TARGETS:
            for kind in ("fft", "lora"):
                for fam in FAMILIES:
                    own = 0.3 if fam == t else 0.15 if fam in PRE else 0.05
                    add(f"{kind}:{t}", fam, effects.get((kind, fam if fam != t else "own"), own), seed=s)
                for x in fractions:
                    if x != 1.0:
                        add(f"{kind}:{t}", t, effects.get((kind, x), 0.3), x, seed=s)
            for x in fractions:
                if x != 1.0:
                    add(f"baseline:{t}", t, effects.get(("baseline", x), 0.05), x, seed=s)
    runs = [{"kind": k, "train_family": t, "eval_family": t, "fraction": 1.0, "trainable_params": p,
             "total_params": 100, "peak_memory_mb": m, "seed": 0}
            for t in TARGETS for k, p, m in (("fft", 100, 60.0), ("lora", 5, 50.0))]
    settings = {"pretrain_families": PRE, "finetune_families": TARGETS, "low_data_families": TARGETS,
                "baseline_families": FAMILIES, "low_data_fractions": list(fractions)}
    return ReferenceResults("made-up", None, {"profile_settings": settings}, runs, [], [], [], [],
                            per_sample_rows=rows)


def test_claims_on_a_table_that_supports_every_claim():
    claims = evaluate_claims(_folder({("lora", "u1"): 0.15, ("lora", "a1"): 0.25, ("lora", "a2"): 0.25}))
    assert [c.label for c in claims] == ["1", "2", "3", "4a", "4b", "5"]
    assert [c.verdict for c in claims] == ["reproduced"] * 6
    assert claims[2].numbers["trainable_share"] == pytest.approx(0.05)
    assert claims[2].numbers["memory_ratio"] == pytest.approx(50 / 60)
    c1 = claims[0]
    assert c1.numbers["won"] == 4 and len(c1.comparisons) == 4  # 2 families x (SSIM, MAE)
    assert "[+" in c1.evidence and "won" in c1.evidence and c1.hypothesis == ""
    assert len(claims[3].context) == 4  # FFT and LoRA against the zero-shot PFM, per target


def test_claims_that_the_numbers_contradict_or_cannot_decide():
    claims = evaluate_claims(_folder({("pfm", "a1"): 0.1, ("pfm", "a2"): 0.1,  # PFM worse than the baselines
                                      ("fft", "own"): 0.2,  # FFT equal to the baselines: tied
                                      ("lora", "own"): 0.2 - 3 * SSIM_MARGIN}))  # LoRA far below FFT
    by = {c.label: c for c in claims}
    assert by["1"].verdict == "contradicted" and by["1"].numbers["lost"] == 4 and by["1"].hypothesis
    assert by["2"].verdict == "inconclusive" and by["2"].numbers["tied"] == 4
    assert by["3"].numbers["won"] == 2 and by["3"].numbers["lost"] == 2  # share and memory won, both targets lost
    assert by["3"].verdict == "contradicted"  # as many lost as won
    assert by["4a"].verdict == "inconclusive"  # LoRA and FFT equal out of distribution


def test_a_model_that_did_not_learn_is_named_and_not_counted():
    claims = evaluate_claims(_folder({("baseline", "t1"): 0.0}))  # the t1 baseline is the mean map
    c2 = next(c for c in claims if c.label == "2")
    assert "baseline:t1" in c2.not_learned
    assert c2.numbers["not_counted"] == 2 and c2.numbers["counted"] == 2 and c2.verdict == "reproduced"
    assert "did not learn" in c2.evidence
    ok, comps = learned(_folder({("baseline", "t1"): 0.0}).per_sample, "baseline:t1", "t1")
    assert not ok and {c.outcome for c in comps} == {"tied"}


def test_low_data_claim_separates_fine_tuning_from_pretraining():
    claims = evaluate_claims(_folder({}))
    c5 = claims[-1]
    labels = [c["label"] for c in c5.context]
    assert any("gain of fine-tuning" in lab for lab in labels) and any("gain of pretraining" in lab for lab in labels)
    assert c5.verdict == "reproduced"  # fine-tuned 0.3 vs scratch 0.05 at small shares, 0.3 vs 0.2 at 100 %
    flat = evaluate_claims(_folder({("baseline", 0.1): 0.2, ("baseline", 0.25): 0.2}))[-1]
    gains = [c for c in flat.comparisons if "minus its gain" in c["label"]]
    assert gains and all(c["outcome"] == "tied" for c in gains)


def test_comparisons_pair_by_sample_and_need_shared_seeds():
    index = _folder({}).per_sample
    c = compare(index, "fft:t1", "baseline:t1", "t1", "ssim")
    assert c.mean == pytest.approx(0.1, abs=0.005) and c.n_seeds == 2 and c.n_samples == N
    mae = compare(index, "fft:t1", "baseline:t1", "t1", "mae")
    assert mae.mean == pytest.approx(-0.1, abs=0.005) and mae.outcome == "won"  # lower MAE is better
    pooled = contrast(index, [(1.0, "fft:{f}", 1.0), (-1.0, "baseline:{f}", 1.0)], TARGETS, "ssim")
    assert pooled.n_samples == 2 * N
    with pytest.raises(KeyError, match="share no training seed|not tested"):
        compare(index, "fft:t1", "baseline:nowhere", "t1")
    with pytest.raises(ValueError, match="no per-sample test metrics"):
        evaluate_claims(ReferenceResults("x", None, {"profile_settings": {}}, [], [], [], [], []))


def test_sample_index_refuses_duplicated_or_missing_samples():
    row = {"model": "pfm", "fraction": 1.0, "eval_family": "a", "seed": 0, "mae": 0.1, "rmse": 0.1, "ssim": 0.5}
    with pytest.raises(ValueError, match="0..n-1"):
        SampleIndex([{**row, "sample": 0}, {**row, "sample": 0}])
    with pytest.raises(ValueError, match="lacks"):
        SampleIndex([{k: v for k, v in row.items() if k != "ssim"} | {"sample": 0}])


def test_whether_a_model_learned_is_decided_on_the_validation_split():
    rng = np.random.default_rng(5)
    rows = []
    for split, gain in (("val", 0.0), ("test", 0.3)):  # no better than the mean map on val, much better on test
        base = rng.normal(0.5, 0.05, 50)
        for model, g, seed in (("mean-map:f", 0.0, None), ("baseline:f", gain, 0)):
            rows += [{"model": model, "fraction": 1.0, "eval_family": "f", "split": split, "seed": seed, "sample": i,
                      "mae": 0.4 - g + 0.01 * np.sin(i), "rmse": 0.5, "ssim": base[i] + g} for i in range(50)]
    index = SampleIndex(rows)
    assert not learned(index, "baseline:f", "f")[0]
    assert learned(index, "baseline:f", "f", split="test")[0]


def test_claim_three_needs_its_accuracy_part():
    # Both fine-tuned models no better than the mean map on their targets: share and memory alone do not decide.
    folder = _folder({("fft", "own"): 0.0, ("lora", "own"): 0.0})
    c3 = next(c for c in evaluate_claims(folder) if c.label == "3")
    assert c3.numbers["counted"] == 2 and c3.numbers["won"] == 2 and c3.verdict == "inconclusive"
    assert "accuracy part could not be judged" in c3.evidence



def test_relative_improvement_follows_each_metrics_direction():
    from fwi_teach.evaluation import relative_improvement

    assert relative_improvement("mae", 0.08, 0.10) == pytest.approx(20.0)  # lower MAE: better
    assert relative_improvement("ssim", 0.45, 0.50) == pytest.approx(-10.0)  # lower SSIM: worse
    with pytest.raises(ValueError, match="metric='psnr'"):
        relative_improvement("psnr", 1.0, 2.0)


def test_comparison_with_openfwi_states_its_ratios():
    from fwi_teach.evaluation import OPENFWI_INVERSIONNET, compare_with_openfwi, openfwi_metrics

    published = openfwi_metrics("FlatVel-A")
    assert tuple(published.values()) == OPENFWI_INVERSIONNET["flatvel-a"]
    far = compare_with_openfwi("flatvel-a", 2 * published["mae"], published["ssim"] - 0.1, n_train=2400,
                               epochs=12, parameters=24_409_123 // 4)
    assert far["mae_ratio"] == pytest.approx(2.0) and far["data_ratio"] == pytest.approx(10.0)
    assert far["passes_ratio"] == pytest.approx(100.0) and not far["close"]
    assert "NOT reproduced" in far["sentence"] and "2.0x" in far["sentence"]
    near = compare_with_openfwi("flatvel-a", published["mae"], published["ssim"], 24_000, 120, 24_409_123)
    assert near["close"] and "comes close" in near["sentence"]
    with pytest.raises(ValueError, match="unknown velocity family"):
        openfwi_metrics("nope")
