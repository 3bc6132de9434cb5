"""A trained flow as an MLflow pyfunc model (imported on first use: it imports mlflow).

:func:`save_pyfunc` writes the MLflow model folder of a flow saved by
:func:`flows_tf.modelio.save_flow` plus its spec; :class:`FlowModel` is the model it holds.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mlflow.pyfunc import PythonModel, PythonModelContext
from numpy.typing import ArrayLike

from flows_tf.tracking.store import import_mlflow

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

__all__ = ["FlowModel", "save_pyfunc"]

_PACKAGE = Path(__file__).resolve().parents[1]  # flows_tf, bundled with the model
_REQUIREMENTS = ("tensorflow", "tensorflow-probability", "tf-keras", "numpy", "pandas")


class FlowModel(PythonModel):
    """A trained flow as an MLflow pyfunc: ``predict(x)`` gives ``log p(x)`` per row.

    ``predict(x, params={"method": "sample", "n": 100, "seed": 0})`` draws samples instead;
    ``mlflow.pyfunc.load_model(uri).unwrap_python_model()`` exposes :meth:`log_prob` and
    :meth:`sample`. Loading needs TensorFlow, TFP and the bundled ``flows_tf`` code, not the
    workflow.

    Example:
        >>> model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")  # doctest: +SKIP
        >>> model.predict(x)  # log p(x), shape (N,)  # doctest: +SKIP
    """

    def load_context(self, context: PythonModelContext) -> None:
        from flows_tf.modelio import load_flow

        self.spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.flow = load_flow(self.spec, Path(context.artifacts["checkpoint"]))

    def log_prob(self, x: ArrayLike) -> np.ndarray:
        """``log p(x)`` in nats, shape (N,), for x of shape (N, D)."""
        return self.flow.log_prob(np.asarray(x, dtype=np.float32)).numpy()

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` samples, shape (n, D)."""
        return self.flow.sample(int(n), seed=int(seed)).numpy()

    def predict(
        self, context: PythonModelContext, model_input: np.ndarray, params: dict | None = None
    ) -> np.ndarray:
        # an ndarray hint: MLflow validates nothing against it and uses the given signature
        params = params or {}
        if params.get("method") == "sample":
            return self.sample(int(params.get("n", 100)), int(params.get("seed", 0)))
        return self.log_prob(model_input)


def _signature(spec: dict) -> ModelSignature:
    """Input: float32 rows (N, D); params select ``log_prob`` (default) or ``sample``."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    dim = int(np.prod(spec["event_shape"]))
    params = ParamSchema(
        [
            ParamSpec("method", "string", "log_prob"),
            ParamSpec("n", "long", 100),
            ParamSpec("seed", "long", 0),
        ]
    )
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, dim))]), params=params
    )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    return out


def save_pyfunc(path: str | Path, checkpoint: str | Path, spec_file: str | Path) -> Path:
    """Write the MLflow model folder ``path`` of the flow saved in ``checkpoint`` (its spec in
    the JSON file ``spec_file``), bundling the ``flows_tf`` code; returns ``path``."""
    mlflow = import_mlflow()
    spec = json.loads(Path(spec_file).read_text())
    quiet = logging.getLogger("mlflow.pyfunc")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the python_model is ours: no pickling advice needed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no input example: signature given
            mlflow.pyfunc.save_model(
                path=str(path),
                python_model=FlowModel(),
                signature=_signature(spec),
                artifacts={"checkpoint": str(checkpoint), "spec": str(spec_file)},
                code_paths=[str(_PACKAGE)],
                pip_requirements=_requirements(),
            )
    finally:
        quiet.setLevel(level)
    return Path(path)
