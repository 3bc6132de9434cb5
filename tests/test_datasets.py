"""Registry, toy densities, digits and pixel-space accounting, prepared splits, user files."""

import json

import numpy as np
import pytest

import flows_tf.datasets as D
from flows_tf.datasets import digits, toy
from flows_tf.datasets.splits import split_rows

TOYS = sorted(toy.TOYS)
EXACT = ["eight_gaussians", "checkerboard", "rings"]
SMALL = {"n_train": 300, "n_val": 50, "n_test": 70}


# --- registry -----------------------------------------------------------------------------


def test_registry_lists_every_kind():
    kinds = {info.kind for info in D.DATASETS.values()}
    assert kinds == {"toy", "energy", "image", "uci"}
    assert {
        "u1",
        "u2",
        "u3",
        "u4",
        "digits",
        "power",
        "gas",
        "hepmass",
        "miniboone",
        "bsds300",
    } | set(TOYS) == set(D.DATASETS)
    assert {n for n, i in D.DATASETS.items() if i.has_true_density} == set(EXACT)


def test_import_does_not_start_tensorflow():
    import subprocess
    import sys

    code = "import sys, flows_tf.datasets; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_lists_known_names():
    with pytest.raises(D.DataError, match=r"unknown dataset 'nope'.*eight_gaussians"):
        D.load_dataset("nope", "train")


def test_unknown_option_and_split_are_named():
    with pytest.raises(D.DataError, match="n_trian"):
        D.load_dataset("rings", "train", n_trian=5)
    with pytest.raises(D.DataError, match="'training'"):
        D.load_dataset("rings", "training")
    with pytest.raises(D.DataError, match="energy target"):
        D.load_dataset("u1", "train")
    with pytest.raises(D.DataError, match="root"):
        D.load_dataset("power", "train")


# --- toys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_determinism_and_disjoint_splits(name):
    parts = {s: D.load_dataset(name, s, seed=3, **SMALL) for s in D.SPLITS}
    for split, x in parts.items():
        assert x.shape == (SMALL[f"n_{split}"], 2) and x.dtype == np.float32
        assert np.isfinite(x).all()
    np.testing.assert_array_equal(parts["train"], D.load_dataset(name, "train", seed=3, **SMALL))
    assert not np.array_equal(parts["train"], D.load_dataset(name, "train", seed=4, **SMALL))
    rows = [set(map(tuple, x.tolist())) for x in parts.values()]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    # the split size of one split does not change the others
    other = D.load_dataset(name, "test", seed=3, **{**SMALL, "n_train": 10})
    np.testing.assert_array_equal(other, parts["test"])


def _grid(lo, hi, n):
    xs = np.linspace(lo, hi, n)
    h = xs[1] - xs[0]
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], 1), h


@pytest.mark.parametrize("name", EXACT)
def test_true_density_integrates_to_one(name):
    # midpoint rule on cells; the checkerboard's cell edges align with the grid exactly
    edges = np.linspace(-6.0, 6.0, 1201)
    mid = 0.5 * (edges[1:] + edges[:-1])
    h = edges[1] - edges[0]
    gx, gy = np.meshgrid(mid, mid, indexing="ij")
    logp = D.true_log_prob(name, np.stack([gx.ravel(), gy.ravel()], 1))
    assert np.exp(logp).sum() * h * h == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("name", EXACT)
def test_true_density_matches_sample_histogram(name):
    x = toy.sample_toy(name, 200_000, np.random.default_rng(0))
    edges = np.linspace(-4.0, 4.0, 17)  # 16 x 16 bins of width 0.5
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])
    # probability of each bin from the density, by a 20 x 20 midpoint rule inside the bin
    fine = np.linspace(-4.0, 4.0, 16 * 20 + 1)
    mid = 0.5 * (fine[1:] + fine[:-1])
    gx, gy = np.meshgrid(mid, mid, indexing="ij")
    p = np.exp(D.true_log_prob(name, np.stack([gx.ravel(), gy.ravel()], 1))).reshape(320, 320)
    prob = p.reshape(16, 20, 16, 20).sum(axis=(1, 3)) * (fine[1] - fine[0]) ** 2
    expected = prob * len(x)
    big = expected > 50
    z = (counts[big] - expected[big]) / np.sqrt(expected[big])
    assert np.abs(z).max() < 5.0
    assert counts[~big].sum() <= 2 * expected[~big].sum() + 50


