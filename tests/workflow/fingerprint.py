"""What a run of the grid computed, without what only says when, where or how fast.

``fingerprint(results)`` maps each job's key to the SHA-256 of its trained weights (every
variable of ``model/flow``, by checkpoint key), of its samples and of its per-example test
values, and to the numbers of its training summary and metrics files. Keys that measure time,
name a run, a path, a commit or the machine are left out. Equal fingerprints mean the same
config and seeds gave bit-identical models and metrics.

    python tests/workflow/fingerprint.py RESULTS_DIR OUT.json   # record a reference
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

from flows_tf import runtime

VOLATILE = re.compile(
    r"seconds|second_|_time|time_|speedup|per_1k|mlflow|run_id|path|commit|host|date|threads"
    r"|resumed|retries|elapsed|data_hash|config_hash|_dir$"
)


def machine() -> str:
    """The CPU model and its instruction-set flags: float32 kernels (oneDNN picks them by
    instruction set) give the same bits only on the same kind of CPU."""
    return runtime.cpu_model()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_sha(model_dir: Path) -> str:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(model_dir / "model" / "flow"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in n)
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(reader.get_tensor(name)).tobytes())
    return digest.hexdigest()


def numbers(record: dict, prefix: str = "") -> dict:
    """The non-volatile numbers and strings of a JSON record, flattened to ``a.b`` keys."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if VOLATILE.search(key):
            continue
        if isinstance(value, dict):
            out |= numbers(value, f"{name}.")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
        elif isinstance(value, list):
            out[name] = json.dumps(value)
    return out


def fingerprint(results: Path) -> dict:
    results = Path(results)
    jobs = {}
    for train_json in sorted((results / "models").glob("*/*/seed*/train.json")):
        model_dir = train_json.parent
        summary = json.loads(train_json.read_text())
        dataset, flow, seed = model_dir.relative_to(results / "models").parts
        metrics_file = results / "metrics" / dataset / flow / f"{seed}.json"
        per_example = metrics_file.with_suffix(".loglik.npy")
        jobs[summary["job_key"]] = {
            "weights": weights_sha(model_dir),
            "samples": _sha(np.load(model_dir / "samples.npy").tobytes()),
            "per_example": _sha(np.load(per_example).tobytes()) if per_example.is_file() else None,
            "train": numbers(summary),
            "metrics": numbers(json.loads(metrics_file.read_text())),
        }
    return {"machine": machine(), "jobs": jobs}


if __name__ == "__main__":
    record = fingerprint(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
