"""Shared test set-up: the TF environment, the small flows tests build, and ``--dtype``.

- The environment is set here once, before any test module imports TensorFlow: tf_keras
  (which TFP uses) instead of Keras 3, quiet C++ logs, a non-interactive Matplotlib backend.
  Subprocesses started by tests inherit it. Nothing here imports TensorFlow at import time, so
  TF-free test modules stay fast.
- :data:`SMALL_HPARAMS` is the one table of small hyperparameters, keyed by every name in
  ``flows_tf.flows.FLOWS`` (``tests/test_flows.py`` asserts that it covers the registry).
- ``--dtype float64`` (default) or ``float32``: the dtype of the tests whose tolerances depend
  on it (exact log-dets against autodiff Jacobians, round trips, one-pass against stock values),
  through the ``dtype`` and ``tol`` fixtures and :func:`make_flow`'s default.
"""

import os
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

# `--doctest-modules` (pyproject.toml) imports every collected .py file as a module; a
# conftest.py is no test module, and importing several under the one name clashes.
collect_ignore_glob = ["conftest.py", "*/conftest.py"]

# Small enough for a test, large enough to exercise every layer kind: coupling flows with
# two layers cover both halves, MADEs have two hidden layers, splines several bins.
SMALL_HPARAMS = {
    "gaussian": {},
    "planar": {"num_layers": 3},
    "radial": {"num_layers": 3},
    "nice": {"num_layers": 2, "hidden_units": [8, 8]},
    "realnvp": {"num_layers": 2, "hidden_units": [8, 8]},
    "glow": {"num_layers": 2, "hidden_units": [8, 8]},
    "maf": {"num_layers": 2, "hidden_units": [8, 8]},
    "iaf": {"num_layers": 2, "hidden_units": [8, 8]},
    "nsf": {"num_layers": 2, "hidden_units": [8, 8], "num_bins": 4},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="float dtype of the exactness tests (log-dets, round trips); default float64",
    )


@pytest.fixture(scope="session")
def dtype(pytestconfig: pytest.Config):  # -> tf.DType (TensorFlow is imported lazily)
    """The ``--dtype`` option as a ``tf.DType``."""
    import tensorflow as tf

    return tf.as_dtype(pytestconfig.getoption("dtype"))


@pytest.fixture(scope="session")
def tol(dtype) -> Callable[[float, float], float]:
    """``tol(float64_tolerance, float32_tolerance)``: the one for the ``--dtype`` in force."""

    def pick(f64: float, f32: float) -> float:
        return f64 if dtype.name == "float64" else f32

    return pick


@pytest.fixture(scope="session")
def small_hparams() -> Mapping[str, Mapping]:
    """:data:`SMALL_HPARAMS`, read-only: ``build_flow(name, [d], **small_hparams[name])``."""
    return MappingProxyType({k: MappingProxyType(v) for k, v in SMALL_HPARAMS.items()})


def _perturb(flow, scale: float, seed: int) -> None:
    """Add ``scale * N(0, 1)`` to every trainable variable, then re-apply MADE's masks.

    Conditioner output layers start at zero (every layer the identity), which would hide bugs
    in log-dets and inverses. MADE keeps its masks as kernel constraints, honoured here as a
    constraint-respecting optimizer would.
    """
    rng = np.random.RandomState(seed)
    for v in flow.trainable_variables:
        v.assign(v + scale * rng.standard_normal(v.shape).astype(v.dtype.as_numpy_dtype))
        if getattr(v, "constraint", None) is not None:
            v.assign(v.constraint(v))


@pytest.fixture
def make_flow(dtype) -> Callable:
    """``make_flow(name, d=2, *, perturb=0.0, seed=0, dtype=<--dtype>, **hparams)``.

    Builds ``name`` on ``[d]`` with :data:`SMALL_HPARAMS` (``hparams`` override them) after
    ``tf.random.set_seed(seed)``, initialises its data-side layers on a batch of shifted,
    scaled normal data, and with ``perturb > 0`` moves every variable off its identity start
    (masks kept).
    """
    default_dtype = dtype

    def make(name: str, d: int = 2, *, perturb: float = 0.0, seed: int = 0, dtype=None, **hparams):
        import tensorflow as tf

        from flows_tf.flows import build_flow, initialize

        dtype = tf.as_dtype(dtype or default_dtype)
        tf.random.set_seed(seed)
        flow = build_flow(name, [d], dtype, **{**SMALL_HPARAMS[name], **hparams})
        x = tf.random.normal([256, d], dtype=dtype) * 1.5 + 0.5
        initialize(flow, x)
        if perturb:
            _perturb(flow, perturb, seed)
        return flow

    return make


def _walk(bijector, inverted: bool = False) -> Iterator[tuple[object, bool]]:
    """``(leaf, inverted)`` for every leaf bijector, in the order ``forward`` lists them.

    Descends into chains (``tfb.Composition``) and ``tfb.Invert``; ``inverted`` says whether an
    odd number of ``Invert`` wraps the leaf (so its ``forward`` runs as the flow's inverse).
    """
    from tensorflow_probability import bijectors as tfb

    from flows_tf.bijectors.onepass import _INVERT  # what tfb.Invert(b) returns for a Module b

    if isinstance(bijector, _INVERT):
        yield from _walk(bijector.bijector, not inverted)
    elif isinstance(bijector, tfb.Composition):
        for b in bijector.bijectors:
            yield from _walk(b, inverted)
    else:
        yield bijector, inverted


@pytest.fixture(scope="session")
def walk() -> Callable[..., Iterator[tuple[object, bool]]]:
    """The one bijector-tree walker: ``walk(bijector)`` yields ``(leaf, inverted)`` pairs."""
    return _walk
