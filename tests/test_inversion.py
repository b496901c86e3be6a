"""Classical FWI: the misfit falls and the model moves towards the truth."""

import numpy as np
import pytest
import torch

from fwi_teach.physics.inversion import fwi, lowpass, smooth_velocity
from fwi_teach.physics import Acquisition, simulate

torch.set_num_threads(2)


def test_fwi_reduces_misfit_and_model_error(small_problem):
    acq, v_true = small_problem
    observed = simulate(v_true, acq)[0]
    v0 = smooth_velocity(v_true, 3.0)
    result = fwi(observed, v0, acq, n_iterations=8, step_mps=40.0, true_velocity_mps=v_true, progress=False)
    assert len(result.misfit) == 8 and len(result.model_rmse_mps) == 8
    assert result.misfit[-1] < 0.5 * result.misfit[0], result.misfit
    final_rmse = np.sqrt(np.mean((result.velocity_mps - v_true) ** 2))
    assert final_rmse < result.model_rmse_mps[0], (final_rmse, result.model_rmse_mps)
    assert result.velocity_mps.shape == (40, 40)
    assert 1500.0 <= result.velocity_mps.min() and result.velocity_mps.max() <= 4500.0
    assert np.array_equal(result.snapshots[0], v0)


def test_lowpass_removes_high_frequencies_and_keeps_low():
    dt, nt = 1e-3, 1000
    t = np.arange(nt) * dt
    low = np.sin(2 * np.pi * 4 * t)
    high = np.sin(2 * np.pi * 40 * t)
    x = torch.tensor(np.stack([low + high], axis=-1))  # (nt, 1)
    y = lowpass(x, dt, cutoff_hz=10.0)[:, 0].numpy()
    inner = slice(100, 900)
    np.testing.assert_allclose(y[inner], low[inner], atol=0.05)
    with pytest.raises(ValueError, match="cutoff_hz"):
        lowpass(x, dt, cutoff_hz=0.0)


def test_smooth_velocity_and_fwi_errors():
    v = np.full((20, 20), 2000.0, np.float32)
    v[10:] = 3000.0
    s = smooth_velocity(v, 2.0)
    assert s.shape == v.shape and s[0, 0] == pytest.approx(2000.0, abs=1.0) and 2000 < s[10, 5] < 3000
    with pytest.raises(ValueError, match="expected \\(nz, nx\\)"):
        smooth_velocity(v[None], 1.0)
    acq = Acquisition(source_locations=((1, 2),), receiver_locations=((1, 5),), nt=50)
    with pytest.raises(ValueError, match="observed records have shape"):
        fwi(np.zeros((2, 50, 1)), v, acq, progress=False)
    with pytest.raises(ValueError, match="true_velocity_mps has shape"):
        fwi(np.zeros((1, 50, 1)), v, acq, true_velocity_mps=v[:5], progress=False)
