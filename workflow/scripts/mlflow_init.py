"""Snakemake script: create the MLflow store and experiment once, before the jobs fan out.

The experiment opens in the MLflow UI as a model-training experiment with saved runs views
(``runs_view``: the route to open after ``mlflow ui``'s address and ``#``).
"""

import json

from flows_tf import jobs, tracking

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    experiment_id = tracking.init_experiment(sm.params.experiment)
    record = {
        "experiment": sm.params.experiment,
        "experiment_id": experiment_id,
        "tracking_uri": tracking.tracking_uri(),
        "runs_view": tracking.runs_view_url(experiment_id),
    }
    print(record)
    with open(sm.output[0], "w") as fh:
        json.dump(record, fh, indent=1)
