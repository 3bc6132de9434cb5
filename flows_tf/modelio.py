"""Save a trained flow and rebuild it from its spec, without the workflow.

A *spec* is ``{"builder", "event_shape", "hparams", "dtype"}``; the flow's variables are
written with :class:`tf.train.Checkpoint` under ``<directory>/flow``.

Example:
    >>> import tempfile
    >>> from flows_tf.flows import build_flow
    >>> spec = make_spec("maf", [2], {"num_layers": 2, "hidden_units": [8]})
    >>> flow = build_flow(spec["builder"], spec["event_shape"], **spec["hparams"])
    >>> directory = save_flow(flow, tempfile.mkdtemp())
    >>> load_flow(spec, directory).event_shape
    TensorShape([2])
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flows_tf import seeding

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

__all__ = ["assign_weights", "save_flow", "load_flow", "make_spec"]


def make_spec(
    builder: str, event_shape: Sequence[int], hparams: dict, dtype: str = "float32"
) -> dict:
    """The spec from which :func:`load_flow` rebuilds a flow."""
    return {
        "builder": builder,
        "event_shape": [int(d) for d in event_shape],
        "hparams": dict(hparams),
        "dtype": dtype,
    }


def assign_weights(flow: "tfd.TransformedDistribution", values: Sequence) -> None:
    """Assign ``values`` (arrays or another flow's ``variables``, in ``flow.variables`` order) to
    ``flow``'s variables: another model of the same spec, run on this flow's compiled graph."""
    mine = [(tuple(v.shape), v.dtype) for v in flow.variables]
    if mine != [(tuple(v.shape), v.dtype) for v in values]:
        raise ValueError("the weights are not those of this flow's spec (shapes or dtypes differ)")
    for variable, value in zip(flow.variables, values, strict=True):
        variable.assign(value)


def save_flow(flow: "tfd.TransformedDistribution", directory: str | Path) -> Path:
    """Write the flow's variables to ``<directory>/flow``; returns the directory."""
    import tensorflow as tf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(flow=flow).write(str(directory / "flow"))
    return directory


def load_flow(spec: dict, directory: str | Path) -> "tfd.TransformedDistribution":
    """Build the flow of ``spec`` and restore its variables from ``<directory>/flow``.

    The random initial values the restore overwrites are drawn under
    :func:`flows_tf.seeding.throwaway_seed`: the caller's seeds and streams stay as they were,
    and TensorFlow's compiled functions stay compiled.
    """
    import tensorflow as tf

    from flows_tf.flows import build_flow

    with seeding.throwaway_seed():
        flow = build_flow(
            spec["builder"],
            tuple(spec["event_shape"]),
            dtype=tf.as_dtype(spec.get("dtype", "float32")),
            **spec.get("hparams", {}),
        )
    status = tf.train.Checkpoint(flow=flow).read(str(Path(directory) / "flow"))
    status.assert_existing_objects_matched()
    return flow
