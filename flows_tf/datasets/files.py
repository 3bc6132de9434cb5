"""A user's own data: a ``.npy`` or ``.csv`` file of shape (N, D), split by seed, standardised.

The rows are shuffled with the seed and cut into train/val/test; every split is standardised with
the training mean and standard deviation. A CSV may have one header line (detected when its
first line does not parse as numbers).
"""

from pathlib import Path

import numpy as np

from flows_tf.datasets.io import DataError
from flows_tf.datasets.splits import split_rows, standardise

__all__ = ["read_user_file", "load_file_splits"]


def _read_csv(path: Path) -> np.ndarray:
    with open(path) as fh:
        first = fh.readline()
    try:
        [float(tok) for tok in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1
    return np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)


def read_user_file(name: str, path: str | Path) -> np.ndarray:
    """Read a user data file as float64 (N, D), with errors naming the data set and file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{name}: data file {path} is missing")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif suffix == ".csv":
            data = _read_csv(path)
        else:
            raise DataError(f"{name}: data file {path} must be .npy or .csv, not {suffix!r}")
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{name}: data file {path} is corrupt or unreadable: {err}") from err
    if data.ndim != 2 or min(data.shape) < 1:
        raise DataError(
            f"{name}: data file {path} must hold a 2-D array (N, D), got shape {data.shape}"
        )
    if not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{name}: data file {path} is not numeric (dtype {data.dtype})")
    data = data.astype(np.float64)
    bad = ~np.isfinite(data)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{name}: data file {path} has {int(bad.sum())} NaN/inf values (first in row {row})"
        )
    return data


def load_file_splits(
    name: str, seed: int, *, path: str | Path, val_fraction: float, test_fraction: float
) -> tuple[dict, dict]:
    """Standardised train/val/test arrays of a user file, and the standardisation parameters."""
    data = read_user_file(name, path)
    try:
        parts = split_rows(data, seed, name, val_fraction, test_fraction)
    except ValueError as err:
        raise DataError(str(err)) from err
    return standardise(parts, parts["train"])
