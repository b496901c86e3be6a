"""Normalisation, layout discovery and the memory-mapped OpenFWIDataset, on small fake trees."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from fwi_teach.data import DATA_BOUNDS, OpenFWIDataset, SeismicTransform, low_data_fractions, subset_indices
from fwi_teach.data.normalize import denormalize_velocity, normalize_velocity

NT = 12  # time samples of the fake records


def _pair(k, seed, nt=NT):
    rng = np.random.default_rng(seed)
    seis = (rng.standard_normal((k, 5, nt, 70)) * 10).astype(np.float32)
    vel = rng.uniform(1500, 4500, (k, 1, 70, 70)).astype(np.float32)
    return seis, vel


def make_vel_tree(root, numbers, k=2):
    (root / "data").mkdir(parents=True)
    (root / "model").mkdir()
    for n in numbers:
        seis, vel = _pair(k, n)
        np.save(root / "data" / f"data{n}.npy", seis)
        np.save(root / "model" / f"model{n}.npy", vel)
    return root


def make_fault_tree(root, groups, ids, k=1):
    root.mkdir(parents=True)
    for g in groups:
        for i in ids:
            seis, vel = _pair(k, 100 * g + i)
            np.save(root / f"seis{g}_1_{i}.npy", seis)
            np.save(root / f"vel{g}_1_{i}.npy", vel)
    return root


def names(ds):
    return [p[0].name for p in ds.pairs]


# -- normalisation -----------------------------------------------------------------------
def test_data_bounds_has_the_ten_published_pairs():
    assert len(DATA_BOUNDS) == 10
    assert DATA_BOUNDS["flatvel-a"] == (-26.95, 52.77)
    assert DATA_BOUNDS["style-b"] == (-23.76, 46.01)


def test_seismic_transform_maps_bounds_to_unit_range_and_inverts():
    t = SeismicTransform(*DATA_BOUNDS["curvevel-b"])
    ends = t(np.array([-29.04, 57.03], dtype=np.float32))
    np.testing.assert_allclose(ends, [-1.0, 1.0], atol=1e-6)
    x = np.random.default_rng(0).normal(0, 5, (3, 5, 40, 70)).astype(np.float32)
    before = x.copy()
    y = t(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(x, before)  # input untouched
    np.testing.assert_allclose(t.inverse(y), x, rtol=1e-4, atol=1e-4)
    xt = torch.from_numpy(x.copy())
    yt = t(xt)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-6)
    np.testing.assert_array_equal(xt.numpy(), before)
    np.testing.assert_allclose(t.inverse(yt).numpy(), x, rtol=1e-4, atol=1e-4)


def test_seismic_transform_is_log_then_minmax():
    t = SeismicTransform(-10.0, 20.0)
    lo, hi = -np.log1p(10.0), np.log1p(20.0)
    x = np.array([3.0, -2.0])
    expected = 2 * (np.sign(x) * np.log1p(np.abs(x)) - lo) / (hi - lo) - 1
    np.testing.assert_allclose(t(x), expected, rtol=1e-12)
    assert SeismicTransform.for_family("FlatVel_A") == SeismicTransform(*DATA_BOUNDS["flatvel-a"])


def test_seismic_transform_rejects_bad_bounds():
    with pytest.raises(ValueError, match="data_min < data_max"):
        SeismicTransform(5.0, -5.0)


def test_velocity_normalisation_round_trip():
    v = np.array([1500.0, 3000.0, 4500.0], dtype=np.float32)
    y = normalize_velocity(v)
    np.testing.assert_allclose(y, [-1.0, 0.0, 1.0])
    assert y.dtype == np.float32
    np.testing.assert_allclose(denormalize_velocity(y), v)
    np.testing.assert_array_equal(v, [1500.0, 3000.0, 4500.0])


# -- subsets ---------------------------------------------------------------------------------
def test_subsets_are_nested_deterministic_and_sized():
    assert low_data_fractions == (0.1, 0.25, 0.5, 0.75, 1.0)
    subsets = [set(subset_indices(200, f, seed=3)) for f in low_data_fractions]
    assert [len(s) for s in subsets] == [20, 50, 100, 150, 200]
    for small, big in zip(subsets, subsets[1:]):
        assert small < big
    np.testing.assert_array_equal(subset_indices(200, 0.25, 3), subset_indices(200, 0.25, 3))
    assert set(subset_indices(200, 0.25, 4)) != subsets[1]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_out_of_range(tmp_path, fraction):
    make_vel_tree(tmp_path / "flatvel-a", range(1, 61), k=1)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        OpenFWIDataset(tmp_path / "flatvel-a", fraction=fraction)


# -- layouts -----------------------------------------------------------------------------
def test_full_vel_download_uses_official_split(tmp_path):
    root = make_vel_tree(tmp_path / "FlatVel_A", range(1, 61), k=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train = OpenFWIDataset(root)
        val = OpenFWIDataset(root, split="val")
    assert train.family == "flatvel-a"
    assert names(train) == [f"data{k}.npy" for k in range(1, 49)]
    assert names(val) == [f"data{k}.npy" for k in range(49, 61)]
    # OpenFWI's 12 validation samples: the first half is our validation split, the second our test split.
    test = OpenFWIDataset(root, split="test")
    assert len(train) == 48 and len(val) == 6 and len(test) == 6
    assert val.indices.tolist() == list(range(6)) and test.indices.tolist() == list(range(6, 12))
    assert test.fraction == 1.0 and len(OpenFWIDataset(root, split="test", fraction=0.5)) == 3


def test_full_style_download_uses_style_split(tmp_path):
    root = make_vel_tree(tmp_path / "style_b", range(1, 135), k=1)
    train, val = OpenFWIDataset(root), OpenFWIDataset(root, split="val")
    assert train.family == "style-b"
    assert len(train.pairs) == 120 and len(val.pairs) == 14
    assert names(val)[0] == "data121.npy"


def test_partial_download_falls_back_with_warning(tmp_path):
    root = make_vel_tree(tmp_path / "curvevel-a", [1, 2, 3, 4, 5])
    with pytest.warns(UserWarning, match="not a complete OpenFWI download.*highest-numbered 1 of 5"):
        val = OpenFWIDataset(root, split="val")
    assert names(val) == ["data5.npy"]
    with pytest.warns(UserWarning):
        assert names(OpenFWIDataset(root)) == [f"data{k}.npy" for k in range(1, 5)]
    root2 = make_vel_tree(tmp_path / "curvevel-b", [1, 2, 50])
    with pytest.warns(UserWarning, match="keep their official"):
        assert names(OpenFWIDataset(root2, split="val")) == ["data50.npy"]


def test_fault_layout_full_and_partial(tmp_path):
    root = make_fault_tree(tmp_path / "FlatFault-B", (6, 7, 8), range(36))
    train, val = OpenFWIDataset(root), OpenFWIDataset(root, split="val")
    assert train.family == "flatfault-b"
    assert len(train) == 96 and len(val) == 6 and len(OpenFWIDataset(root, split="test")) == 6  # 12 halved
    assert all(int(n.split("_")[-1][:-4]) >= 32 for n in names(val))
    assert train.pairs[0][1].name == train.pairs[0][0].name.replace("seis", "vel")
    part = make_fault_tree(tmp_path / "curvefault-a", (2, 3, 4), range(2))
    with pytest.warns(UserWarning, match="not a complete"):
        val = OpenFWIDataset(part, split="val")
    assert names(val) == ["seis4_1_1.npy"]  # highest i, then highest G


def test_split_file_with_absolute_paths(tmp_path):
    root = make_vel_tree(tmp_path / "anything", [1, 2], k=3)
    split = tmp_path / "my_split.txt"
    split.write_text(f"{root / 'data/data2.npy'}\t{root / 'model/model2.npy'}\n\n"
                     f"{root / 'data/data1.npy'}\t{root / 'model/model1.npy'}\n")
    ds = OpenFWIDataset(split, family="Style-A")
    assert ds.family == "style-a" and len(ds) == 6
    seis, vel = ds.raw_sample(0)
    ref_s, ref_v = _pair(3, 2)
    np.testing.assert_array_equal(seis, ref_s[0])
    np.testing.assert_array_equal(vel, ref_v[0])


def test_openfwi_split_files_resolve_relative_paths_against_the_working_directory(tmp_path, monkeypatch):
    """OpenFWI's own split_files/*.txt hold paths relative to where its scripts run."""
    root = make_vel_tree(tmp_path / "openfwi" / "flatvel_a", [1, 2], k=3)
    (tmp_path / "split_files").mkdir()
    split = tmp_path / "split_files" / "flatvel_a_train.txt"
    split.write_text("openfwi/flatvel_a/data/data2.npy\topenfwi/flatvel_a/model/model2.npy\n")
    monkeypatch.chdir(tmp_path)
    ds = OpenFWIDataset(split, family="flatvel-a")
    assert len(ds) == 3 and ds.pairs[0][0] == root / "data" / "data2.npy"
    # paths relative to the split file's folder (as this package writes them) still load
    (tmp_path / "split_files" / "data").mkdir()
    np.save(tmp_path / "split_files" / "data" / "data9.npy", _pair(3, 9)[0])
    (tmp_path / "split_files" / "model").mkdir()
    np.save(tmp_path / "split_files" / "model" / "model9.npy", _pair(3, 9)[1])
    local = tmp_path / "split_files" / "local.txt"
    local.write_text("data/data9.npy\tmodel/model9.npy\n")
    assert OpenFWIDataset(local, family="flatvel-a").pairs[0][0] == tmp_path / "split_files" / "data" / "data9.npy"
    # the same relative path naming two different files is an error, not a silent choice
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "data9.npy", _pair(3, 9)[0])
    with pytest.raises(ValueError, match="names two files"):
        OpenFWIDataset(local, family="flatvel-a")


