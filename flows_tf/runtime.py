"""A job process's set-up before TensorFlow initialises (threads, determinism, XLA's cache of
compiled executables) and its fast end.

TensorFlow fixes its thread pools at the first op and reads ``TF_XLA_FLAGS`` once, so
:func:`configure` and :func:`compile_cache` must run before any tensor is created. Importing
this module only sets environment defaults (tf_keras instead of Keras 3, quieter C++ logs); it
never imports TensorFlow itself.
"""

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import platform
import sys
import warnings
from pathlib import Path
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


def cpu_model() -> str:
    """The CPU model and a hash of its instruction-set flags (the first processor's block of
    ``/proc/cpuinfo``): kernels compiled for, or picked by, one are not valid on another."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return platform.processor() or platform.machine()
    fields = {}
    for line in cpuinfo.read_text().splitlines():
        if not line.strip():
            break  # the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = " ".join(sorted(fields.get("flags", "").split())).encode()
    return f"{fields.get('model name', '')}, flags {hashlib.sha256(flags).hexdigest()[:12]}"


def compile_cache(directory: str | os.PathLike) -> Path:
    """Keep XLA's compiled executables in ``directory/<CPU and TensorFlow>`` across processes.

    The jobs of one model differ only in seed, so their compiled block of steps is the same
    program: the first job compiles it, the others load it (a planar K=32 job: 6 of its 16
    seconds to its first step). An entry is found only for the same HLO module, bit for bit, and
    is the executable a fresh compilation makes, so results do not change. XLA writes an entry
    to a temporary file and renames it, so concurrent jobs may share the folder; executables
    target the CPU they were compiled on, hence one sub-folder per CPU model and TensorFlow
    version (a cluster's nodes may differ). Returns the sub-folder.
    """
    version = importlib.metadata.version("tensorflow")
    key = hashlib.sha256(f"{cpu_model()}|tensorflow {version}".encode()).hexdigest()[:12]
    folder = Path(directory).resolve() / key
    flag = f"--tf_xla_persistent_cache_directory={folder}"
    os.environ["TF_XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("TF_XLA_FLAGS"), flag]))
    return folder


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
