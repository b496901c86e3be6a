"""Closing the loop with physics: data misfit, multiscale (hybrid) FWI and the experiment around them."""

import json

import numpy as np
import pytest
import torch

from fwi_teach.evaluation.data_fit import data_misfit, relative_l2
from fwi_teach.physics import Acquisition, fwi_misfit, multiscale_fwi, simulate, smooth_velocity, taylor_test

torch.set_num_threads(2)


def test_data_misfit_is_at_the_floor_for_the_truth_and_large_for_a_mean_map(small_problem):
    acq, v = small_problem
    second = v.copy()
    second[:12] = 1700.0  # a slower near surface: the direct and early arrivals move
    second[20:] += 500.0
    truth = np.stack([v, second])
    observed = simulate(truth, acq)
    mean_map = np.broadcast_to(truth.mean(0), truth.shape)
    floor = data_misfit(truth, observed, acq)
    far = data_misfit(mean_map, observed, acq)
    assert floor.shape == (2,) and far.shape == (2,)
    assert floor.max() < 1e-5, floor  # same simulator: float32 rounding only
    assert far.min() > 0.1, far
    near = data_misfit(smooth_velocity(v, 1.0)[None], observed[:1], acq)
    assert floor[0] < near[0] < far[0] * 2  # closer models explain the data better than far ones


def test_relative_l2_values_and_errors():
    obs = np.random.default_rng(0).normal(size=(3, 2, 10, 4))
    np.testing.assert_allclose(relative_l2(np.zeros_like(obs), obs), 1.0)
    np.testing.assert_allclose(relative_l2(obs, obs), 0.0)
    np.testing.assert_allclose(relative_l2(-obs, obs), 2.0)
    with pytest.raises(ValueError, match="same shape"):
        relative_l2(obs[:2], obs)
    with pytest.raises(ValueError, match="zero everywhere"):
        relative_l2(obs, np.zeros_like(obs))


def test_data_misfit_rejects_bad_input_with_the_fix(small_problem):
    acq, v = small_problem
    observed = simulate(v, acq)
    with pytest.raises(ValueError, match="looks normalised"):
        data_misfit((v[None] - 3000) / 1500, observed, acq)
    with pytest.raises(ValueError, match="1 velocity models but 2 observed"):
        data_misfit(v[None], np.concatenate([observed, observed]), acq)
    with pytest.raises(ValueError, match="not decimated in time"):
        data_misfit(v[None], observed[:, :, ::2], acq)


def test_multiscale_fwi_from_the_truth_stays_put_and_from_a_smooth_start_improves(small_problem):
    acq, v = small_problem
    observed = simulate(v, acq, boundary_velocity_mps=4500.0)[0]  # the fixed sponge that fwi models with
    still = multiscale_fwi(observed, v, acq, bands_hz=(6.0, None), iterations_per_band=2, true_velocity_mps=v)
    assert still.models_mps.shape == (5, 40, 40) and still.n_iterations == 4
    assert still.band_of_iteration == [6.0, 6.0, None, None]
    assert max(still.model_rmse_mps) < 2.0, still.model_rmse_mps  # m/s: the line search refuses to move away
    start = smooth_velocity(v, 3.0)
    moved = multiscale_fwi(observed, start, acq, bands_hz=(6.0, None), iterations_per_band=3, step_mps=40.0,
                           true_velocity_mps=v)
    assert moved.model_rmse_mps[-1] < 0.95 * moved.model_rmse_mps[0], moved.model_rmse_mps
    for band in (6.0, None):  # the line search accepts only updates that lower the band's misfit
        j = [m for m, b in zip(moved.band_misfit, moved.band_of_iteration) if b == band]
        assert all(later <= earlier for earlier, later in zip(j, j[1:])), (band, j)
    np.testing.assert_array_equal(moved.models_mps[0], start)


def test_multiscale_fwi_checks_its_bands(small_problem):
    acq, v = small_problem
    obs = np.zeros((acq.n_shots, acq.nt, acq.n_receivers), np.float32)
    with pytest.raises(ValueError, match="rise from low to high"):
        multiscale_fwi(obs, v, acq, bands_hz=(8.0, 4.0))
    with pytest.raises(ValueError, match="full band \\(None\\), if any, last"):
        multiscale_fwi(obs, v, acq, bands_hz=(None, 4.0))
    with pytest.raises(ValueError, match="one non-negative count per band"):
        multiscale_fwi(obs, v, acq, bands_hz=(4.0, None), iterations_per_band=(3,))
    with pytest.raises(ValueError, match="sets \\['cutoff_hz'\\] itself"):
        multiscale_fwi(obs, v, acq, cutoff_hz=5.0)


def test_taylor_test_of_the_band_limited_misfit_that_hybrid_fwi_minimises(small_problem):
    acq, v = small_problem
    acq = Acquisition(source_locations=acq.source_locations[:1], receiver_locations=acq.receiver_locations, nt=300,
                      dt_s=acq.dt_s, dx_m=acq.dx_m, freq_hz=acq.freq_hz)
    observed = simulate(v, acq, boundary_velocity_mps=4500.0)[0]
    start = smooth_velocity(v, 3.0).astype(np.float64)
    direction = v - start  # the update FWI should find: first order along it

    def misfit(m):
        return fwi_misfit(m, observed, acq, cutoff_hz=6.0)

    result = taylor_test(misfit, start, direction, steps=(0.2, 0.1, 0.05, 0.025))
    assert result.order_first == pytest.approx(1.0, abs=0.2), result.table()
    assert result.order_second > 1.8, result.table()
    wrong = taylor_test(misfit, start, direction, steps=(0.2, 0.1, 0.05, 0.025),
                        gradient=np.zeros_like(start))  # a wrong gradient: only first order
    assert wrong.order_second < 1.3, wrong.table()


