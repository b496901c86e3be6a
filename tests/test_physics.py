"""Wave physics against analytic solutions, reciprocity, absorption, gradients and errors."""

import math
import warnings

import numpy as np
import pytest
import torch

from fwi_teach import physics, runtime
from fwi_teach.physics import engines
from fwi_teach.physics import native as physics_native
from fwi_teach.data import velocity_models
from fwi_teach.physics import STABILITY_LIMIT, Acquisition, compiled_step_available, ricker, simulate

torch.set_num_threads(2)


def _ricker_continuous(t, freq_hz, dt_s):
    nw = 2 * int(math.floor((2.2 / freq_hz / dt_s) / 2)) + 1
    t0, t_end = (nw // 2) * dt_s, (nw - 1) * dt_s
    a = math.pi * freq_hz * (t - t0)
    return np.where((t >= 0) & (t <= t_end), (1 - 2 * a**2) * np.exp(-(a**2)), 0.0)


def _analytic_2d(r_m, v_mps, dx_m, dt_s, freq_hz, nt):
    """Pressure at distance r of p_tt = v^2 lap p + v^2 dx^2 w(t) delta(x).

    The 2-D Green's function H(t - r/v) / (2 pi v sqrt(v^2 t^2 - r^2)) convolved
    with w; substituting tau = (r/v) cosh(u) removes the singularity, giving
    p(t) = dx^2 / (2 pi) * integral_0^inf w(t - (r/v) cosh u) du.
    """
    tau0 = r_m / v_mps
    out = np.zeros(nt)
    for i in range(nt):
        t = (i + 1) * dt_s  # recorded sample i is time (i + 1) dt
        if t <= tau0:
            continue
        u = np.linspace(0.0, math.acosh(t / tau0), 4001)
        out[i] = dx_m**2 / (2 * math.pi) * np.trapezoid(_ricker_continuous(t - tau0 * np.cosh(u), freq_hz, dt_s), u)
    return out


def _layered(nz=70, nx=70):
    v = np.full((nz, nx), 1500.0, np.float32)
    for z, val in ((15, 2000), (30, 2600), (45, 3300), (58, 4200)):
        v[z:] = val
    return v


def test_ricker_matches_openfwi_convention():
    w = ricker(15.0, 1e-3, 1000)
    assert w.shape == (1000,) and w.dtype == np.float32
    assert np.argmax(w) == 73 and w[73] == pytest.approx(1.0)
    assert np.count_nonzero(w[147:]) == 0 and w[146] != 0
    k = np.arange(147)
    a = (73 - k) * 15.0 * 1e-3 * math.pi
    np.testing.assert_allclose(w[:147], (1 - 2 * a**2) * np.exp(-(a**2)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w[:147], w[:147][::-1], atol=1e-7)  # symmetric about the peak
    assert ricker(15.0, 1e-3, 50).shape == (50,)
    with pytest.raises(ValueError, match="freq_hz > 0"):
        ricker(0.0, 1e-3, 10)


def test_openfwi_acquisition():
    acq = Acquisition.openfwi()
    assert acq.source_locations == ((1, 0), (1, 17), (1, 34), (1, 52), (1, 69))
    assert acq.receiver_locations == tuple((1, c) for c in range(70))
    assert (acq.n_shots, acq.n_receivers, acq.nt, acq.dt_s, acq.dx_m, acq.freq_hz) == (5, 70, 1000, 1e-3, 10.0, 15.0)
    # OpenFWI's Courant number is 0.45, inside the 0.612 limit of the scheme
    assert 4500 * acq.dt_s / acq.dx_m == pytest.approx(0.45)
    assert STABILITY_LIMIT == pytest.approx(0.612, abs=1e-3)


def test_direct_arrival_matches_analytic_green_function():
    v0, dx, dt, f, nt, n = 2000.0, 5.0, 0.5e-3, 15.0, 500, 150
    offsets = (10, 20, 30)
    acq = Acquisition(source_locations=((75, 75),), receiver_locations=tuple((75, 75 + k) for k in offsets),
                      nt=nt, dt_s=dt, dx_m=dx, freq_hz=f)
    rec = simulate(np.full((n, n), v0, np.float32), acq)[0, 0]
    for j, k in enumerate(offsets):
        exact = _analytic_2d(k * dx, v0, dx, dt, f, nt)
        rel = np.linalg.norm(rec[:, j] - exact) / np.linalg.norm(exact)
        assert rel < 0.01, f"offset {k * dx} m: relative L2 error {rel:.4f}"


def test_source_receiver_reciprocity():
    rng = np.random.default_rng(0)
    v = _layered(40, 50)
    v += rng.uniform(-100, 100, size=v.shape).astype(np.float32)
    a, b = (5, 7), (30, 41)
    acq_ab = Acquisition(source_locations=(a,), receiver_locations=(b,), nt=400)
    acq_ba = Acquisition(source_locations=(b,), receiver_locations=(a,), nt=400)
    for boundary in ("thin", "openfwi"):
        d_ab = simulate(v, acq_ab, boundary=boundary)[0, 0, :, 0]
        d_ba = simulate(v, acq_ba, boundary=boundary)[0, 0, :, 0]
        assert np.abs(d_ab).max() > 1e-3
        np.testing.assert_allclose(d_ab, d_ba, atol=1e-4 * np.abs(d_ab).max())


@pytest.mark.parametrize("v_mps", [1500.0, 4500.0])
def test_thin_boundary_absorbs(v_mps):
    """Sum of p^2 over the model after the waves have left: < 1e-3 of its peak."""
    everywhere = tuple((r, c) for r in range(70) for c in range(70))
    acq = Acquisition(source_locations=((35, 35), (1, 0)), receiver_locations=everywhere, nt=1300)
    energy = (simulate(np.full((70, 70), v_mps, np.float32), acq)[0] ** 2).sum(-1)
    late = energy[:, 1000:].max(axis=1) / energy.max(axis=1)
    assert (late < 1e-3).all(), f"late energy / peak = {late}"


def test_boundaries_agree_on_records():
    v = _layered()
    thin = simulate(v, boundary="thin")
    ref = simulate(v, boundary="openfwi")
    rel = np.linalg.norm(thin - ref) / np.linalg.norm(ref)
    print(f"thin vs openfwi boundary: relative L2 difference of records {rel:.4f}")
    assert rel < 0.05


def test_batched_numpy_torch_and_shapes_agree():
    acq = Acquisition(source_locations=((1, 3), (1, 20)), receiver_locations=tuple((1, c) for c in range(0, 30, 3)), nt=150)
    rng = np.random.default_rng(1)
    v = rng.uniform(2000, 3000, size=(3, 1, 30, 30)).astype(np.float32)
    together = simulate(v, acq, batch_size=3)
    assert together.shape == (3, 2, 150, 10) and together.dtype == np.float32
    alone = np.concatenate([simulate(v[i, 0], acq) for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6 * np.abs(together).max())
    as_torch = simulate(torch.from_numpy(v), acq)
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_array_equal(as_torch.numpy(), together)
    again = simulate(v, acq, batch_size=2)
    np.testing.assert_allclose(again, together, rtol=0, atol=1e-6 * np.abs(together).max())


def test_autograd_path_equals_fast_path():
    acq = Acquisition(source_locations=((1, 10),), receiver_locations=tuple((1, c) for c in range(30)), nt=120)
    v = torch.full((1, 30, 30), 2500.0)
    v[:, 15:] = 3200.0
    fast = simulate(v, acq)
    slow = simulate(v.clone().requires_grad_(True), acq, checkpoint_steps=17)
    torch.testing.assert_close(slow.detach(), fast, rtol=1e-4, atol=1e-5 * fast.abs().max().item())


def test_velocity_gradient_taylor_test():
    """Central finite differences of J(v) = 0.5 ||d(v) - d_obs||^2 match <grad J, dv> (float64)."""
    acq = Acquisition(source_locations=((1, 4), (1, 20)), receiver_locations=tuple((1, c) for c in range(0, 25, 2)),
                      nt=200, dt_s=1e-3, dx_m=10.0, freq_hz=15.0)
    z = torch.arange(25, dtype=torch.float64)[:, None].expand(25, 25)
    v_true = 2000.0 + 40.0 * z
    v_true = v_true + 300.0 * torch.exp(-((z - 12) ** 2 + (torch.arange(25.0)[None] - 12) ** 2) / 20.0)
    d_obs = simulate(v_true[None], acq)
    v0 = (2000.0 + 40.0 * z)[None].clone().requires_grad_(True)

    def misfit(v):
        return 0.5 * ((simulate(v, acq, checkpoint_steps=30, boundary_velocity_mps=3000.0) - d_obs) ** 2).sum()

    misfit(v0).backward()
    grad = v0.grad.clone()
    dv = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 25, 25))) * 10.0
    directional = (grad * dv).sum().item()
    errors = []
    for h in (1e-1, 1e-2):
        with torch.no_grad():
            fd = (misfit(v0 + h * dv) - misfit(v0 - h * dv)).item() / (2 * h)
        errors.append(abs(fd - directional) / abs(directional))
    assert errors[-1] < 1e-4, errors
    # Taylor remainder of the first-order expansion decays as h^2
    with torch.no_grad():
        j0 = misfit(v0).item()
        r1 = abs(misfit(v0 + 1.0 * dv).item() - j0 - 1.0 * directional)
        r2 = abs(misfit(v0 + 0.5 * dv).item() - j0 - 0.5 * directional)
    assert 3.0 < r1 / r2 < 5.0


