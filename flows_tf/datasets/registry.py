"""The registry of data sets and energy targets, and the loaders behind one name each."""

import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from flows_tf.datasets.io import DataError
from flows_tf.datasets.splits import SPLITS, rng_for

if TYPE_CHECKING:
    from flows_tf.datasets.energy import EnergyTarget

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "resolve",
    "load_splits",
    "load_dataset",
    "energy_target",
    "true_log_prob",
]

KINDS = ("toy", "energy", "image", "uci", "file")
_TOY_DEFAULTS = {"n_train": 10000, "n_val": 2000, "n_test": 5000}
_FILE_DEFAULTS = {"path": None, "val_fraction": 0.1, "test_fraction": 0.1}


@dataclass(frozen=True)
class DatasetInfo:
    """What a registry entry is: its kind, dimension, options with defaults, exact density."""

    name: str
    kind: str
    dim: int | None
    description: str
    has_true_density: bool = False
    defaults: dict = field(default_factory=dict)


def _entries() -> dict[str, DatasetInfo]:
    from flows_tf.datasets import toy, uci

    out = {}
    for name, (_, log_prob) in toy.TOYS.items():
        out[name] = DatasetInfo(
            name, "toy", 2, f"2-D toy density {name!r}", log_prob is not None, dict(_TOY_DEFAULTS)
        )
    for name in ("u1", "u2", "u3", "u4"):
        out[name] = DatasetInfo(
            name, "energy", 2, f"Rezende-Mohamed energy target {name.upper()} on [-4, 4]^2"
        )
    out["digits"] = DatasetInfo(
        "digits",
        "image",
        64,
        "scikit-learn 8x8 digits, dequantized (17 levels)",
        False,
        {"logit": True, "alpha": 0.05, "val_fraction": 0.1, "test_fraction": 0.2},
    )
    uci_dims = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}
    for name in uci.UCI:
        out[name] = DatasetInfo(
            name,
            "uci",
            uci_dims[name],
            f"UCI {name.upper()} as preprocessed for the MAF paper",
            False,
            {"root": None},
        )
    return types.MappingProxyType(out)


DATASETS = _entries()


def resolve(name: str, options: dict | None = None) -> tuple[DatasetInfo, dict]:
    """The registry entry for ``name`` and its full options (defaults filled, unknown keys refused).

    A name outside the registry with a ``path`` option is a user ``file`` data set.
    """
    options = dict(options or {})
    if name in DATASETS:
        info = DATASETS[name]
    elif "path" in options:
        info = DatasetInfo(
            name, "file", None, f"user data file {options['path']}", False, dict(_FILE_DEFAULTS)
        )
    else:
        raise DataError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))} "
            f"(or give a 'path' option for a .npy/.csv file)"
        )
    unknown = sorted(set(options) - set(info.defaults))
    if unknown:
        raise DataError(f"{name}: unknown option(s) {unknown}; allowed: {sorted(info.defaults)}")
    merged = {**info.defaults, **options}
    for key in ("root", "path"):
        if key in merged and merged[key] is None:
            raise DataError(f"{name}: option {key!r} is required for a {info.kind} data set")
    return info, merged


def _toy_splits(name: str, seed: int, options: dict) -> dict[str, np.ndarray]:
    from flows_tf.datasets.toy import sample_toy

    out = {}
    for split in SPLITS:
        n = options[f"n_{split}"]
        if int(n) != n or n < 1:
            raise DataError(f"{name}: n_{split} must be a positive integer, got {n}")
        out[split] = sample_toy(name, n, rng_for(seed, name, split))
    return out


def load_splits(name: str, seed: int = 0, **options) -> tuple[dict, dict]:
    """All three splits of a data set as float32 (N, D) arrays, and its preprocessing record."""
    info, opts = resolve(name, options)
    params = {"seed": int(seed), **opts}
    try:
        if info.kind == "energy":
            raise DataError(
                f"{name}: is an energy target with no data; use energy_target({name!r})"
            )
        if info.kind == "toy":
            parts = _toy_splits(name, seed, opts)
        elif info.kind == "image":
            from flows_tf.datasets.digits import load_digits_splits

            parts = load_digits_splits(seed, **opts)
        elif info.kind == "uci":
            from flows_tf.datasets.uci import load_uci_splits

            parts = load_uci_splits(name, opts["root"])
            params["seed"] = None  # the MAF preprocessing fixes its own randomness
        else:
            from flows_tf.datasets.files import load_file_splits

            parts, stats = load_file_splits(name, seed, **opts)
            params.update(stats)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{name}: {err}") from err
    return {split: np.asarray(parts[split], dtype=np.float32) for split in SPLITS}, params


def load_dataset(name: str, split: str, seed: int = 0, **options) -> np.ndarray:
    """One split (``train``, ``val`` or ``test``) of a data set: float32 (N, D), model space.

    Example:
        >>> load_dataset("eight_gaussians", "val", seed=0, n_val=5).shape
        (5, 2)
    """
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {SPLITS}")
    return load_splits(name, seed, **options)[0][split]


def energy_target(name: str) -> "EnergyTarget":
    """The energy target ``name`` (``u1`` ... ``u4``): callable log p~ with attribute ``log_z``."""
    from flows_tf.datasets.energy import ENERGY_TARGETS

    if name not in ENERGY_TARGETS:
        raise DataError(f"{name!r} is not an energy target; known: {sorted(ENERGY_TARGETS)}")
    return ENERGY_TARGETS[name]


def true_log_prob(name: str, x: ArrayLike, **options) -> np.ndarray | None:
    """Exact log-density of a toy data set at x (N, 2), or None when no closed form exists."""
    info, _ = resolve(name, options)
    if not info.has_true_density:
        return None
    from flows_tf.datasets.toy import toy_log_prob

    try:
        return toy_log_prob(name, x)
    except ValueError as err:
        raise DataError(str(err)) from err
