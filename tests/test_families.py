"""Tests of the OpenFWI-style velocity families (fwi_teach.data.families / style)."""

import numpy as np
import pytest

from fwi_teach.data import families as fam
from fwi_teach.data.families import (FAMILIES, FINETUNE_FAMILIES, PRETRAIN_FAMILIES, canonical_family,
                                     describe_family, total_variation, velocity_models)
from fwi_teach.data.style import STYLE_SOURCES, source_image

N = 40  # models per family in the statistical tests (all ten families: ~1 s)

LAYERED = [f for f in FAMILIES if not f.startswith("style")]
FAULTED = [f for f in FAMILIES if "fault" in f]


@pytest.fixture(scope="module")
def samples():
    return {f: velocity_models(f, N, seed=3) for f in FAMILIES}


def test_family_lists():
    assert len(FAMILIES) == 10 and len(set(FAMILIES)) == 10
    assert set(PRETRAIN_FAMILIES) | set(FINETUNE_FAMILIES) == set(FAMILIES)
    assert not set(PRETRAIN_FAMILIES) & set(FINETUNE_FAMILIES)
    assert PRETRAIN_FAMILIES == ("flatvel-a", "curvevel-a", "curvevel-b", "flatfault-a", "flatfault-b", "curvefault-a")


@pytest.mark.parametrize("family", FAMILIES)
def test_shape_dtype_range(samples, family):
    v = samples[family]
    assert v.shape == (N, 1, 70, 70)
    assert v.dtype == np.float32
    assert np.isfinite(v).all()
    assert v.min() >= 1500.0 and v.max() <= 4500.0
    # The models use a good part of the range, not a constant.
    assert np.ptp(v) > 1000.0
    assert all(np.ptp(m) > 100.0 for m in v)


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_and_seed_dependent(family):
    a = velocity_models(family, 4, seed=11)
    b = velocity_models(family, 4, seed=11)
    c = velocity_models(family, 4, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Different samples of one set differ.
    assert not np.array_equal(a[0], a[1])


@pytest.mark.parametrize("family", ["flatvel-a", "curvefault-b", "style-b"])
def test_start_slicing(family):
    full = velocity_models(family, 10, seed=5)
    tail = velocity_models(family, 5, seed=5, start=5)
    np.testing.assert_array_equal(full[5:], tail)
    np.testing.assert_array_equal(full[3:4], velocity_models(family, 1, seed=5, start=3))


def test_seed_contract():
    # Sample i is drawn from default_rng(SeedSequence([seed, family_id, i])), family_id = FAMILIES.index.
    for family in ("curvevel-b", "style-a"):
        rng = np.random.default_rng(np.random.SeedSequence([7, FAMILIES.index(family), 4]))
        np.testing.assert_array_equal(velocity_models(family, 1, seed=7, start=4)[0, 0], fam._sample(family, rng)[0])


def test_zero_models():
    assert velocity_models("style-a", 0).shape == (0, 1, 70, 70)


@pytest.mark.parametrize("alias", ["FlatVel-A", "flatvel_a", "FLATVEL-A", "flatvel a", " flatvela "])
def test_aliases(alias):
    assert canonical_family(alias) == "flatvel-a"


def test_aliases_all_families():
    for f in FAMILIES:
        assert canonical_family(f.upper().replace("-", "_")) == f


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        canonical_family("flatvel-c")
    msg = str(err.value)
    assert "flatvel-c" in msg
    for f in FAMILIES:
        assert f in msg
    with pytest.raises(ValueError, match="style-b"):
        velocity_models("salt", 3)


@pytest.mark.parametrize("kwargs, exc", [
    (dict(n=-1), ValueError), (dict(n=2.5), TypeError), (dict(n=2, seed=-3), ValueError),
    (dict(n=2, start=-1), ValueError), (dict(n=True), TypeError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        velocity_models("flatvel-a", **kwargs)


def test_describe_family():
    for f in FAMILIES:
        text = describe_family(f)
        assert text.startswith(f) and "OpenFWI-style" in text and len(text) > 80
    assert describe_family("CurveFault_B") == describe_family("curvefault-b")


def test_total_variation_statistic():
    flat = np.full((70, 70), 2000.0)
    assert total_variation(flat) == 0.0
    two = flat.copy()
    two[35:] = 3000.0  # one jump of 1000 m/s on 70 of 69*70 vertical pairs
    assert total_variation(two) == pytest.approx(1000.0 / 69)
    assert total_variation(np.stack([flat, two])[:, None]).shape == (2,)
    with pytest.raises(ValueError, match="expected"):
        total_variation(np.zeros((70, 71)))


@pytest.mark.parametrize("pair", [("flatvel-a", "flatvel-b"), ("curvevel-a", "curvevel-b"),
                                  ("flatfault-a", "flatfault-b"), ("curvefault-a", "curvefault-b"),
                                  ("style-a", "style-b")])
def test_b_harder_than_a(samples, pair):
    """Mean total variation (m/s per cell) of B exceeds A by at least 50 %."""
    tv_a = total_variation(samples[pair[0]]).mean()
    tv_b = total_variation(samples[pair[1]]).mean()
    assert tv_b > 1.5 * tv_a, (pair, tv_a, tv_b)


def _layers(family, n=40, seed=0):
    out = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, FAMILIES.index(family), i]))
        out.append(fam._sample(family, rng)[1])
    return out


def test_layer_counts_b_more_than_a():
    for a, b in [("flatvel-a", "flatvel-b"), ("curvevel-a", "curvevel-b")]:
        assert np.mean([i["n_layers"] for i in _layers(b)]) > np.mean([i["n_layers"] for i in _layers(a)]) + 1.5


def test_flatvel_a_is_flat_and_piecewise_constant(samples):
    v = samples["flatvel-a"][:, 0]
    assert np.all(v == v[:, :, :1])  # no lateral change at all
    assert all(len(np.unique(m)) <= 5 for m in v)


def test_flatvel_b_has_gradients(samples):
    v = samples["flatvel-b"][:, 0]
    assert np.mean([len(np.unique(m)) > 100 for m in v]) > 0.9


def test_curvevel_interfaces_are_curved(samples):
    for f in ("curvevel-a", "curvevel-b"):
        v = samples[f][:, 0]
        lateral = np.abs(np.diff(v, axis=-1)).max(axis=(-2, -1))
        assert np.mean(lateral > 100.0) > 0.8, f


@pytest.mark.parametrize("family", ["flatfault-a", "flatfault-b"])
def test_faults_offset_flat_layers(samples, family):
    # Flat layers have (almost) no lateral change; a fault creates a sharp lateral jump.
    v = samples[family][:, 0]
    lateral_jump = np.abs(np.diff(v, axis=-1)).max(axis=(-2, -1))
    assert np.all(lateral_jump > 100.0)
    # Jumps line up along a line (the fault), not everywhere.
    assert np.all((np.abs(np.diff(v, axis=-1)) > 100.0).mean(axis=(-2, -1)) < 0.1)


@pytest.mark.parametrize("family", FAULTED)
def test_every_fault_moves_layers(family):
    for info in _layers(family, n=30):
        assert 1 <= info["n_faults"] <= 2
        assert info["offset_pixels"] >= 20
        assert (info["labels"] != info["unfaulted_labels"]).sum() >= 20


def test_fault_counts_a_single_b_up_to_two():
    assert {i["n_faults"] for i in _layers("flatfault-a")} == {1}
    assert {i["n_faults"] for i in _layers("curvefault-b", n=60)} == {1, 2}


@pytest.mark.parametrize("family", ["style-a", "style-b"])
def test_style_not_piecewise_constant(samples, family):
    v = samples[family][:, 0]
    assert all(len(np.unique(m)) > 1000 for m in v)
    # Not layered: velocity changes laterally in most rows.
    assert np.mean(np.ptp(v, axis=-1) > 50.0) > 0.8


def test_style_depth_trend(samples):
    # The depth trend makes the deep part faster than the shallow part on average.
    v = samples["style-a"][:, 0]
    assert v[:, 50:].mean() > v[:, :20].mean() + 200.0


def test_style_sources_offline():
    for name in STYLE_SOURCES:
        img = source_image(name)
        assert img.ndim == 2 and img.dtype == np.float32
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert not img.flags.writeable
    assert source_image("camera") is source_image("camera")  # cached
    with pytest.raises(ValueError, match="camera"):
        source_image("lena")


def test_family_title_writes_openfwi_names():
    from fwi_teach.data import FAMILIES, family_title

    assert family_title("curvefault-b") == "CurveFault-B" and family_title("style-a") == "Style-A"
    assert [family_title(f).lower() for f in FAMILIES] == list(FAMILIES)
    assert family_title("mean-map") == "mean-map"  # not a family: unchanged
