"""``python -m flows_tf``: the same as the ``flows-tf`` command."""

from flows_tf.cli import run

run()
