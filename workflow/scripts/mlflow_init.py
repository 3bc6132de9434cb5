"""Snakemake script: create the MLflow store and experiment once, before the jobs fan out."""

import json

from flows_tf import jobs, tracking

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    experiment_id = tracking.init_experiment(sm.params.experiment)
    record = {
        "experiment": sm.params.experiment,
        "experiment_id": experiment_id,
        "tracking_uri": tracking.tracking_uri(),
    }
    print(record)
    with open(sm.output[0], "w") as fh:
        json.dump(record, fh, indent=1)