def test_true_density_values_at_known_points():
    # checkerboard: 1/32 on a black square, 0 on a white one
    lp = D.true_log_prob("checkerboard", np.array([[-3.0, -3.0], [-1.0, -3.0], [1.0, 1.0]]))
    np.testing.assert_allclose(lp[[0, 2]], -np.log(32.0))
    assert lp[1] == -np.inf
    # eight Gaussians at the centre (2 sqrt 2, 0): 1/8 sum_k N(x; c_k, s^2 I), where the other
    # centres sit at distances 4 sqrt 2 sin(pi k / 8) from it
    s = 0.5 / np.sqrt(2.0)
    dist = 4.0 * np.sqrt(2.0) * np.sin(np.pi * np.arange(8) / 8)
    want = np.log(np.exp(-0.5 * dist**2 / s**2).sum() / 8 / (2 * np.pi * s**2))
    lp = D.true_log_prob("eight_gaussians", np.array([[2.0 * np.sqrt(2.0), 0.0]]))
    np.testing.assert_allclose(lp, want, rtol=1e-12)
    # rings depend on the radius only
    a = D.true_log_prob("rings", np.array([[1.5, 0.0], [0.0, -1.5], [1.5 / np.sqrt(2)] * 2]))
    np.testing.assert_allclose(a, a[0])
    assert D.true_log_prob("two_moons", np.zeros((1, 2))) is None
    with pytest.raises(D.DataError, match=r"shape \(n, 2\)"):
        D.true_log_prob("rings", np.zeros((3, 3)))


# --- digits and pixel space ---------------------------------------------------------------


@pytest.mark.parametrize("logit", [False, True])
def test_digits_shapes_range_and_determinism(logit):
    parts, _ = D.load_splits("digits", seed=1, logit=logit)
    assert sum(len(x) for x in parts.values()) == 1797
    for x in parts.values():
        assert x.shape[1] == 64 and x.dtype == np.float32
    again, _ = D.load_splits("digits", seed=1, logit=logit)
    np.testing.assert_array_equal(parts["val"], again["val"])
    if not logit:
        allx = np.concatenate(list(parts.values()))
        assert allx.min() >= 0.0 and allx.max() < 1.0
        # dequantized, not quantized: the levels are filled, each 1/17 bin about uniformly
        frac = (allx * 17) % 1.0
        assert 0.45 < frac.mean() < 0.55


def test_split_rows_are_disjoint_and_cover():
    ids = np.arange(1797)[:, None]
    parts = split_rows(ids, 5, "digits", 0.1, 0.2)
    got = np.concatenate([p[:, 0] for p in parts.values()])
    assert len(got) == 1797 and len(set(got.tolist())) == 1797
    assert len(parts["val"]) == 180 and len(parts["test"]) == 359
    other = split_rows(ids, 6, "digits", 0.1, 0.2)
    assert not np.array_equal(parts["test"], other["test"])


@pytest.mark.parametrize("logit", [False, True])
def test_uniform_pixel_density_gives_log2_17_bits(logit):
    # p ~ U[0, 17)^64 has log p = -64 log 17 exactly. In model space its density is
    # 1 (z = p/17 on [0,1)^64) or prod y(1-y)/(1-2 alpha) (logit), which pixel_loglik must undo.
    alpha = 0.05
    meta = {"pixel_space": digits.pixel_space_info(logit, alpha), "dim": 64}
    pixels = np.random.default_rng(0).uniform(0.0, 17.0, size=(50, 64))
    z = digits.to_model_space(pixels, logit, alpha)
    if logit:
        y = alpha + (1 - 2 * alpha) * pixels / 17
        ll_model = (np.log(y * (1 - y)) - np.log1p(-2 * alpha)).sum(1)
    else:
        ll_model = np.zeros(50)
    ll_pixel = D.pixel_loglik(meta, z, ll_model)
    np.testing.assert_allclose(ll_pixel, -64 * np.log(17.0), rtol=1e-12)
    np.testing.assert_allclose(D.bits_per_dim(meta, ll_pixel), np.log2(17.0), rtol=1e-12)


def test_pixel_jacobian_matches_finite_differences():
    alpha = 0.05
    ps = digits.pixel_space_info(True, alpha)
    pixels = np.random.default_rng(1).uniform(0.2, 16.8, size=(4, 64))
    eps = 1e-6
    fd = (
        digits.to_model_space(pixels + eps, True, alpha)
        - digits.to_model_space(pixels - eps, True, alpha)
    ) / (2 * eps)
    z = digits.to_model_space(pixels, True, alpha)
    np.testing.assert_allclose(digits.log_dz_dpixel(z, ps), np.log(fd).sum(1), rtol=1e-7)


def test_pixel_loglik_is_identity_without_pixel_space():
    ll = np.array([-1.0, 2.0])
    np.testing.assert_array_equal(D.pixel_loglik({"pixel_space": None}, np.zeros((2, 3)), ll), ll)
    assert D.bits_per_dim({"pixel_space": None, "dim": 2}, -2 * np.log(2.0)) == pytest.approx(1.0)


# --- prepared splits ----------------------------------------------------------------------


@pytest.fixture
def prepared(tmp_path):
    out = tmp_path / "eight_gaussians"
    meta = D.prepare_dataset("eight_gaussians", out, seed=2, **SMALL)
    return out, meta


