"""What the baseline targets would take: the tuning probes' file and its log-linear extrapolation."""

import json
import math

import pytest

from fwi_teach.experiments.tuning import (FLATVEL_A_SSIM, TARGETS, TUNING_FILE, base_epochs, load_tuning, scaling,
                                         tuning_lines)


def probe(family, n, epochs, ssim, mae, mean_ssim=0.45, mean_mae=0.5, rate=200.0):
    return {"family": family, "n_train": n, "epochs": epochs, "val_ssim": ssim, "val_mae": mae, "data_seed": 1,
            "mean_map_ssim": mean_ssim, "mean_map_mae": mean_mae, "samples_per_s": rate}


def test_a_known_log_linear_trend_gives_the_size_where_it_meets_the_targets():
    # SSIM gain 0.01 + 0.02 per doubling from 1000 samples: +0.05 at exactly 4000;
    # MAE ratio 0.70 - 0.025 per doubling: 0.6 at 4 doublings, 16000 samples
    probes = [probe("curvevel-b", n, 12, 0.45 + 0.01 + 0.02 * math.log2(n / 1000),
                    0.5 * (0.70 - 0.025 * math.log2(n / 1000))) for n in (1000, 2000)]
    probes.append(probe("curvevel-b", 2000, 24, 0.45 + 0.04, 0.3))
    probes.append(probe("curvevel-b", 4000, 6, 0.45 + 0.045, 0.3))  # as many steps as 2000 x 12
    s = scaling(probes, epochs=12, n_train=2000)["curvevel-b"]
    assert s["same_compute"] == (4000, 6, pytest.approx(0.045 - 0.03))
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
    assert s["more_epochs"] is None and s["same_compute"] is None
    intro, line = tuning_lines_from(probes)
    assert intro.startswith("What the baseline targets would take") and line.startswith("- Style-B (")
    assert "never on this trend" in line


def test_flatvel_a_is_extrapolated_to_its_absolute_ssim_target():
    probes = [probe("flatvel-a", 1000, 12, 0.70, 0.1), probe("flatvel-a", 2000, 12, 0.75, 0.09)]
    s = scaling(probes, epochs=12)["flatvel-a"]
    assert s["n_for_ssim"] == pytest.approx(1000 * 2 ** ((FLATVEL_A_SSIM - 0.70) / 0.05))
    assert s["n_for_mae"] == 1000  # met at the smallest size probed: not a size the trend runs back to
    _, line = tuning_lines_from(probes)
    assert "MAE 0.6x at 1,000 already" in line


def test_a_family_with_one_size_is_left_out():
    assert scaling([probe("style-a", 2000, 12, 0.6, 0.3)], epochs=12) == {}


def test_the_fitted_series_is_the_probes_own_epochs_not_the_reference_runs(tmp_path):
    # probes at 12 epochs (two sizes) and one at 24: the series is 12 even when the run trains 20
    probes = [probe("curvevel-b", n, 12, 0.46 + 0.01 * k, 0.3) for k, n in enumerate((1000, 2000))]
    probes.append(probe("curvevel-b", 2000, 24, 0.48, 0.3))
    assert base_epochs(probes) == 12 and base_epochs([]) is None
    assert base_epochs([probe("style-a", 1000, 24, 0.5, 0.3), probe("style-a", 1000, 12, 0.5, 0.3)]) == 12
    (tmp_path / TUNING_FILE).write_text(json.dumps(probes))
    intro, line = tuning_lines(tmp_path, n_train=2000, run_epochs=20)
    assert "at 12 epochs" in intro and "the reference run's baselines train 2,000 samples x 20 epochs" in intro
    assert "24 instead of 12 epochs at 2,000 samples: +0.010 SSIM" in line
    assert "reference run's" not in tuning_lines(tmp_path, n_train=2000, run_epochs=12)[0]


def tuning_lines_from(probes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / TUNING_FILE).write_text(json.dumps(probes))
        return tuning_lines(d, 12)


def test_the_paragraph_names_every_probe_and_is_empty_without_probes(tmp_path):
    assert tuning_lines(tmp_path, 12) == []
    probes = [probe("curvefault-b", n, 12, 0.46 + 0.01 * i, 0.32 - 0.01 * i) for i, n in enumerate((1000, 2000, 4000))]
    intro, line = tuning_lines_from(probes)
    assert "CurveFault-B" in line and "4,000: SSIM 0.480 (+0.030)" in line and "data seed(s) 1" in intro


def test_a_damaged_tuning_file_is_a_clear_error(tmp_path):
    (tmp_path / TUNING_FILE).write_text(json.dumps([{"family": "flatvel-a"}]))
    with pytest.raises(ValueError, match="not a list of tuning probes.*benchmarks/tune_cpu.py --record"):
        load_tuning(tmp_path)


def test_the_tuning_figure_draws_both_metrics_and_names_what_is_missing():
    import matplotlib

    matplotlib.use("Agg")
    from fwi_teach.plotting import plot_tuning

    probes = [probe(fam, n, 12, 0.45 + 0.01 * k, 0.5 * (0.7 - 0.02 * k), rate=100.0)
              for fam in ("curvevel-b", "flatvel-a") for k, n in enumerate((1000, 2000, 4000))]
    probes += [probe("curvevel-b", 2000, 24, 0.47, 0.3), probe("curvevel-b", 4000, 6, 0.47, 0.3)]
    fig = plot_tuning(probes, scaling(probes, 12, 2000), 12, TARGETS)
    gain, flatvel, mae = fig.axes
    assert [t.get_text() for t in gain.get_legend().get_texts()][:2] == ["CurveVel-B", "target 0.05"]
    assert [t.get_text() for t in flatvel.get_legend().get_texts()][:2] == ["FlatVel-A", "target 0.85"]
    assert [t.get_text() for t in mae.get_legend().get_texts()][:2] == ["CurveVel-B", "FlatVel-A"]
    assert mae.get_xscale() == "log" and len(gain.lines) >= 5  # measured, trend, 2 other probes, target
    with pytest.raises(ValueError, match="tune_cpu.py --record"):
        plot_tuning([], {}, 12, TARGETS)
