"""Compiled functions traced once for the models of one spec, within a block.

A variant's seeds are models of one spec (:func:`flows_tf.modelio.make_spec`): the same graph,
other weights. Inside :func:`reuse_traces`, :func:`host` gives every model of a spec as the
first one seen, holding the given model's weights, and :func:`traced` builds a compiled
function once per host and key, so the next seeds call the first seed's trace with their own
weights: the same numbers, without tracing again (``tests/test_evaluate.py`` checks it).
Outside the block both are the identity: every call builds afresh.

Used by :mod:`flows_tf.evaluate` (samples, density grid, evaluation) and
:mod:`flows_tf.distill_bank` (a student's teacher pairs).
"""

import contextlib
import json
from collections.abc import Callable, Iterator

from tensorflow_probability import distributions as tfd

from flows_tf import modelio

__all__ = ["host", "reuse_traces", "traced"]

_REUSED: dict | None = None  # inside reuse_traces(): hosts and compiled functions


@contextlib.contextmanager
def reuse_traces() -> Iterator[None]:
    """Inside the block, the models of one spec run on one flow (:func:`host`), and each
    compiled function of a flow is built once (:func:`traced`)."""
    global _REUSED
    previous, _REUSED = _REUSED, {}
    try:
        yield
    finally:
        _REUSED = previous


def host(flow: tfd.Distribution, spec: dict) -> tfd.Distribution:
    """``flow`` itself, or inside :func:`reuse_traces` the first flow of ``spec`` (a model spec,
    :func:`flows_tf.modelio.make_spec`) seen there, holding ``flow``'s weights.

    That first flow is the host: until the block ends it holds the weights of the model last
    given here (its own, kept aside, when it is given again).
    """
    if _REUSED is None:
        return flow
    key = ("host", json.dumps(spec, sort_keys=True, default=str))
    if key not in _REUSED:
        _REUSED[key] = (flow, [v.numpy() for v in flow.variables])
    first, own = _REUSED[key]
    modelio.assign_weights(first, own if flow is first else flow.variables)
    return first


def traced(flow: tfd.Distribution, key: tuple, build: Callable[[], Callable]) -> Callable:
    """``build()``, once per flow and ``key`` inside :func:`reuse_traces`."""
    if _REUSED is None:
        return build()
    key = (id(flow), *key)
    if key not in _REUSED:
        _REUSED[key] = (flow, build())  # holding the flow keeps its id its own
    return _REUSED[key][1]
