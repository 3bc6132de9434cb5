"""A job process's set-up before TensorFlow initialises (threads, determinism) and its fast end.

TensorFlow fixes its thread pools at the first op, so :func:`configure` must run before any
tensor is created. Importing this module only sets environment defaults (tf_keras instead of
Keras 3, quieter C++ logs); it never imports TensorFlow itself.
"""

import contextlib
import logging
import os
import sys
import warnings
from typing import NoReturn

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def thread_plan(
    threads: int = 2,
    *,
    intra_op: int | None = None,
    inter_op: int | None = None,
    deterministic: bool = True,
) -> dict:
    """The settings :func:`configure` applies, without starting TensorFlow.

    Training at batch 512 runs fastest with intra-op 1 / inter-op 2 on two cores, so by
    default ``intra_op = max(1, threads // 2)`` and ``inter_op = threads``.
    """
    return {
        "threads": threads,
        "intra_op_threads": intra_op if intra_op is not None else max(1, threads // 2),
        "inter_op_threads": inter_op if inter_op is not None else max(1, threads),
        "deterministic": deterministic,
    }


def configure(threads: int = 2, **options: int | bool | None) -> dict:
    """Set TF thread pools and determinism: :func:`apply` of :func:`thread_plan` (``options``
    are its keywords); returns the settings in effect, to record with a run."""
    return apply(thread_plan(threads, **options))


def apply(plan: dict) -> dict:
    """Apply a :func:`thread_plan`; returns it with the pools in effect.

    Determinism needs op determinism *and* Grappler's dependency optimisation off: with it on,
    a compiled MAF step gave different bits from run to run on these CPUs.
    """
    import tensorflow as tf

    intra, inter = plan["intra_op_threads"], plan["inter_op_threads"]
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # TF already initialised (e.g. a second job in one process)
        current = (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
        if current != (intra, inter):
            warnings.warn(
                f"TensorFlow was initialised before runtime.configure(): its thread pools stay "
                f"(intra, inter) = {current} (0: TF's default), not {(intra, inter)}; "
                "the run records the pools in effect",
                RuntimeWarning,
                stacklevel=3,
            )
            intra, inter = current
    if plan["deterministic"]:
        tf.config.experimental.enable_op_determinism()
        tf.config.optimizer.set_experimental_options({"dependency_optimization": False})
    return {**plan, "intra_op_threads": intra, "inter_op_threads": inter}


def exit_now(code: int = 0) -> NoReturn:
    """End a finished job's process without Python's interpreter teardown.

    After TensorFlow ran, teardown spends 1.1-1.3 s in module and thread-pool destructors that
    do nothing for the job (``benchmarks/OVERHEAD.md``). Call it only when every output is
    written and closed; stdio and logging are flushed, then ``os._exit`` ends the process.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
