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
        loglik_csv="results/tables/loglik.csv",
        loglik_md=report(
            "results/tables/loglik.md",
            caption="../report/loglik.rst",
            category="Tables",
        ),
        loglik_tex="results/tables/loglik.tex",
        vi_csv="results/tables/vi.csv",
        vi_md=report(
            "results/tables/vi.md",
            caption="../report/vi.rst",
            category="Tables",
        ),
        vi_tex="results/tables/vi.tex",
        timing_csv="results/tables/timing.csv",
        timing_md=report(
            "results/tables/timing.md",
            caption="../report/timing.rst",
            category="Tables",
        ),
        timing_tex="results/tables/timing.tex",
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
