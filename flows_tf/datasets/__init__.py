"""Data sets and energy targets behind one registry, for the flowbench benchmark.

Kinds (``DATASETS[name].kind``):

- ``toy``: 2-D densities, generated from the seed (:mod:`.toy`); exact log-density for
  ``eight_gaussians``, ``checkerboard`` and ``rings`` via :func:`true_log_prob`.
- ``energy``: the targets ``u1`` ... ``u4`` of Rezende and Mohamed (2015) for variational
  inference (:mod:`.energy`); no data, use :func:`energy_target`.
- ``image``: scikit-learn's 8x8 ``digits``, dequantized (:mod:`.digits`); log-likelihoods go to
  pixel space with :func:`pixel_loglik` and :func:`bits_per_dim`.
- ``uci``: POWER, GAS, HEPMASS, MINIBOONE, BSDS300 preprocessed as the MAF paper does (:mod:`.uci`).
- ``file``: any name with a ``path`` option naming a ``.npy``/``.csv`` file (:mod:`.files`).

Prepared splits live in a folder as ``{train,val,test}.npy`` plus ``meta.json``
(:func:`prepare_dataset`, :func:`read_split`, :func:`read_meta`). Importing this package does
not import TensorFlow; only calling an energy target on tensors does.
"""

from flows_tf.datasets.digits import bits_per_dim, pixel_loglik
from flows_tf.datasets.io import DataError, download
from flows_tf.datasets.registry import (
    DATASETS,
    DatasetInfo,
    energy_target,
    load_dataset,
    load_splits,
    true_log_prob,
)
from flows_tf.datasets.splits import SPLITS
from flows_tf.datasets.store import prepare_dataset, read_meta, read_split

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DataError",
    "SPLITS",
    "bits_per_dim",
    "download",
    "energy_target",
    "load_dataset",
    "load_splits",
    "pixel_loglik",
    "prepare_dataset",
    "read_meta",
    "read_split",
    "true_log_prob",
]
