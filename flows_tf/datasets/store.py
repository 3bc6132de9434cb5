"""Prepared data sets on disk: ``{train,val,test}.npy`` plus ``meta.json``, written and checked.

``prepare_dataset`` writes each split atomically and ``meta.json`` last (so a folder with a
meta file is complete); ``read_split`` checks a split against its meta (shape, content hash) and
for NaN/inf, and raises :class:`DataError` naming the data set, the file and the problem.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from flows_tf.datasets.io import DataError, array_sha256, save_array, write_json
from flows_tf.datasets.registry import load_splits, resolve
from flows_tf.datasets.splits import SPLITS

__all__ = ["META_FILE", "prepare_dataset", "read_meta", "read_split"]

META_FILE = "meta.json"
FORMAT_VERSION = 1


def prepare_dataset(name: str, out_dir: str | Path, seed: int = 0, **options) -> dict:
    """Write the splits of data set ``name`` and their ``meta.json`` into ``out_dir``; return meta.

    Example:
        >>> import tempfile
        >>> meta = prepare_dataset("rings", tempfile.mkdtemp(), seed=0)
        >>> meta["shape"]["train"]
        [10000, 2]
    """
    info, _ = resolve(name, options)
    out_dir = Path(out_dir)
    parts, params = load_splits(name, seed, **options)
    for split, x in parts.items():
        _check(x, name, f"{split} split", expected=None)
    (out_dir / META_FILE).unlink(missing_ok=True)  # the folder is incomplete until meta is back
    hashes = {}
    for split, x in parts.items():
        save_array(out_dir / f"{split}.npy", x)
        hashes[split] = array_sha256(x)
    pixel_space = None
    if info.kind == "image":
        from flows_tf.datasets.digits import pixel_space_info

        pixel_space = pixel_space_info(params["logit"], params["alpha"])
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "kind": info.kind,
        "dim": int(parts["train"].shape[1]),
        "dtype": "float32",
        "shape": {split: list(x.shape) for split, x in parts.items()},
        "sha256": hashes,
        "content_hash": hashlib.sha256("".join(hashes[s] for s in SPLITS).encode()).hexdigest(),
        "preprocessing": {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()},
        "has_true_density": info.has_true_density,
        "pixel_space": pixel_space,
    }
    write_json(out_dir / META_FILE, meta)
    return meta


def read_meta(data_dir: str | Path) -> dict:
    """The ``meta.json`` of a prepared data set folder."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise DataError(f"{Path(data_dir).name}: {path} is missing (prepare the data set first)")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise DataError(f"{Path(data_dir).name}: {path} is corrupt: {err}") from err
    missing = [k for k in ("name", "shape", "sha256") if k not in meta]
    if missing:
        raise DataError(f"{Path(data_dir).name}: {path} lacks {missing}")
    return meta


def _check(x: np.ndarray, name: str, label: str, expected: list[int] | None) -> None:
    if x.ndim != 2 or (expected is not None and list(x.shape) != list(expected)):
        want = f"; meta says {list(expected)}" if expected is not None else ""
        raise DataError(f"{name}: {label} has wrong shape {x.shape} (expected (N, D){want})")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{name}: {label} has dtype {x.dtype}, expected float")
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(
            f"{name}: {label} has {int(bad.sum())} NaN/inf values "
            f"(first in row {int(np.argwhere(bad)[0][0])})"
        )


def read_split(data_dir: str | Path, split: str) -> np.ndarray:
    """A prepared split as float32 (N, D), validated against ``meta.json`` when present.

    Checks: the file exists and parses as ``.npy`` (else missing/corrupt/truncated), is 2-D
    float with the shape in meta, has no NaN/inf, and its content hash matches meta.
    """
    data_dir = Path(data_dir)
    meta = read_meta(data_dir) if (data_dir / META_FILE).exists() else None
    name = meta["name"] if meta else data_dir.name
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {SPLITS}")
    path = data_dir / f"{split}.npy"
    if not path.is_file():
        raise DataError(f"{name}: split file {path} is missing")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{name}: split file {path} is corrupt or truncated: {err}") from err
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name}: split file {path} is not a single .npy array")
    _check(x, name, f"split file {path}", meta["shape"].get(split) if meta else None)
    if meta and array_sha256(x) != meta["sha256"].get(split):
        raise DataError(
            f"{name}: split file {path} does not match the content hash in "
            f"{data_dir / META_FILE} (changed or corrupted since preparation)"
        )
    return x.astype(np.float32, copy=False)
