"""``python -m flows_tf``: the same as the ``flows-tf`` command."""

import sys

from flows_tf.cli import main

sys.exit(main())
