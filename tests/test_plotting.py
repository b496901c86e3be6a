"""Tests of the figure helpers in fwi_teach.plotting (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fwi_teach.data.families import velocity_models  # noqa: E402
from fwi_teach.plotting import (plot_family_gallery, plot_shot_gather, plot_velocity,  # noqa: E402
                                plot_velocity_comparison)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_plot_velocity_new_figure():
    v = velocity_models("curvevel-a", 1)[0]  # (1, 70, 70) is accepted
    fig = plot_velocity(v, title="model")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # image + colour bar
    ax = fig.axes[0]
    assert ax.get_title() == "model"
    assert "km" in ax.get_xlabel() and "km" in ax.get_ylabel()
    im = ax.get_images()[0]
    left, right, bottom, top = im.get_extent()
    assert (left, right) == (0.0, pytest.approx(0.7)) and bottom == pytest.approx(0.7) and top == 0.0
    # Shown in km/s.
    assert im.get_array().max() == pytest.approx(v.max() / 1000.0)
    assert "km/s" in fig.axes[1].get_ylabel()


def test_plot_velocity_existing_axes_and_limits():
    fig0, ax = plt.subplots()
    fig = plot_velocity(np.full((70, 70), 3000.0), ax=ax, dx_m=20.0, vmin_mps=1500, vmax_mps=4500, colorbar=False)
    assert fig is fig0 and len(fig.axes) == 1
    im = ax.get_images()[0]
    assert im.get_clim() == (1.5, 4.5)
    assert im.get_extent()[1] == pytest.approx(1.4)


def test_plot_velocity_rejects_batches():
    with pytest.raises(ValueError, match="expected a single 2-D array"):
        plot_velocity(np.zeros((3, 70, 70)) + 2000)


def test_plot_shot_gather():
    rng = np.random.default_rng(0)
    seis = rng.normal(size=(1000, 70)).astype(np.float32)
    seis[0, 0] = 1e6  # an outlier must not set the clip
    fig = plot_shot_gather(seis, title="shot 2", dt_s=1e-3)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    im = ax.get_images()[0]
    lo, hi = im.get_clim()
    assert lo == -hi and hi < 10.0
    assert im.get_extent()[2] == pytest.approx(1.0)  # 1000 samples of 1 ms
    assert "time (s)" in ax.get_ylabel() and ax.get_title() == "shot 2"
    fig2 = plot_shot_gather(seis, source_x_m=340.0, colorbar=True)
    assert len(fig2.axes) == 2 and "offset" in fig2.axes[0].get_xlabel()
    assert fig2.axes[0].get_images()[0].get_extent()[0] == pytest.approx(-0.34)
    with pytest.raises(ValueError, match="clip_percentile"):
        plot_shot_gather(seis, clip_percentile=0)


def test_family_gallery_counts():
    fams = ["flatvel-a", "style-b"]
    fig = plot_family_gallery(fams, n_per_family=2, seed=1)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 2 + 1  # panels + one colour bar
    assert len(_images(fig)) == 4
    assert fig.axes[0].get_title().startswith("flatvel-a")
    assert fig.axes[2].get_title().startswith("style-b")
    # Shared colour range 1.5-4.5 km/s.
    assert all(im.get_clim() == (1.5, 4.5) for im in _images(fig))


def test_family_gallery_all_families():
    fig = plot_family_gallery(n_per_family=1)
    assert len(_images(fig)) == 10


def test_family_gallery_rejects_unknown_family():
    with pytest.raises(ValueError, match="valid names"):
        plot_family_gallery(["flatvel-z"])


def test_family_gallery_with_gathers():
    physics = pytest.importorskip("fwi_teach.physics")
    import torch

    torch.set_num_threads(2)
    acq = physics.Acquisition(source_locations=((1, 10), (1, 35), (1, 60)),
                              receiver_locations=tuple((1, c) for c in range(0, 70, 2)), nt=150, dt_s=1e-3)
    fig = plot_family_gallery(["flatfault-a"], n_per_family=1, with_gathers=True, acquisition=acq)
    assert len(fig.axes) == 2 + 1
    gather = fig.axes[1].get_images()[0]
    assert gather.get_array().shape == (150, 35)
    assert gather.get_extent()[2] == pytest.approx(0.15)


def test_velocity_comparison_single_and_batch():
    v = velocity_models("flatvel-b", 3, seed=2)
    pred = {"FFT-PFM": v + 100.0, "LoRA-PFM": v - 50.0}
    fig = plot_velocity_comparison(v[0, 0], {k: p[0, 0] for k, p in pred.items()})
    assert isinstance(fig, Figure)
    assert len(_images(fig)) == 1 + 2 + 2
    assert len(fig.axes) == 5 + 2  # panels + velocity and difference colour bars
    ims = _images(fig)
    assert ims[0].get_clim() == ims[1].get_clim() == ims[2].get_clim()  # shared velocity limits
    d1, d2 = ims[3].get_clim(), ims[4].get_clim()
    assert d1 == d2 and d1[0] == -d1[1] and d1[1] == pytest.approx(100.0, abs=1e-2)
    np.testing.assert_allclose(ims[3].get_array(), 100.0, atol=1e-3)

    fig = plot_velocity_comparison(v, pred, titles=["a", "b", "c"], diff_limit_mps=300)
    assert len(_images(fig)) == 3 * 5
    assert _images(fig)[4].get_clim() == (-300, 300)


def test_velocity_comparison_validates():
    v = velocity_models("flatvel-a", 1)[0, 0]
    with pytest.raises(ValueError, match="empty"):
        plot_velocity_comparison(v, {})
    with pytest.raises(ValueError, match="expected the shape of true"):
        plot_velocity_comparison(v, {"x": np.zeros((2, 70, 70))})


def test_model_comparison_takes_a_function_and_the_matrix_a_scale():
    from fwi_teach.plotting import plot_evaluation_matrix, plot_model_comparison

    values = {("pfm", "flatvel-a", "ssim"): 0.8, ("baseline", "flatvel-a", "ssim"): 0.6}
    fig = plot_model_comparison(lambda kind, fam, m: values[(kind, fam, m)], ["flatvel-a"], ("baseline", "pfm"),
                                metrics=("ssim",))
    bars = [p.get_height() for p in fig.axes[0].patches]
    assert bars == [0.6, 0.8]
    rows = [{"model": "pfm", "eval_family": f, "relation": "pretrain", "mae": 0.1} for f in ("flatvel-a", "style-a")]
    fig = plot_evaluation_matrix(rows, metric="mae", scale=1500.0, fmt="{:.0f}", label="MAE (m/s)")
    assert [t.get_text() for t in fig.axes[0].texts] == ["150", "150"]
    assert fig.axes[1].get_ylabel() == "MAE (m/s)"
    with pytest.raises(ValueError, match="metric='bogus'"):
        plot_evaluation_matrix(rows, metric="bogus")
    plt.close("all")
