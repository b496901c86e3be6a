"""Wavefield snapshots, the FWI misfit and its gradient, the Taylor test and their figures.

Small grids (20-30 cells, a few hundred steps) keep the file to a few seconds.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fwi_teach.physics import (Acquisition, TaylorTest, WavefieldSnapshots, fwi_misfit, misfit_gradient,  # noqa: E402
                               simulate, smooth_velocity, taylor_test, wavefield_snapshots)
from fwi_teach.plotting import plot_gradient, plot_taylor_test, plot_wavefield_snapshots  # noqa: E402

torch.set_num_threads(2)


def _survey(nt=160):
    return Acquisition(source_locations=((1, 3), (1, 15)), receiver_locations=tuple((1, c) for c in range(20)),
                       nt=nt, dt_s=1e-3, dx_m=10.0, freq_hz=15.0)


def _layered():
    v = np.full((20, 20), 2000.0, np.float32)
    v[8:] = 2500.0
    yy, xx = np.mgrid[:20, :20]
    v[(yy - 13) ** 2 + (xx - 10) ** 2 < 10] = 2900.0
    return v


# --- wavefield snapshots -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["thin", "openfwi"])
def test_snapshots_at_the_receivers_are_simulate_records(boundary):
    """The field after k steps, read at the receivers, is simulate's record sample k - 1."""
    acq, v = _survey(), _layered()
    records = simulate(v, acq, boundary=boundary, compile=False)[0]
    snap = wavefield_snapshots(v, [0.12, 0.03, 0.0, 0.16, 0.0604], acq, boundary, shot=1)
    assert isinstance(snap, WavefieldSnapshots)
    np.testing.assert_array_equal(snap.steps, [0, 30, 60, 120, 160])  # sorted, rounded to whole steps
    np.testing.assert_allclose(snap.times_s, snap.steps * acq.dt_s)
    b = snap.padding_cells
    assert snap.pressure.shape == (5, 20 + 2 * b, 20 + 2 * b) and snap.interior().shape == (5, 20, 20)
    assert not snap.pressure[0].any()  # before the first step nothing has happened
    rows = np.array([r for r, _ in acq.receiver_locations]) + b
    cols = np.array([c for _, c in acq.receiver_locations]) + b
    scale = np.abs(records[1]).max()
    for field, k in zip(snap.pressure[1:], snap.steps[1:]):
        np.testing.assert_allclose(field[rows, cols], records[1, k - 1], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(snap.records, records[1], rtol=0, atol=1e-5 * scale)
    # the compiled engine (C kernel) agrees to float32 rounding too
    fast = simulate(v, acq, boundary=boundary)[0]
    np.testing.assert_allclose(snap.records, fast[1], rtol=0, atol=1e-4 * scale)
    left, right, bottom, top = snap.extent_km()
    assert (left, top) == (-b * 0.01, -b * 0.01) and right == pytest.approx((20 + b) * 0.01)


def test_sponge_absorbs_what_the_bare_edges_reflect():
    """After the wave has left a homogeneous model, the sponge leaves almost nothing inside; bare edges keep it."""
    acq = Acquisition(source_locations=((15, 15),), receiver_locations=((1, 15),), nt=400)
    v = np.full((30, 30), 2000.0, np.float32)
    times = [0.1, 0.4]  # the pulse is in the model; it crossed the 150 m to every edge long ago
    ratio = {}
    for boundary in ("thin", "none"):
        snap = wavefield_snapshots(v, times, acq, boundary)
        energy = snap.interior_energy()
        assert energy[0] > 0
        ratio[boundary] = energy[1] / energy[0]
    assert ratio["thin"] < 1e-3, ratio
    assert ratio["none"] > 0.2, ratio
    assert ratio["thin"] < 0.02 * ratio["none"], ratio
    assert wavefield_snapshots(v, times, acq, "none").padding_cells == 0


def test_snapshot_errors_name_the_fix():
    acq, v = _survey(), _layered()
    with pytest.raises(ValueError, match="the acquisition has 2 shots"):
        wavefield_snapshots(v, 0.05, acq, shot=2)
    with pytest.raises(ValueError, match="the acquisition has 2 shots"):
        wavefield_snapshots(v, 0.05, acq, shot=-1)
    with pytest.raises(ValueError, match="times_s must lie in 0 .. 0.16 s"):
        wavefield_snapshots(v, [0.05, 0.2], acq)
    with pytest.raises(ValueError, match="times_s must lie"):
        wavefield_snapshots(v, -0.01, acq)
    with pytest.raises(ValueError, match="times_s must lie"):
        wavefield_snapshots(v, float("nan"), acq)
    with pytest.raises(ValueError, match="one time or a 1-D sequence"):
        wavefield_snapshots(v, [], acq)
    with pytest.raises(ValueError, match="unknown boundary 'pml'"):
        wavefield_snapshots(v, 0.05, acq, "pml")
    with pytest.raises(ValueError, match="models one"):
        wavefield_snapshots(np.stack([v, v]), 0.05, acq)
    with pytest.raises(ValueError, match="wavelet has shape"):
        wavefield_snapshots(v, 0.05, acq, wavelet=np.zeros(10))
    with pytest.raises(ValueError, match="unstable time step"):
        wavefield_snapshots(v * 4, 0.05, acq)


# --- the Taylor test on a function with a known gradient ---------------------------------------------------------

_A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
_B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
_M0 = np.array([0.3, -0.7, 1.1])
_DM = np.array([1.0, 0.5, -0.4])
_SMALL = (1e-2, 5e-3, 2.5e-3, 1.25e-3)


def _quadratic(m):
    return 0.5 * (m @ _A @ m) + _B @ m


def _quadratic_gradient(m):
    return _A.numpy() @ m + _B.numpy()


def test_taylor_test_of_a_quadratic_is_second_order_with_its_gradient():
    for gradient in (None, _quadratic_gradient(_M0)):  # autograd's, then the exact one
        result = taylor_test(_quadratic, _M0, _DM, gradient=gradient)
        assert isinstance(result, TaylorTest)
        assert result.order_second == pytest.approx(2.0, abs=0.02), result.table()
        # J(m + h dm) - J(m) - h <g, dm> = 0.5 h^2 <dm, A dm> exactly
        curvature = float(_DM @ _A.numpy() @ _DM)
        np.testing.assert_allclose(result.remainder_second, 0.5 * result.steps**2 * curvature, rtol=1e-9)
        assert result.misfit == pytest.approx(float(_quadratic(torch.tensor(_M0))))
        assert result.directional_derivative == pytest.approx(float(_quadratic_gradient(_M0) @ _DM))
    np.testing.assert_array_equal(result.steps, [1.0, 0.5, 0.25, 0.125, 0.0625])
    assert result.rate_first.shape == result.rate_second.shape == (4,)
    lines = result.table().splitlines()
    assert len(lines) == 6 and max(len(line) for line in lines) <= 61
    small = taylor_test(_quadratic, _M0, _DM, _SMALL)
    assert small.order_first == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("wrong", ["scaled", "perturbed", "zero"])
def test_taylor_test_of_a_quadratic_with_a_wrong_gradient_is_first_order(wrong):
    g = _quadratic_gradient(_M0)
    g = {"scaled": 1.1 * g, "perturbed": g + np.array([0.3, -0.1, 0.2]), "zero": 0 * g}[wrong]
    result = taylor_test(_quadratic, _M0, _DM, _SMALL, gradient=g)
    assert result.order_second == pytest.approx(1.0, abs=0.15), result.table()
    assert result.order_first == pytest.approx(1.0, abs=0.05)


def test_taylor_test_errors():
    with pytest.raises(ValueError, match="at least two positive"):
        taylor_test(_quadratic, _M0, _DM, steps=(0.1,))
    with pytest.raises(ValueError, match="at least two positive"):
        taylor_test(_quadratic, _M0, _DM, steps=(0.1, -0.05))
    with pytest.raises(ValueError, match="distinct"):
        taylor_test(_quadratic, _M0, _DM, steps=(0.1, 0.1, 0.05))
    with pytest.raises(ValueError, match="direction has shape \\(2,\\); expected \\(3,\\)"):
        taylor_test(_quadratic, _M0, _DM[:2])
    with pytest.raises(ValueError, match="not zero everywhere"):
        taylor_test(_quadratic, _M0, np.zeros(3))
    with pytest.raises(ValueError, match="gradient has shape"):
        taylor_test(_quadratic, _M0, _DM, gradient=np.ones(4))
    with pytest.raises(ValueError, match="scalar torch.Tensor"):
        taylor_test(lambda m: m * 2, _M0, _DM)
    with pytest.raises(ValueError, match="not differentiable"):
        taylor_test(lambda m: torch.tensor(1.0, dtype=torch.float64), _M0, _DM)
    with pytest.raises(ValueError, match="callable"):
        taylor_test(3.0, _M0, _DM)


# --- the FWI misfit and its gradient -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fwi_problem():
    acq, v = _survey(nt=200), _layered()
    observed = simulate(v, acq, boundary_velocity_mps=4500.0, compile=False)[0]  # the misfit's own forward map
    start = smooth_velocity(v, 3.0)
    return acq, v, observed, start


def test_fwi_misfit_is_zero_at_the_truth_and_normalised(fwi_problem):
    acq, v, observed, start = fwi_problem
    assert float(fwi_misfit(v, observed, acq)) < 1e-12
    assert float(fwi_misfit(torch.tensor(v, dtype=torch.float64), observed, acq)) < 1e-9  # float32 data
    # J = 0.5 ||F - c F||^2 / ||c F||^2 = 0.5 (1 - c)^2 / c^2: 0.125 for c = 2, 2 for c = -1, 0.5 as c grows
    assert float(fwi_misfit(v, 2 * observed, acq)) == pytest.approx(0.125, rel=1e-5)
    assert float(fwi_misfit(v, -observed, acq)) == pytest.approx(2.0, rel=1e-5)
    assert float(fwi_misfit(v, 1e4 * observed, acq)) == pytest.approx(0.5, rel=1e-3)
    j_start = float(fwi_misfit(start, observed, acq))
    assert 0 < j_start < 0.5
    low = float(fwi_misfit(start, observed, acq, cutoff_hz=6.0))
    assert low > 0 and low != pytest.approx(j_start)


def test_misfit_gradient_points_towards_the_truth(fwi_problem):
    acq, v, observed, start = fwi_problem
    j, g = misfit_gradient(start, observed, acq)
    assert g.shape == v.shape and g.dtype == np.float64 and np.isfinite(g).all() and np.abs(g).max() > 0
    assert j == pytest.approx(float(fwi_misfit(start, observed, acq)), rel=1e-5)
    # near the minimum, -g is a descent direction towards the true model
    assert float((-g * (v - start)).sum()) > 0
    j64, g64 = misfit_gradient(torch.tensor(start), observed, acq, dtype=torch.float64)
    assert j64 == pytest.approx(j, rel=1e-4)
    assert np.abs(g64 - g).max() < 1e-3 * np.abs(g64).max()


def test_taylor_test_passes_the_fwi_gradient_and_fails_a_wrong_one(fwi_problem):
    acq, v, observed, start = fwi_problem
    start = start.astype(np.float64)
    direction = v - start  # the update FWI should find (white noise would be nearly orthogonal to the gradient)

    def misfit(m):
        return fwi_misfit(m, observed, acq)

    steps = (0.2, 0.1, 0.05, 0.025)
    right = taylor_test(misfit, start, direction, steps)  # autograd through the time stepping, float64
    assert right.order_second == pytest.approx(2.0, abs=0.1), right.table()
    assert right.order_first == pytest.approx(1.0, abs=0.2), right.table()
    assert right.directional_derivative < 0  # moving towards the truth lowers the misfit
    _, g = misfit_gradient(start, observed, acq)  # float32, as fwi computes it
    assert taylor_test(misfit, start, direction, steps, gradient=g).order_second > 1.85
    wrong = taylor_test(misfit, start, direction, steps, gradient=1.2 * g)
    assert wrong.order_second < 1.5, wrong.table()


def test_misfit_errors(fwi_problem):
    acq, v, observed, start = fwi_problem
    with pytest.raises(ValueError, match="observed records have shape"):
        fwi_misfit(v, observed[:, :100], acq)
    with pytest.raises(ValueError, match="expected one model"):
        fwi_misfit(np.stack([v, v]), observed, acq)
    with pytest.raises(ValueError, match="expected one model"):
        misfit_gradient(v[None], observed, acq)
    with pytest.raises(ValueError, match="torch.float32 or torch.float64"):
        misfit_gradient(v, observed, acq, dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown boundary"):
        fwi_misfit(v, observed, acq, boundary="none")


# --- figures -------------------------------------------------------------------------------------------------------


def test_wave_figures_return_figures():
    acq, v = _survey(), _layered()
    snaps = {b: wavefield_snapshots(v, [0.05, 0.1, 0.15], acq, b) for b in ("thin", "none")}
    fig = plot_wavefield_snapshots(snaps)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[0].get_title() == "t = 0.05 s"
    plt.close(fig)
    with pytest.raises(ValueError, match="has times"):
        plot_wavefield_snapshots({"a": snaps["thin"], "b": wavefield_snapshots(v, [0.05], acq)})
    with pytest.raises(ValueError, match="empty"):
        plot_wavefield_snapshots({})

    fig = plot_gradient(np.outer(np.linspace(-1, 1, 20), np.ones(20)), title="gradient")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the map and its colour bar
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    assert plot_gradient(np.ones((1, 20, 20)), ax=axes[1], colorbar=False) is fig
    plt.close(fig)
    with pytest.raises(ValueError, match="dx_m"):
        plot_gradient(np.ones((20, 20)), dx_m=0)

    result = taylor_test(_quadratic, _M0, _DM)
    fig = plot_taylor_test(result)
    assert isinstance(fig, Figure) and len(fig.axes[0].get_lines()) == 4
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    plt.close(fig)
