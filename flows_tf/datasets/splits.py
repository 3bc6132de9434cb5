"""Seeded random streams, train/val/test splits and standardisation shared by the loaders."""

import zlib

import numpy as np

__all__ = ["SPLITS", "rng_for", "split_rows", "standardise"]

SPLITS = ("train", "val", "test")


def rng_for(seed: int, name: str, purpose: str) -> np.random.Generator:
    """An independent generator per (seed, data set, purpose), stable across runs and platforms."""
    key = [int(seed), zlib.crc32(name.encode()), zlib.crc32(purpose.encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


def split_rows(
    data: np.ndarray, seed: int, name: str, val_fraction: float, test_fraction: float
) -> dict:
    """Shuffle rows with a seeded permutation and cut them into disjoint train/val/test parts."""
    n = len(data)
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < frac < 1.0:
            raise ValueError(f"{name}: {label} must be in (0, 1), got {frac}")
    n_val, n_test = int(round(val_fraction * n)), int(round(test_fraction * n))
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise ValueError(
            f"{name}: {n} rows are too few for val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}"
        )
    order = rng_for(seed, name, "split").permutation(n)
    idx = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    return {split: data[np.sort(rows)] for split, rows in idx.items()}


def standardise(parts: dict, reference: np.ndarray) -> tuple[dict, dict]:
    """Centre and scale by the mean and (ddof=0) std of ``reference``; constant columns keep 1."""
    mu = reference.mean(axis=0)
    sd = reference.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    out = {split: (x - mu) / sd for split, x in parts.items()}
    return out, {"mean": mu.tolist(), "std": sd.tolist()}
