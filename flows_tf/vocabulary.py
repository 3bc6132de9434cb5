"""The names a config may use, without importing TensorFlow: builders, hyperparameters, files.

:mod:`flows_tf.flows` imports TensorFlow, yet the Snakefile must check a config in well under a
second, so this module keeps a plain copy of what the flow registry accepts. Tests compare each
table with its source (``inspect.signature`` of every builder in ``flows_tf.FLOWS``, the
builders' refusals of other choices, the readers of user files), so the copy cannot drift.

- :data:`FLOW_HPARAMS`: builder name -> the keyword arguments it takes (its hyperparameters).
- :data:`HPARAM_CHOICES`: hyperparameter -> the values a builder accepts, for string options.
- :data:`ONE_PASS_SAMPLERS`: builders whose forward map (noise ``z`` to data ``x``, sampling)
  and its log-determinant run in one parallel pass, so that ``x`` and ``log q(x)`` come from
  one forward pass as distillation needs: the coupling flows (NICE, RealNVP, Glow, NSF), IAF,
  the closed-form planar and radial maps and the Gaussian. MAF is the one exception: its
  forward direction is sequential, one MADE pass per dimension and layer.
- :data:`DATA_FILE_SUFFIXES`: suffixes a user data file (``datasets: {name: {path: ...}}``)
  may have (read by :func:`flows_tf.datasets.files.read_user_file`).

Data set names need no copy: the registry :data:`flows_tf.datasets.DATASETS` imports no
TensorFlow.
"""

__all__ = ["DATA_FILE_SUFFIXES", "FLOW_HPARAMS", "HPARAM_CHOICES", "ONE_PASS_SAMPLERS"]

FLOW_HPARAMS = {
    "gaussian": ("covariance",),
    "planar": ("num_layers", "data_affine"),
    "radial": ("num_layers", "data_affine"),
    "nice": ("num_layers", "hidden_units", "data_affine"),
    "realnvp": ("num_layers", "hidden_units", "data_affine"),
    "glow": ("num_layers", "hidden_units", "image_shape", "data_affine"),
    "maf": ("num_layers", "hidden_units", "order", "data_affine", "shift_side", "sequential"),
    "iaf": ("num_layers", "hidden_units", "order", "data_affine", "shift_side", "sequential"),
    "nsf": ("num_layers", "hidden_units", "num_bins", "tail_bound", "data_affine"),
}

HPARAM_CHOICES = {
    "covariance": ("full", "diag"),
    "order": ("reverse", "random"),
    "data_affine": ("full", "diag", "none"),
    "shift_side": ("data", "noise"),
    "sequential": ("full_passes", "by_degree", "by_degree_implicit"),
}

ONE_PASS_SAMPLERS = ("gaussian", "planar", "radial", "nice", "realnvp", "glow", "iaf", "nsf")

DATA_FILE_SUFFIXES = (".npy", ".csv")
