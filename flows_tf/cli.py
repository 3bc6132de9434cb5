"""``flows-tf`` (or ``python -m flows_tf``): the benchmark's steps without Snakemake.

    flows-tf list [--config config/config.yaml]            the jobs of a config
    flows-tf prepare --dataset two_moons                   write results/data/two_moons/
    flows-tf init-mlflow                                   create the MLflow experiment
    flows-tf train --dataset two_moons --flow maf --seed 0 [--threads 2]
    flows-tf evaluate --dataset two_moons --flow maf --seed 0
    flows-tf time [--threads 2]                            results/timing/: every model, serially
    flows-tf tables                                        results/tables/ from the record

Paths follow the workflow's layout under ``--results`` (default ``results``). Threads are set
before TensorFlow starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flows_tf import paths, runtime

if TYPE_CHECKING:
    from flows_tf.experiment import Job

__all__ = ["main", "run", "load_config"]

SCHEMA = Path("workflow/schemas/config.schema.yaml")


def load_config(path: str | Path) -> dict:
    """Read a YAML config, validate it against the workflow's JSON schema when present, then
    run the workflow's cross-checks (:func:`flows_tf.experiment.check_config`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"flows-tf: config file {path} not found")
    config = yaml.safe_load(path.read_text()) or {}
    from flows_tf.tracking import project_root

    schema = project_root() / SCHEMA
    if schema.is_file():
        import jsonschema

        try:
            jsonschema.validate(config, yaml.safe_load(schema.read_text()))
        except jsonschema.ValidationError as err:
            where = "/".join(str(p) for p in err.absolute_path) or "<top>"
            raise SystemExit(f"flows-tf: invalid config {path} at {where}: {err.message}") from err
    from flows_tf import experiment

    try:
        experiment.check_config(config)
    except experiment.ConfigError as err:
        raise SystemExit(f"flows-tf: {path}: {err}") from err
    return config


def _job(args: argparse.Namespace, config: dict) -> Job:
    from flows_tf import experiment

    key = (args.dataset, args.flow, int(args.seed))
    for job in experiment.jobs(config):
        if (job.dataset, job.flow, job.seed) == key:
            return job
    raise SystemExit(f"flows-tf: no job {'/'.join(map(str, key))} in {args.config}")


def _paths(args: argparse.Namespace, job: Job) -> dict[str, Path | None]:
    def under_results(template: str, **fields) -> Path:
        return Path(paths.of(template, args.results, **fields))

    return {
        "data_dir": under_results(paths.DATA_DIR, dataset=job.dataset) if job.on_data else None,
        "model_dir": Path(paths.of_job(paths.MODEL_DIR, job, args.results)),
        "metrics": Path(paths.of_job(paths.METRICS, job, args.results)),
        "teacher_dir": under_results(
            paths.MODEL_DIR, dataset=job.dataset, flow=job.teacher, seed=job.seed
        )
        if job.teacher
        else None,
    }


def _cmd_list(args: argparse.Namespace, config: dict) -> None:
    from flows_tf import experiment

    for job in experiment.jobs(config):
        print(job.key)


def _cmd_prepare(args: argparse.Namespace, config: dict) -> None:
    from flows_tf import datasets

    options = dict((config.get("datasets") or {}).get(args.dataset) or {})
    data_dir = paths.of(paths.DATA_DIR, args.results, dataset=args.dataset)
    meta = datasets.prepare_dataset(args.dataset, data_dir, seed=0, **options)
    print(meta["shape"])


def _cmd_init(args: argparse.Namespace, config: dict) -> None:
    from flows_tf import tracking

    print(tracking.init_experiment(config["experiment"]), tracking.tracking_uri())


def _cmd_job(args: argparse.Namespace, config: dict) -> None:
    """Train or evaluate one job of the grid, exactly as the Snakemake rules do."""
    threads = runtime.configure(args.threads)
    from flows_tf import jobs

    job = _job(args, config)
    p = _paths(args, job)
    common = {
        "data_dir": p["data_dir"],
        "model_dir": p["model_dir"],
        "threads": threads,
        "teacher_dir": p["teacher_dir"],
        "rule": "cli",
        "evaluation": config.get("evaluation"),
    }
    if args.command == "train":
        jobs.train_job(job, experiment=config["experiment"], metrics_path=p["metrics"], **common)
    else:
        jobs.evaluate_job(job, metrics_path=p["metrics"], **common)


def _metrics_files(args: argparse.Namespace, config: dict) -> list[Path]:
    from flows_tf import experiment

    return [Path(paths.of_job(paths.METRICS, j, args.results)) for j in experiment.jobs(config)]


def _cmd_time(args: argparse.Namespace, config: dict) -> None:
    """Serial timing of every model, as the workflow's time_models step."""
    threads = runtime.configure(args.threads)
    from flows_tf import jobs, timing

    ev = {**jobs.EVALUATION_DEFAULTS, **(config.get("evaluation") or {})}
    timing.run_timing(
        _metrics_files(args, config),
        paths.of(paths.TIMING, args.results),
        paths.of(paths.TIMING_CONDITIONS, args.results),
        n=int(ev["timing_n"]),
        repeats=int(ev["timing_repeats"]),
        threads=threads,
    )


def _cmd_tables(args: argparse.Namespace, config: dict) -> None:
    import json

    from flows_tf import tables

    files = _metrics_files(args, config)
    timing_csv = Path(paths.of(paths.TIMING, args.results))
    if not timing_csv.is_file():
        raise SystemExit(f"flows-tf: {timing_csv} not found; run `flows-tf time` first")
    conditions = Path(paths.of(paths.TIMING_CONDITIONS, args.results))
    runs = tables.runs_frame(files, expected=len(files), timing=timing_csv)
    written = tables.write_all(
        runs,
        paths.of(paths.RUNS_TABLE, args.results),
        expected_seeds=config.get("seeds", [0]),
        timing_conditions=json.loads(conditions.read_text()),
    )
    for name, path in written.items():
        print(name, path)


COMMANDS = {
    "list": _cmd_list,
    "prepare": _cmd_prepare,
    "init-mlflow": _cmd_init,
    "train": _cmd_job,
    "evaluate": _cmd_job,
    "time": _cmd_time,
    "tables": _cmd_tables,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flows-tf", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name)
        p.add_argument("--config", default="config/config.yaml")
        p.add_argument("--results", default="results")
        if name in ("prepare", "train", "evaluate"):
            p.add_argument("--dataset", required=True)
        if name in ("train", "evaluate"):
            p.add_argument("--flow", required=True)
            p.add_argument("--seed", type=int, default=0)
        if name in ("train", "evaluate", "time"):
            p.add_argument("--threads", type=int, default=2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = load_config(args.config)
    COMMANDS[args.command](args, config)
    return 0


def run() -> None:
    """The console entry point: :func:`main`, then a fast process end (errors raise first)."""
    runtime.exit_now(main())


if __name__ == "__main__":  # pragma: no cover
    run()
