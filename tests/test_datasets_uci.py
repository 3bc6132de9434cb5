"""The MAF paper's UCI preprocessing on small fixture files in the raw formats; real MINIBOONE."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

import flows_tf.datasets as D
from flows_tf.datasets import uci

SHARED_MINIBOONE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miniboone"


def _split_sizes(n):
    n_test = int(0.1 * n)
    n_val = int(0.1 * (n - n_test))
    return n - n_test - n_val, n_val, n_test


# --- POWER --------------------------------------------------------------------------------


@pytest.fixture
def power_root(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    raw = np.empty((n, 8))
    raw[:, [0, 2, 4, 5, 6]] = rng.integers(0, 1000, size=(n, 5))  # kept columns, integer valued
    raw[:, [1, 3]] = 1e6 + rng.normal(size=(n, 2))  # the two columns MAF drops
    raw[:, 7] = np.arange(n)  # time: gets no noise, so it identifies each row after the shuffle
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", raw)
    return tmp_path, raw


def test_power_drops_columns_adds_noise_splits_and_standardises(power_root):
    root, raw = power_root
    parts = uci.load_uci_splits("power", root)
    n_train, n_val, n_test = _split_sizes(len(raw))
    assert [parts[s].shape for s in D.SPLITS] == [(n_train, 6), (n_val, 6), (n_test, 6)]
    trval = np.vstack([parts["train"], parts["val"]]).astype(np.float64)
    np.testing.assert_allclose(trval.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(trval.std(0), 1.0, atol=1e-5)  # ddof = 0
    allx = np.vstack([parts[s] for s in D.SPLITS]).astype(np.float64)
    # the time column is affine in the row id: recover the RandomState(42) shuffle
    rows = np.rint(
        (allx[:, 5] - allx[:, 5].min()) / (allx[:, 5].max() - allx[:, 5].min()) * (len(raw) - 1)
    ).astype(int)
    np.testing.assert_array_equal(rows, np.random.RandomState(42).permutation(len(raw)))
    # kept columns 0, 2, 4, 5, 6 in order, each plus uniform noise of the MAF widths
    for out_col, (raw_col, width) in enumerate(
        zip([0, 2, 4, 5, 6], [0.001, 0.01, 1, 1, 1], strict=True)
    ):
        src = raw[rows, raw_col]
        slope, icpt = np.polyfit(src, allx[:, out_col], 1)
        noise = (allx[:, out_col] - icpt) / slope - src
        spread = noise.max() - noise.min()
        assert 0.9 * width < spread < 1.1 * width + 1e-3, (out_col, spread)
    again = uci.load_uci_splits("power", root)
    np.testing.assert_array_equal(again["test"], parts["test"])


# --- GAS ----------------------------------------------------------------------------------


def test_gas_drops_labels_and_correlated_columns_then_standardises(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    n = 500
    a = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "Time": np.arange(n, dtype=float),
            "Meth": rng.normal(size=n),
            "Eth": rng.normal(size=n),
            "s1": a,
            "s2": 2.0 * a + 0.01 * rng.normal(size=n),  # s1 and s2 correlate > 0.98
            "s3": rng.normal(size=n),
            "s4": rng.normal(size=n) * 5 + 3,
            "s5": rng.normal(size=n),
        }
    )
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    parts = uci.load_uci_splits("gas", tmp_path)
    # s1 (the first of the correlated pair) goes; standardised over all rows (ddof=1), no shuffle
    kept = frame[["s2", "s3", "s4", "s5"]].to_numpy()
    want = (kept - kept.mean(0)) / kept.std(0, ddof=1)
    n_train, n_val, n_test = _split_sizes(n)
    np.testing.assert_allclose(parts["train"], want[:n_train], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["val"], want[n_train : n_train + n_val], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["test"], want[-n_test:], rtol=1e-5, atol=1e-6)


# --- HEPMASS ------------------------------------------------------------------------------


def test_hepmass_keeps_signal_drops_repeated_minimum_features(tmp_path):
    rng = np.random.default_rng(2)

    def table(n, extra):
        label = (np.arange(n) % 3 != 0).astype(float)  # 1 = signal; 0 rows get huge values
        f = rng.normal(size=(n, 4))
        f[label == 0] = 1e6
        f[: n // 2, 1] = f[:, 1].min() - 1.0  # feature 1: its smallest value repeats -> dropped
        f[: n // 2, 2] = 0.5  # feature 2: a repeated value that is not its minimum -> kept
        mass = np.where(np.arange(n) % 2 == 0, 500.0, 750.0)  # few distinct values -> dropped
        cols = {"# label": label, **{f"f{i}": f[:, i] for i in range(4)}, "mass": mass}
        if extra:
            cols["junk"] = rng.normal(size=n)  # the test file's extra last column
        return cols

    import pandas as pd

    (tmp_path / "hepmass").mkdir()
    train_cols, test_cols = table(300, False), table(120, True)
    pd.DataFrame(train_cols).to_csv(tmp_path / "hepmass" / "1000_train.csv", index=False)
    pd.DataFrame(test_cols).to_csv(tmp_path / "hepmass" / "1000_test.csv", index=False)
    parts = uci.load_uci_splits("hepmass", tmp_path)

    sig_tr = train_cols["# label"] == 1
    sig_te = test_cols["# label"] == 1
    tr = np.stack([train_cols[f"f{i}"][sig_tr] for i in (0, 2, 3)], 1)
    te = np.stack([test_cols[f"f{i}"][sig_te] for i in (0, 2, 3)], 1)
    mu, sd = tr.mean(0), tr.std(0, ddof=1)
    n_val = int(0.1 * len(tr))
    np.testing.assert_allclose(parts["train"], ((tr - mu) / sd)[:-n_val], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["val"], ((tr - mu) / sd)[-n_val:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["test"], (te - mu) / sd, rtol=1e-5, atol=1e-6)


# --- MINIBOONE and BSDS300 ----------------------------------------------------------------


def _miniboone_raw(root, n=400, d=5):
    raw = np.random.default_rng(3).normal(size=(n, d)) * np.arange(1, d + 1) + 7.0
    (root / "miniboone").mkdir(parents=True)
    np.save(root / "miniboone" / "data.npy", raw)
    return raw


def test_miniboone_tail_splits_standardised_by_train_and_val(tmp_path):
    raw = _miniboone_raw(tmp_path)
    parts = uci.load_uci_splits("miniboone", tmp_path)
    n_train, n_val, n_test = _split_sizes(len(raw))
    trval = raw[: n_train + n_val]
    mu, sd = trval.mean(0), trval.std(0)
    np.testing.assert_allclose(parts["train"], (raw[:n_train] - mu) / sd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        parts["val"], (raw[n_train : n_train + n_val] - mu) / sd, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(parts["test"], (raw[-n_test:] - mu) / sd, rtol=1e-5, atol=1e-6)


def test_bsds300_reads_the_hdf5_splits(tmp_path):
    h5py = pytest.importorskip("h5py")
    (tmp_path / "BSDS300").mkdir()
    rng = np.random.default_rng(4)
    want = {
        k: rng.normal(size=(n, 63)).astype(np.float32)
        for k, n in (("train", 30), ("validation", 10), ("test", 12))
    }
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as fh:
        for k, v in want.items():
            fh[k] = v
    parts = uci.load_uci_splits("bsds300", tmp_path)
    for split, key in zip(D.SPLITS, ("train", "validation", "test"), strict=True):
        np.testing.assert_array_equal(parts[split], want[key])


def test_missing_and_malformed_raw_files(tmp_path):
    with pytest.raises(D.DataError, match=r"power: raw file .*power/data.npy is missing"):
        D.load_dataset("power", "train", root=str(tmp_path))
    (tmp_path / "miniboone").mkdir()
    (tmp_path / "miniboone" / "data.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(D.DataError, match="miniboone: could not preprocess"):
        D.load_dataset("miniboone", "train", root=str(tmp_path))


# --- archive: download and extraction -----------------------------------------------------


def _archive(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(5).normal(size=(200, 4)))
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel in uci._RAW["power"] + uci._RAW["miniboone"]:
            info = tarfile.TarInfo(f"data/{rel}")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_download_checks_checksum_and_leaves_nothing_on_failure(tmp_path):
    from flows_tf.datasets.io import file_digest

    src = _archive(tmp_path)
    out = tmp_path / "dl"
    good = file_digest(src)
    got = D.download(src.as_uri(), out / "maf.tar.gz", good)
    assert file_digest(got) == good
    with pytest.raises(D.DataError, match="checksum mismatch"):
        D.download(src.as_uri(), out / "bad.tar.gz", "0" * 64)
    with pytest.raises(D.DataError, match="failed"):
        D.download((tmp_path / "absent.tar.gz").as_uri(), out / "absent.tar.gz", good)
    with pytest.raises(D.DataError, match="without a checksum"):
        D.download(src.as_uri(), out / "unchecked.tar.gz")
    assert sorted(p.name for p in out.iterdir()) == ["maf.tar.gz"]  # no partial or temp files
    # md5 (what Zenodo publishes) works too
    D.download(src.as_uri(), out / "md5.tar.gz", md5=file_digest(src, "md5"))


def test_extract_archive_then_prepare(tmp_path):
    archive = _archive(tmp_path)  # holds POWER and MINIBOONE only
    with pytest.raises(D.DataError, match=r"lacks \['gas/ethylene_CO.pickle'\]"):
        uci.extract_maf_archive(archive, tmp_path / "raw0", names=["gas"])
    root = uci.extract_maf_archive(archive, tmp_path / "raw", names=["power", "miniboone"])
    assert sorted(p.name for p in root.iterdir()) == ["miniboone", "power"]
    meta = D.prepare_dataset("miniboone", tmp_path / "prepared", root=str(root))
    assert meta["shape"]["test"] == [20, 4] and meta["kind"] == "uci"
    assert meta["preprocessing"] == {"seed": None, "root": str(root)}
    np.testing.assert_array_equal(
        D.read_split(tmp_path / "prepared", "val"),
        D.load_dataset("miniboone", "val", root=str(root)),
    )
    (tmp_path / "broken.tar.gz").write_bytes(_archive(tmp_path).read_bytes()[:100])
    with pytest.raises(D.DataError, match="corrupt or truncated"):
        uci.extract_maf_archive(tmp_path / "broken.tar.gz", tmp_path / "raw2")


# --- the real MINIBOONE splits ------------------------------------------------------------


def _gaussian_loglik(fit, score):
    mu = fit.mean(0)
    cov = np.cov(fit.T, bias=True)
    chol = np.linalg.cholesky(cov)
    sol = np.linalg.solve(chol, (score - mu).T)
    d = fit.shape[1]
    return (
        -0.5 * (sol**2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)
    ).mean()


@pytest.mark.skipif(
    not (SHARED_MINIBOONE / "test.npy").is_file(), reason="real MINIBOONE splits not present"
)
def test_real_miniboone_splits_gaussian_scores_about_minus_37():
    val = D.read_split(SHARED_MINIBOONE, "val").astype(np.float64)
    test = D.read_split(SHARED_MINIBOONE, "test").astype(np.float64)
    assert val.shape == (3284, 43) and test.shape == (3648, 43)
    # standardised with train + validation statistics: the validation part is near N(0, 1)
    assert np.abs(val.mean(0)).max() < 0.2 and 0.5 < val.std(0).mean() < 1.5
    for fit, score in ((val, test), (test, val)):
        assert -39.0 < _gaussian_loglik(fit, score) < -36.0  # MAF paper, Gaussian: -37.24
