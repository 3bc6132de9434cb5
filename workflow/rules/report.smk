# Tables from the metrics files (and their per-example files) of exactly the current runs,
# checked against MLflow, with the serial timing.


rule build_tables:
    input:
        metrics=get_all_metrics(),
        timing=TIMING_TABLE,
        conditions=TIMING_CONDITIONS,
        mlflow=ancient(MLFLOW_INIT),
    output:
        runs=report(
            RUNS_TABLE,
            caption="../report/runs.rst",
            category="Tables",
        ),
        loglik_csv=paths.of(paths.TABLE, name="loglik", ext="csv"),
        loglik_md=report(
            paths.of(paths.TABLE, name="loglik", ext="md"),
            caption="../report/loglik.rst",
            category="Tables",
        ),
        loglik_tex=paths.of(paths.TABLE, name="loglik", ext="tex"),
        vi_csv=paths.of(paths.TABLE, name="vi", ext="csv"),
        vi_md=report(
            paths.of(paths.TABLE, name="vi", ext="md"),
            caption="../report/vi.rst",
            category="Tables",
        ),
        vi_tex=paths.of(paths.TABLE, name="vi", ext="tex"),
        timing_csv=paths.of(paths.TABLE, name="timing", ext="csv"),
        timing_md=report(
            paths.of(paths.TABLE, name="timing", ext="md"),
            caption="../report/timing.rst",
            category="Tables",
        ),
        timing_tex=paths.of(paths.TABLE, name="timing", ext="tex"),
    log:
        "logs/tables.log",
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        expected_runs=len(JOBS),
        expected_seeds=config.get("seeds", [0]),
    script:
        "../scripts/tables.py"


rule tables:
    input:
        RUNS_TABLE,
        TABLES,
