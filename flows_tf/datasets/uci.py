"""The UCI suite of the MAF paper, preprocessed exactly as its code does.

Raw files are those of the preprocessed-data release of Papamakarios et al. (Zenodo record
1161203, ``data.tar.gz``), extracted so that ``root`` holds ``power/data.npy``,
``gas/ethylene_CO.pickle``, ``hepmass/1000_{train,test}.csv``, ``miniboone/data.npy`` and
``BSDS300/BSDS300.hdf5``. Each function below mirrors ``datasets/<name>.py`` of
github.com/gpapamak/maf, including its quirks (kept on purpose, so results are comparable):

- POWER: ``RandomState(42)`` shuffle, drop columns 3 and 1, add uniform noise (gap 0.001,
  voltage 0.01, sub-metering 1, time 0), last 10% test, last 10% of the rest validation,
  standardise with the mean/std (ddof=0) of train + validation.
- GAS: drop Meth, Eth, Time; repeatedly drop the first column correlated > 0.98 with another;
  standardise all rows with pandas mean/std (ddof=1) *before* splitting; split as POWER, no shuffle.
- HEPMASS: keep class-1 rows, drop the label (and the test file's last column); standardise with
  the training mean/std (pandas, ddof=1); drop every feature whose *smallest* value occurs more
  than 5 times in training (the original's ``sorted(Counter.items())[0]``); validation is the last
  10% of training.
- MINIBOONE: split as POWER, no shuffle; standardise with train + validation (ddof=0).
- BSDS300: the HDF5 file's ``train``/``validation``/``test`` as they are (needs h5py).

References:
    Papamakarios, G., Pavlakou, T. and Murray, I. (2017). Masked Autoregressive Flow for
    Density Estimation. NeurIPS. arXiv:1705.07057.
"""

import shutil
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flows_tf.datasets.io import DataError, atomic_path, download

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["UCI", "MAF_ARCHIVE", "load_uci_splits", "fetch_maf_archive", "extract_maf_archive"]

# The release archive (doi:10.5281/zenodo.1161203) and the MD5 that Zenodo lists for it; a
# config may override either (``md5`` or ``sha256``). An unchecked download is refused.
MAF_ARCHIVE = {
    "url": "https://zenodo.org/record/1161203/files/data.tar.gz",
    "sha256": None,
    "md5": "9b9c9b0375315ad270eba4ce80c093ab",
}

_RAW = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}
UCI = tuple(_RAW)


def _tail_splits(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF's split: last 10% test, then the last 10% of the rest validation."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[0:-n_test]
    n_val = int(0.1 * rest.shape[0])
    return rest[0:-n_val], rest[-n_val:], test


def _standardise_by_train_val(
    train: np.ndarray, val: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    both = np.vstack((train, val))
    mu, s = both.mean(axis=0), both.std(axis=0)
    return (train - mu) / s, (val - mu) / s, (test - mu) / s


def _power(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.RandomState(42)
    data = np.load(root / "power/data.npy")
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    return _standardise_by_train_val(*_tail_splits(data))


def _gas_correlation_numbers(frame: "pd.DataFrame") -> np.ndarray:
    return (frame.corr() > 0.98).to_numpy().sum(axis=1)


def _gas(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    frame = pd.read_pickle(root / "gas/ethylene_CO.pickle")
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    counts = _gas_correlation_numbers(frame)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[np.where(counts > 1)[0][0]])
        counts = _gas_correlation_numbers(frame)
    frame = (frame - frame.mean()) / frame.std()
    return _tail_splits(frame.to_numpy())


def _hepmass(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    train = pd.read_csv(root / "hepmass/1000_train.csv", index_col=False)
    test = pd.read_csv(root / "hepmass/1000_test.csv", index_col=False)
    train = train[train[train.columns[0]] == 1].drop(columns=train.columns[0])
    test = test[test[test.columns[0]] == 1].drop(columns=test.columns[0])
    test = test.drop(columns=test.columns[-1])
    mu, s = train.mean(), train.std()
    train, test = ((train - mu) / s).to_numpy(), ((test - mu) / s).to_numpy()
    remove = [i for i, feature in enumerate(train.T) if sorted(Counter(feature).items())[0][1] > 5]
    keep = np.array([i for i in range(train.shape[1]) if i not in remove])
    train, test = train[:, keep], test[:, keep]
    n_val = int(train.shape[0] * 0.1)
    return train[0:-n_val], train[-n_val:], test


def _miniboone(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _standardise_by_train_val(*_tail_splits(np.load(root / "miniboone/data.npy")))


def _bsds300(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        import h5py
    except ImportError as err:
        raise DataError(
            "bsds300: reading BSDS300.hdf5 needs the h5py package, which is not "
            "installed (pip install h5py)"
        ) from err
    with h5py.File(root / "BSDS300/BSDS300.hdf5", "r") as fh:
        return fh["train"][:], fh["validation"][:], fh["test"][:]


_LOADERS = {
    "power": _power,
    "gas": _gas,
    "hepmass": _hepmass,
    "miniboone": _miniboone,
    "bsds300": _bsds300,
}


def load_uci_splits(name: str, root: str | Path) -> dict:
    """Train/val/test float32 arrays of UCI ``name`` from the release extracted at ``root``."""
    root = Path(root)
    for rel in _RAW[name]:
        if not (root / rel).is_file():
            raise DataError(
                f"{name}: raw file {root / rel} is missing (extract the MAF release "
                f"archive {MAF_ARCHIVE['url']} into {root})"
            )
    try:
        parts = _LOADERS[name](root)
    except DataError:
        raise
    except Exception as err:  # a malformed raw file: name it
        raise DataError(
            f"{name}: could not preprocess raw files under {root}: {type(err).__name__}: {err}"
        ) from err
    return {
        split: np.asarray(x, dtype=np.float32)
        for split, x in zip(("train", "val", "test"), parts, strict=True)
    }


def fetch_maf_archive(
    dest: str | Path, sha256: str | None = None, md5: str | None = None, url: str | None = None
) -> Path:
    """Download the MAF release archive to ``dest`` (checksum from arguments or ``MAF_ARCHIVE``)."""
    return download(
        url or MAF_ARCHIVE["url"],
        dest,
        sha256 or MAF_ARCHIVE["sha256"],
        md5=md5 or MAF_ARCHIVE["md5"],
    )


def extract_maf_archive(archive: str | Path, dest: str | Path, names: Sequence[str] = UCI) -> Path:
    """Extract the raw files of the UCI data sets ``names`` from the release archive into ``dest``.

    Only the files the loaders read are taken (the archive also holds MNIST and CIFAR-10); each
    is written atomically. Returns ``dest``, ready for :func:`load_uci_splits`.
    """
    dest = Path(dest)
    unknown = sorted(set(names) - set(_RAW))
    if unknown:
        raise DataError(f"unknown UCI data set(s) {unknown}; known: {list(UCI)}")
    wanted = {rel for name in names for rel in _RAW[name]}
    found = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = member.name.removeprefix("./").removeprefix("data/")
                if rel not in wanted or not member.isfile():
                    continue
                with atomic_path(dest / rel) as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(tar.extractfile(member), out, 1 << 20)
                found.add(rel)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"MAF archive {archive} is corrupt or truncated: {err}") from err
    missing = sorted(wanted - found)
    if missing:
        raise DataError(f"MAF archive {archive} lacks {missing}")
    return dest
