"""Where the tracking store is and how to reach it: URI, client, lock, reachability.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set (e.g. an ``mlflow server`` with a
PostgreSQL backend), else the embedded store ``sqlite:///<project root>/mlflow.db`` with
artifacts in ``<project root>/mlartifacts``. MLflow is imported on first use only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = [
    "TrackingError",
    "artifact_location",
    "check_reachable",
    "client",
    "import_mlflow",
    "project_root",
    "store_lock",
    "tracking_uri",
]

_SQLITE = "sqlite:///"
_CLIENTS: dict = {}


class TrackingError(RuntimeError):
    """The tracking store is unreachable or does not hold what the workflow expects."""


def import_mlflow() -> ModuleType:
    """:mod:`mlflow`, with short HTTP retries and timeouts unless the environment sets them."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow

    return mlflow


def project_root() -> Path:
    """``FLOWBENCH_ROOT`` if set, else the nearest ancestor of the cwd holding a ``Snakefile``
    and ``config/``, else the checkout this package lives in."""
    if os.environ.get("FLOWBENCH_ROOT"):
        return Path(os.environ["FLOWBENCH_ROOT"]).resolve()
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "Snakefile").is_file() and (d / "config").is_dir():
            return d
    return Path(__file__).resolve().parents[2]


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or ``sqlite:///<project root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"{_SQLITE}{project_root() / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len(_SQLITE) :]) if uri.startswith(_SQLITE) else None


def artifact_location(uri: str) -> str | None:
    """Artifacts beside the embedded store; a server decides for itself."""
    path = _sqlite_path(uri)
    return (path.parent / "mlartifacts").resolve().as_uri() if path else None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside an embedded SQLite store (no-op for a server).

    Several processes creating a brand-new store at once race on its schema migrations
    ("table ... already exists"); serialising creation makes that safe.
    """
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    lock_path = path.with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def client() -> MlflowClient:
    """One ``MlflowClient`` per tracking URI and process (a SQLite client checks the schema on
    creation, under :func:`store_lock`)."""
    uri = tracking_uri()
    if uri not in _CLIENTS:
        import_mlflow()
        from mlflow.tracking import MlflowClient

        with store_lock(uri):
            made = MlflowClient(uri)
            made.search_experiments(max_results=1)  # creates / migrates the schema now
        _CLIENTS[uri] = made
    return _CLIENTS[uri]


def check_reachable(uri: str | None = None, timeout: float = 5.0) -> str:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                if resp.status >= 400:
                    raise TrackingError(f"MLflow server {uri} answered HTTP {resp.status}")
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({err}); start it or unset "
                "MLFLOW_TRACKING_URI to use the embedded SQLite store"
            ) from err
    elif (path := _sqlite_path(uri)) is not None and not path.parent.is_dir():
        raise TrackingError(f"MLflow store {uri}: directory {path.parent} does not exist")
    return uri
