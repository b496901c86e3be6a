"""What the baseline targets would take: the tuning probes' file and its log-linear extrapolation."""

import json
import math

import pytest

from fwi_teach.experiments.tuning import FLATVEL_A_SSIM, TUNING_FILE, load_tuning, scaling, tuning_lines


def probe(family, n, epochs, ssim, mae, mean_ssim=0.45, mean_mae=0.5, rate=200.0):
    return {"family": family, "n_train": n, "epochs": epochs, "val_ssim": ssim, "val_mae": mae, "data_seed": 1,
            "mean_map_ssim": mean_ssim, "mean_map_mae": mean_mae, "samples_per_s": rate}


def test_a_known_log_linear_trend_gives_the_size_where_it_meets_the_targets():
    # SSIM gain 0.01 + 0.02 per doubling from 1000 samples: +0.05 at exactly 4000;
    # MAE ratio 0.70 - 0.025 per doubling: 0.6 at 4 doublings, 16000 samples
    probes = [probe("curvevel-b", n, 12, 0.45 + 0.01 + 0.02 * math.log2(n / 1000),
                    0.5 * (0.70 - 0.025 * math.log2(n / 1000))) for n in (1000, 2000)]
    probes.append(probe("curvevel-b", 2000, 24, 0.45 + 0.04, 0.3))
    s = scaling(probes, epochs=12)["curvevel-b"]
    assert s["sizes"] == [1000, 2000]
    assert s["per_doubling"] == pytest.approx(0.02)
    assert s["n_for_ssim"] == pytest.approx(4000)
    assert s["n_for_mae"] == pytest.approx(16000)
    assert s["minutes_per_family"] == pytest.approx(16000 * 12 / 200 / 60)
    assert s["more_epochs"] == pytest.approx(0.04 - 0.03) and s["more_epochs_at"] == 2000


def test_a_trend_that_does_not_rise_never_meets_a_target():
    probes = [probe("style-b", n, 12, 0.47, 0.35) for n in (1000, 2000, 4000)]
    s = scaling(probes, epochs=12)["style-b"]
    assert s["n_for_ssim"] is None and s["n_for_mae"] is None and s["minutes_per_family"] is None
    assert s["more_epochs"] is None
    (line,) = tuning_lines_from(probes)
    assert "never on this trend" in line


def test_flatvel_a_is_extrapolated_to_its_absolute_ssim_target():
    probes = [probe("flatvel-a", 1000, 12, 0.70, 0.1), probe("flatvel-a", 2000, 12, 0.75, 0.09)]
    s = scaling(probes, epochs=12)["flatvel-a"]
    assert s["n_for_ssim"] == pytest.approx(1000 * 2 ** ((FLATVEL_A_SSIM - 0.70) / 0.05))


def test_a_family_with_one_size_is_left_out():
    assert scaling([probe("style-a", 2000, 12, 0.6, 0.3)], epochs=12) == {}


def tuning_lines_from(probes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / TUNING_FILE).write_text(json.dumps(probes))
        return tuning_lines(d, 12)


def test_the_paragraph_names_every_probe_and_is_empty_without_probes(tmp_path):
    assert tuning_lines(tmp_path, 12) == []
    probes = [probe("curvefault-b", n, 12, 0.46 + 0.01 * i, 0.32 - 0.01 * i) for i, n in enumerate((1000, 2000, 4000))]
    (line,) = tuning_lines_from(probes)
    assert "CurveFault-B" in line and "4,000: SSIM 0.480 (+0.030)" in line and "data seed(s) 1" in line


def test_a_damaged_tuning_file_is_a_clear_error(tmp_path):
    (tmp_path / TUNING_FILE).write_text(json.dumps([{"family": "flatvel-a"}]))
    with pytest.raises(ValueError, match="not a list of tuning probes.*benchmarks/tune_cpu.py --record"):
        load_tuning(tmp_path)