def test_physics_loop_experiment_writes_and_reads_its_results(tmp_path, monkeypatch):
    import dataclasses

    from fwi_teach.experiments import physics_loop as pl
    from fwi_teach.experiments import physics_results as pr
    from fwi_teach.experiments.profiles import get_profile

    cfg = dataclasses.replace(pl.LOOP_CONFIGS["smoke"], misfit_samples=2, iterations_per_band=1,
                              network_starts=("baseline",))
    p = dataclasses.replace(get_profile("smoke"), name="smoke", n_train=8, n_val=4, n_test=4, nt=400,
                            baseline_families=("flatvel-b",), finetune_families=("flatvel-b",))
    cache = tmp_path / "cache"
    rows = pl.data_misfit_rows(p, cfg, cache, seed=0, device="cpu", progress=False)
    models = {r["model"] for r in rows}
    assert {"truth", "mean-map:flatvel-b", "pfm", "baseline:flatvel-b", "fft:flatvel-b",
            "lora:flatvel-b"} <= models
    floor = [r["data_misfit"] for r in rows if r["model"] == "truth"]
    mean = [r["data_misfit"] for r in rows if r["model"].startswith("mean-map")]
    assert len(floor) == 2 and max(floor) < 1e-5 and min(mean) > 0.05
    assert all(r["seed"] is None for r in rows if r["model"] == "truth")

    folder = pr.export_physics_loop(p, tmp_path / "results", cache, seeds=[0], device="cpu", config=cfg,
                                    progress=False)
    assert folder == tmp_path / "results" / "smoke" / "physics_loop"
    back = pr.load_physics_loop(p, tmp_path / "results")
    assert back["data_misfit"] == json.loads(json.dumps(rows))
    starts = {r["start"] for r in back["hybrid_summary"]}
    assert starts == {"smoothed-truth", "mean-map", "baseline"}
    curve = back["hybrid"][0]
    assert len(curve["model_rmse_mps"]) == len(curve["data_misfit"]) == 3  # start + 2 bands x 1 iteration
    assert back["hybrid_models"]["flatvel-b/baseline/final"].shape == (70, 70) and "final_mps" not in curve
    truth = pl.test_samples("flatvel-b", p, cache, n=1)[1][0]  # the true model of that sample, for the maps
    np.testing.assert_allclose(back["hybrid_models"]["flatvel-b/truth"], truth, rtol=1e-3)
    base = next(r for r in back["hybrid_summary"] if r["start"] == "baseline")
    assert "final_model_rmse_mps_minus_smoothed-truth" in base
    (folder / "hybrid.json").unlink()
    with pytest.raises(FileNotFoundError, match="export the physics loop again"):
        pr.load_physics_loop(p, tmp_path / "results")
    assert pr.load_physics_loop(p, tmp_path / "elsewhere") is None


def test_physics_loop_figures_draw_and_reject_empty_input():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fwi_teach.plotting import plot_data_misfit, plot_gather_residual, plot_hybrid_curves

    rng = np.random.default_rng(0)
    fig = plot_gather_residual(rng.normal(size=(100, 20)), rng.normal(size=(100, 20)))
    assert len(fig.axes) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="one shot each"):
        plot_gather_residual(rng.normal(size=(100, 20)), rng.normal(size=(100, 21)))
    summary = [{"model": k, "eval_family": "flatvel-b", "data_misfit": m, "data_misfit_low": m - 0.1,
                "data_misfit_high": m + 0.1} for k, m in (("truth", 0.0), ("mean-map", 0.6), ("lora", 0.4))]
    fig = plot_data_misfit(summary)
    assert len(fig.axes[0].patches) == 3
    plt.close(fig)
    rows = [{"start": s, "model_rmse_mps": [300.0, 200.0, 150.0], "data_misfit": [0.5, 0.3, 0.2],
             "band_hz": [4.0, None]} for s in ("smoothed-truth", "lora")]
    fig = plot_hybrid_curves(rows)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2 * 2 + 1  # 2 starts x (sample + mean), band line
    plt.close(fig)
    for bad in (lambda: plot_data_misfit([]), lambda: plot_hybrid_curves([]),
                lambda: plot_hybrid_curves(rows, metrics=("speed",))):
        with pytest.raises(ValueError):
            bad()


def test_versus_smoothed_truth_reads_the_interval():
    from fwi_teach.experiments.physics_results import versus_smoothed_truth

    def row(low, high):
        return {"start": "lora", "final_model_rmse_mps_minus_smoothed-truth": {
            "mean": (low + high) / 2, "low": low, "high": high, "level": 0.95, "n_seeds": 1, "n_samples": 16}}

    assert versus_smoothed_truth(row(-30.0, -10.0))[1] == "better"  # ends closer to the truth
    assert versus_smoothed_truth(row(10.0, 30.0))[1] == "worse"
    assert versus_smoothed_truth(row(-10.0, 30.0))[1] == "inconclusive"
    diff, _ = versus_smoothed_truth(row(-30.0, -10.0))
    assert (diff.mean, diff.low, diff.high, diff.n_samples) == (-20.0, -30.0, -10.0, 16)
    assert versus_smoothed_truth({"start": "smoothed-truth"}) is None