def test_prepare_writes_splits_and_meta(prepared):
    out, meta = prepared
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json",
        "test.npy",
        "train.npy",
        "val.npy",
    ]
    assert D.read_meta(out) == meta == json.loads((out / "meta.json").read_text())
    assert meta["shape"] == {"train": [300, 2], "val": [50, 2], "test": [70, 2]}
    assert meta["has_true_density"] is True and meta["pixel_space"] is None
    assert meta["preprocessing"] == {"seed": 2, **SMALL}
    for split in D.SPLITS:
        np.testing.assert_array_equal(
            D.read_split(out, split), D.load_dataset("eight_gaussians", split, seed=2, **SMALL)
        )
    again = D.prepare_dataset("eight_gaussians", out.parent / "again", seed=2, **SMALL)
    assert again["content_hash"] == meta["content_hash"]
    other = D.prepare_dataset("eight_gaussians", out.parent / "other", seed=3, **SMALL)
    assert other["content_hash"] != meta["content_hash"]


def test_prepare_digits_records_pixel_space(tmp_path):
    meta = D.prepare_dataset("digits", tmp_path, seed=0, logit=False)
    assert meta["pixel_space"]["levels"] == 17 and meta["pixel_space"]["logit"] is False
    assert meta["dim"] == 64 and meta["kind"] == "image"


def test_read_split_missing_file(prepared):
    out, _ = prepared
    (out / "val.npy").unlink()
    with pytest.raises(D.DataError, match=r"eight_gaussians: split file .*val.npy is missing"):
        D.read_split(out, "val")


def test_read_split_truncated_file(prepared):
    out, _ = prepared
    raw = (out / "train.npy").read_bytes()
    (out / "train.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D.DataError, match=r"eight_gaussians: .*train.npy is corrupt or truncated"):
        D.read_split(out, "train")


def test_read_split_garbage_file(prepared):
    out, _ = prepared
    (out / "test.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(D.DataError, match="corrupt or truncated"):
        D.read_split(out, "test")


def test_read_split_wrong_shape(prepared):
    out, _ = prepared
    np.save(out / "val.npy", np.zeros((50, 3), np.float32))
    with pytest.raises(D.DataError, match=r"wrong shape \(50, 3\).*\[50, 2\]"):
        D.read_split(out, "val")
    np.save(out / "val.npy", np.zeros(50, np.float32))
    with pytest.raises(D.DataError, match="wrong shape"):
        D.read_split(out, "val")


def test_read_split_nan_and_changed_content(prepared):
    out, _ = prepared
    x = D.read_split(out, "train").copy()
    x[7, 1] = np.nan
    np.save(out / "train.npy", x)
    with pytest.raises(D.DataError, match=r"1 NaN/inf values \(first in row 7\)"):
        D.read_split(out, "train")
    x[7, 1] = 0.123
    np.save(out / "train.npy", x)
    with pytest.raises(D.DataError, match="content hash"):
        D.read_split(out, "train")


def test_read_meta_missing_or_corrupt(tmp_path):
    with pytest.raises(D.DataError, match="meta.json is missing"):
        D.read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(D.DataError, match="meta.json is corrupt"):
        D.read_meta(tmp_path)


# --- user files ---------------------------------------------------------------------------


def _user_data(n=200):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.0]


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_user_file_split_and_standardised_by_train(tmp_path, suffix):
    data = _user_data()
    path = tmp_path / f"mine{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    else:
        np.savetxt(path, data, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    parts, params = D.load_splits("mydata", seed=0, path=str(path))
    assert [len(parts[s]) for s in D.SPLITS] == [160, 20, 20]
    np.testing.assert_allclose(parts["train"].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(parts["train"].std(0), 1.0, atol=1e-5)
    # every row of the file is in exactly one split, undone by the training statistics
    back = np.concatenate([parts[s] for s in D.SPLITS]) * params["std"] + params["mean"]
    key = lambda a: np.round(a, 4)[np.lexsort(np.round(a, 4).T)]  # noqa: E731
    np.testing.assert_allclose(key(back), key(data), atol=1e-3)
    assert not np.array_equal(
        parts["test"], D.load_splits("mydata", seed=1, path=str(path))[0]["test"]
    )


def test_user_file_errors(tmp_path):
    with pytest.raises(D.DataError, match=r"mydata: data file .*x.npy is missing"):
        D.load_dataset("mydata", "train", path=str(tmp_path / "x.npy"))
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,nan\n5,6\n7,8\n")
    with pytest.raises(D.DataError, match=r"mydata: .*bad.csv has 1 NaN/inf values"):
        D.load_dataset("mydata", "train", path=str(bad))
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10))
    with pytest.raises(D.DataError, match=r"2-D array.*\(10,\)"):
        D.load_dataset("mydata", "train", path=str(flat))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    with pytest.raises(D.DataError, match="corrupt or unreadable"):
        D.load_dataset("mydata", "train", path=str(ragged))
    np.save(tmp_path / "few.npy", np.zeros((3, 2)))
    with pytest.raises(D.DataError, match="too few"):
        D.load_dataset("mydata", "train", path=str(tmp_path / "few.npy"))