def test_gradient_checkpointing_does_not_change_gradient():
    acq = Acquisition(source_locations=((1, 5),), receiver_locations=tuple((1, c) for c in range(20)), nt=90)
    v = torch.full((1, 20, 20), 2200.0, dtype=torch.float64)
    grads = []
    for steps in (7, 90):
        vv = v.clone().requires_grad_(True)
        (simulate(vv, acq, checkpoint_steps=steps) ** 2).sum().backward()
        grads.append(vv.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().max() > 0


@pytest.mark.parametrize(
    "velocity, kwargs, message",
    [
        (np.full((70, 70), 7000.0), {}, "unstable time step"),
        (np.full((70, 70), -1.0), {}, "must be positive"),
        (np.full((70, 70), np.nan), {}, "NaN or infinite"),
        (np.full((2, 3, 70, 70), 2000.0), {}, r"expected \(nz, nx\)"),
        (np.full((70, 70), 2000.0), {"boundary": "pml"}, "unknown boundary"),
        (np.full((70, 70), 2000.0), {"wavelet": np.zeros(10)}, "wavelet has shape"),
        (np.full((40, 40), 2000.0), {}, "lies outside the 40 x 40"),
        (np.full((70, 70), 2000.0), {"batch_size": 0}, "batch_size"),
    ],
)
def test_clear_errors(velocity, kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate(velocity, **kwargs)


def test_unstable_message_names_the_fix():
    with pytest.raises(ValueError, match=r"use dt_s <= 0.000875"):
        simulate(np.full((70, 70), 7000.0))


def test_acquisition_validation():
    with pytest.raises(ValueError, match=r"\(row, column\) pairs"):
        Acquisition(source_locations=(), receiver_locations=((0, 0),))
    with pytest.raises(ValueError, match="positive dt_s"):
        Acquisition(source_locations=((0, 0),), receiver_locations=((0, 0),), dt_s=0.0)


@pytest.mark.parametrize("family", ["flatvel-a", "curvefault-b", "style-a"])
def test_record_range_matches_openfwi_published_bounds(family):
    """At OpenFWI settings, min and max of the records fall within 20 % of data_min / data_max."""
    from fwi_teach.data import velocity_models
    from fwi_teach.data.normalize import DATA_BOUNDS

    records = simulate(velocity_models(family, 3, seed=11))
    lo, hi = DATA_BOUNDS[family]
    assert abs(records.min() - lo) <= 0.2 * abs(lo), (records.min(), lo)
    assert abs(records.max() - hi) <= 0.2 * abs(hi), (records.max(), hi)


def _small_survey(nt=80):
    return Acquisition(source_locations=((1, 3), (1, 15)), receiver_locations=tuple((1, c) for c in range(20)), nt=nt)


def _random_models(n, seed=0):
    return np.random.default_rng(seed).uniform(1800, 3500, size=(n, 20, 20)).astype(np.float32)


def _use_engine(monkeypatch, engine):
    """Force one engine of :func:`simulate`: "native" (C kernel), "torch.compile" or "eager"."""
    monkeypatch.setenv("FWI_TEACH_COMPILE", "0" if engine == "eager" else "1")  # tests/conftest.py sets "0"
    if engine == "native" and not physics_native.available():
        pytest.skip(f"the C kernel cannot be built here: {physics_native.load_error()}")
    if engine == "torch.compile":
        if runtime.cpu_compiler() is None:
            pytest.skip("no C++ compiler: torch.compile cannot run here")
        monkeypatch.setattr(engines, "native_ok", lambda v: False)
        monkeypatch.setitem(engines.STATE, "failed", False)


def _engine_warnings(caught):
    return [w for w in caught if "fwi_teach.physics" in str(w.message)]


@pytest.mark.parametrize("engine", ["native", "torch.compile"])
def test_compiled_records_equal_eager_to_float32_rounding(engine, monkeypatch):
    acq, v = _small_survey(), _random_models(3)
    eager = simulate(v, acq, compile=False)
    _use_engine(monkeypatch, engine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = simulate(v, acq)  # the default is the compiled engine
    assert not _engine_warnings(caught)  # no fallback
    np.testing.assert_allclose(fast, eager, rtol=0, atol=1e-5 * np.abs(eager).max())
    # a full OpenFWI-size sample too: every engine models the same physics
    big = velocity_models("curvevel-b", 1, seed=4)
    ref = simulate(big, compile=False)
    np.testing.assert_allclose(simulate(big), ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("engine", ["native", "torch.compile", "eager"])
def test_records_do_not_depend_on_batch_size_or_threads(engine, monkeypatch):
    acq, v = _small_survey(), _random_models(5, seed=1)
    _use_engine(monkeypatch, engine)
    ref = simulate(v, acq, batch_size=2)  # torch.compile pads the last batch of 1 to 2
    for bs in ((3,) if engine == "torch.compile" else (1, 3, 5)):  # (each torch.compile shape costs seconds)
        assert np.array_equal(simulate(v, acq, batch_size=bs), ref), bs
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = simulate(v, acq, batch_size=2)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one_thread, ref)


def test_fallback_when_an_engine_is_unavailable(monkeypatch):
    acq, v = _small_survey(nt=40), _random_models(2)
    eager = simulate(v, acq, compile=False)
    # forced off: the eager path, silently
    monkeypatch.setenv("FWI_TEACH_COMPILE", "0")
    assert not compiled_step_available("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.array_equal(simulate(v, acq), eager)
    assert not _engine_warnings(caught)
    monkeypatch.setenv("FWI_TEACH_COMPILE", "1")

    # no C compiler for the C kernel, and torch.compile fails too: two notices, then eager records
    monkeypatch.setattr(physics_native, "_STATE", {})
    monkeypatch.setattr(physics_native, "_compiler", lambda: None)
    monkeypatch.setitem(engines.STATE, "native_warned", False)
    monkeypatch.setitem(engines.STATE, "failed", False)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setattr(engines, "segment_compiled", no_compiler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = simulate(v, acq)
    notes = [str(w.message) for w in _engine_warnings(caught)]
    assert len(notes) == 2, notes
    assert "C time step is not available here (RuntimeError: no C compiler found" in notes[0]
    assert "compiled time step is not available here (RuntimeError: InvalidCxxCompiler" in notes[1]
    assert np.array_equal(fallback, eager)
    assert not compiled_step_available("cpu")
    # the failures are remembered: no second attempt, no second notice
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.array_equal(simulate(v, acq), eager)
    assert not _engine_warnings(caught)


def test_native_kernel_is_built_atomically_into_the_cache(tmp_path, monkeypatch):
    if physics_native._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("FWI_TEACH_CACHE", str(tmp_path))
    lib = physics_native._build(physics_native._compiler())
    assert lib.parent == tmp_path / "native" and lib.suffix == ".so" and lib.stat().st_size > 0
    assert not list(lib.parent.glob("*.tmp"))  # nothing half-written left behind
    assert physics_native._build(physics_native._compiler()) == lib  # built once, then reused


def test_one_stencil_serves_every_path():
    """neighbour_sum in place equals out of place bit for bit; its autograd adjoint is the stencil itself."""
    from fwi_teach.physics.stencil import HALO, NeighbourSum, neighbour_sum, step_fused

    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.pad(torch.randn(2, 3, 9, 11, generator=gen), (HALO,) * 4)
    out, work = torch.empty(2, 3, 9, 11), torch.empty(2, 3, 9, 11)
    assert torch.equal(neighbour_sum(q, out=out, work=work), neighbour_sum(q)) and out.shape == (2, 3, 9, 11)
    # the 4th-order Laplacian stencil: S1 + (c2/c1) S2 of a single spike
    spike = torch.zeros(1, 9, 9)
    spike[0, 4, 4] = 1.0
    s = neighbour_sum(torch.nn.functional.pad(spike, (HALO,) * 4))[0]
    assert s[3, 4] == s[5, 4] == s[4, 3] == s[4, 5] == 1.0
    assert float(s[2, 4]) == pytest.approx(-1.0 / 16.0) and s[4, 4] == 0.0
    # adjoint test in float64: <A x, y> == <x, A^T y>, with A^T applied by NeighbourSum's backward
    x = torch.randn(1, 2, 8, 10, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(1, 2, 8, 10, dtype=torch.float64, generator=gen)
    (NeighbourSum.apply(x) * y).sum().backward()
    assert torch.allclose((NeighbourSum.apply(x.detach()) * y).sum(), (x.detach() * x.grad).sum(), rtol=1e-12)
    assert torch.autograd.gradcheck(NeighbourSum.apply, (x[..., :5, :6].detach().clone().requires_grad_(),))
    # the fused step updates the interior only and keeps the zero halo
    p = torch.nn.functional.pad(torch.randn(1, 1, 6, 6, generator=gen), (HALO,) * 4)
    new = step_fused(p, torch.zeros_like(p), torch.ones(1, 1, 6, 6), torch.ones(1, 1, 6, 6), torch.ones(1, 1, 6, 6))
    assert new.shape == p.shape and new[..., :HALO, :].abs().sum() == 0 and new[..., :, -HALO:].abs().sum() == 0
