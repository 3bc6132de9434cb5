"""Safe file I/O for prepared data sets: atomic writes, content hashes, checked downloads.

Every write goes to a temporary file in the destination folder and is moved into place with
``os.replace`` only once complete, so an interrupted write or a failed download never leaves a
half-written file under the final name.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DataError",
    "atomic_path",
    "save_array",
    "write_json",
    "array_sha256",
    "file_digest",
    "download",
]


class DataError(ValueError):
    """A data set is unknown, missing, corrupt or malformed; the message names which and why."""


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success move it onto ``dest``, else delete it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically (no pickles)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's contents: dtype, shape and C-order bytes (not the file format)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest``, keeping it only if its checksum matches.

    The bytes go to a temporary file beside ``dest``, which is renamed onto ``dest`` only after
    the SHA-256 (or, when only that is published, the MD5) matches; on any failure nothing is
    left behind. An unchecked download is refused: give ``sha256`` or ``md5``.

    Args:
        url: source (``file://`` URLs work too, which the tests use).
        dest: final path of the file.
        sha256: expected hex SHA-256 of the file.
        md5: expected hex MD5 (Zenodo publishes MD5s), used when ``sha256`` is None.

    Example:
        >>> download("https://zenodo.org/record/1161203/files/data.tar.gz",
        ...          "results/data/raw/maf.tar.gz", md5="...")  # doctest: +SKIP
    """
    dest = Path(dest)
    if sha256:
        algorithm, expected = "sha256", sha256.lower()
    elif md5:
        algorithm, expected = "md5", md5.lower()
    else:
        raise DataError(
            f"refusing to download {url} to {dest} without a checksum: "
            f"configure its sha256 (or md5)"
        )
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as fh:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    fh.write(chunk)
        except OSError as err:
            raise DataError(f"download of {url} to {dest} failed: {err}") from err
        actual = file_digest(tmp, algorithm)
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {url} (to {dest}): {algorithm} is {actual}, "
                f"expected {expected}; the download was discarded"
            )
    return dest