def test_items_are_normalised_float32_and_denormalise(tmp_path):
    root = make_vel_tree(tmp_path / "flatvel-b", [1, 2, 3])
    with pytest.warns(UserWarning):
        ds = OpenFWIDataset(root)
    seis, vel = ds[1]
    assert seis.dtype == torch.float32 and vel.dtype == torch.float32
    assert seis.shape == (5, NT, 70) and vel.shape == (1, 70, 70)
    ref_s, ref_v = _pair(2, 1)
    np.testing.assert_allclose(ds.denormalize_velocity(vel).numpy(), ref_v[1], rtol=1e-6)
    np.testing.assert_allclose(ds.denormalize_seismic(seis).numpy(), ref_s[1], rtol=1e-4, atol=1e-4)
    assert float(vel.min()) >= -1 and float(vel.max()) <= 1


@pytest.mark.parametrize("mmap", [True, False])
def test_cached_arrays_are_never_modified(tmp_path, mmap):
    root = make_vel_tree(tmp_path / "curvevel-a", range(1, 61), k=1)
    ds = OpenFWIDataset(root, mmap=mmap)
    first = [t.clone() for t in ds[3]]
    second = ds[3]
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    cached_seis, cached_vel = ds._arrays(3)
    ref_s, ref_v = _pair(1, 4)
    np.testing.assert_array_equal(cached_seis, ref_s)
    np.testing.assert_array_equal(cached_vel, ref_v)
    assert len(pickle.dumps(ds)) < 100_000  # memory maps are not pickled for DataLoader workers


