"""flows_tf: normalizing flows on TensorFlow Probability bijectors, for the flowbench benchmark.

Direction convention (TFP's): a flow's bijector maps base noise ``z ~ N(0, I)`` forward to data
``x`` (sampling); ``log_prob(x)`` runs the inverse,

    log p(x) = log N(f^{-1}(x); 0, I) + log |det d f^{-1}(x) / dx|.

Which direction is cheap depends on the flow (MAF: density; IAF: sampling; coupling flows:
both); each builder's docstring says so.

Public API (imported lazily so that ``import flows_tf`` does not start TensorFlow):

- ``build_flow(name, event_shape, dtype=tf.float32, **hparams)`` and the registry ``FLOWS``;
- ``load_dataset(name, split)``, ``energy_target(name)`` and the registry ``DATASETS``.
"""

import importlib

from flows_tf import runtime  # noqa: F401  (sets TF environment defaults before any TF import)

__all__ = ["FLOWS", "build_flow", "DATASETS", "load_dataset", "energy_target"]

_LAZY = {
    "FLOWS": "flows_tf.flows",
    "build_flow": "flows_tf.flows",
    "DATASETS": "flows_tf.datasets",
    "load_dataset": "flows_tf.datasets",
    "energy_target": "flows_tf.datasets",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flows_tf' has no attribute {name!r}")