def test_time_decimation_and_subset_indices(tmp_path):
    root = make_vel_tree(tmp_path / "flatvel-a", range(1, 61), k=1)
    ds = OpenFWIDataset(root, time_decimation=5, fraction=0.25, subset_seed=1)
    assert ds.seismic_shape == (5, NT // 5, 70)
    assert ds[0][0].shape == (5, NT // 5, 70)
    assert len(ds) == 12 and list(ds.indices) == list(subset_indices(48, 0.25, 1))
    seis, _ = ds.raw_sample(2)
    file_idx, row = ds.locate(2)
    full = np.load(ds.pairs[file_idx][0])[row]
    np.testing.assert_array_equal(seis, full[:, 0:10:5, :])
    with pytest.raises(IndexError, match="out of range"):
        ds[12]


# -- errors ------------------------------------------------------------------------------------
def test_error_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenFWIDataset(tmp_path / "nope", family="flatvel-a")


def test_error_unrecognised_layout(tmp_path):
    (tmp_path / "flatvel-a").mkdir()
    (tmp_path / "flatvel-a" / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"no recognised OpenFWI layout.*data/dataK\.npy.*seis\{G\}_1_\{i\}\.npy"):
        OpenFWIDataset(tmp_path / "flatvel-a")


def test_error_data_model_mismatch(tmp_path):
    root = make_vel_tree(tmp_path / "flatvel-a", [1, 2, 3])
    (root / "model" / "model3.npy").unlink()
    with pytest.raises(ValueError, match=r"data/model file count mismatch.*3 data.*2 model.*model3\.npy"):
        OpenFWIDataset(root)


def test_error_fault_mismatch(tmp_path):
    root = make_fault_tree(tmp_path / "flatfault-a", (2,), range(3))
    (root / "seis2_1_1.npy").unlink()
    with pytest.raises(ValueError, match=r"count mismatch.*seis2_1_1\.npy"):
        OpenFWIDataset(root)


def test_error_wrong_shape_and_dtype(tmp_path):
    root = make_vel_tree(tmp_path / "flatvel-a", range(1, 61), k=1)
    np.save(root / "model" / "model2.npy", np.zeros((1, 1, 70, 71), np.float32))
    with pytest.raises(ValueError, match=r"model2\.npy holds float32 of shape \(1, 1, 70, 71\); expected .*\(samples, 1, 70, 70\)"):
        OpenFWIDataset(root)
    np.save(root / "model" / "model2.npy", np.zeros((1, 1, 70, 70), np.float32))
    np.save(root / "data" / "data3.npy", np.zeros((1, 5, NT, 70), np.float64))
    with pytest.raises(ValueError, match=r"data3\.npy holds float64 of shape \(1, 5, 12, 70\); expected float32"):
        OpenFWIDataset(root)
    np.save(root / "data" / "data3.npy", np.zeros((1, 5, NT + 1, 70), np.float32))
    with pytest.raises(ValueError, match=r"data3\.npy has samples of shape \(5, 13, 70\)"):
        OpenFWIDataset(root)


def test_error_sample_counts_differ(tmp_path):
    root = make_vel_tree(tmp_path / "flatvel-a", range(1, 61), k=1)
    np.save(root / "model" / "model7.npy", np.zeros((2, 1, 70, 70), np.float32))
    with pytest.raises(ValueError, match=r"sample counts differ.*data7\.npy has 1 samples.*model7\.npy has 2"):
        OpenFWIDataset(root)


def test_error_unknown_family_and_uninferable_family(tmp_path):
    root = make_vel_tree(tmp_path / "mydata", range(1, 61), k=1)
    with pytest.raises(ValueError, match="unknown velocity family 'flatvel-z'"):
        OpenFWIDataset(root, family="flatvel-z")
    with pytest.raises(ValueError, match="cannot tell the family.*pass family="):
        OpenFWIDataset(root)
    assert len(OpenFWIDataset(root, normalize=False)) == 48


def test_error_malformed_split_line(tmp_path):
    split = tmp_path / "train.txt"
    split.write_text("a.npy\tb.npy\n# comment\nonly_one_field.npy\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 3: expected '<seismic path>"):
        OpenFWIDataset(split, family="flatvel-a")


def test_error_split_file_points_to_missing_file(tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("data/x.npy\tmodel/x.npy\n")
    with pytest.raises(FileNotFoundError, match=r"x\.npy listed for this data set does not exist"):
        OpenFWIDataset(split, family="flatvel-a")


def test_error_truncated_file(tmp_path):
    root = make_vel_tree(tmp_path / "flatvel-a", range(1, 61), k=1)
    path = root / "data" / "data9.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"data9\.npy is truncated"):
        OpenFWIDataset(root)
    path.write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match=r"cannot read .*data9\.npy as a \.npy file"):
        OpenFWIDataset(root)


@pytest.mark.filterwarnings("ignore:.*not a complete OpenFWI download")
def test_a_single_validation_sample_cannot_be_halved(tmp_path):
    root = make_vel_tree(tmp_path / "FlatVel_A", range(1, 61), k=1)
    for k in range(50, 61):  # leave one validation file
        (root / "data" / f"data{k}.npy").unlink()
        (root / "model" / f"model{k}.npy").unlink()
    with pytest.raises(ValueError, match="at least 2 are needed"):
        OpenFWIDataset(root, split="test")


def test_unknown_split_names_the_three(tmp_path):
    with pytest.raises(ValueError, match="'train', 'val' or 'test'"):
        OpenFWIDataset(make_vel_tree(tmp_path / "FlatVel_A", [1, 2], k=1), split="holdout")

