# Paper figures from the runs table and the files each run wrote (no training here).
from flows_tf import figures as figure_lib

FIGURE_RUNS = figure_lib.figures_for_config(config)  # figure name -> the runs it draws
# every prepared data set's meta.json: image samples go back to pixel space
FIGURE_METAS = [
    paths.of(paths.DATA_META, dataset=d) for d in experiment.data_datasets(config)
]
FIGURE_FILES = [
    paths.of(paths.FIGURE, name=name, ext=ext)
    for name in FIGURE_RUNS
    for ext in ("png", "pdf")
]


rule draw_figures:
    input:
        runs=RUNS_TABLE,
        metas=FIGURE_METAS,
        mlflow=ancient(MLFLOW_INIT),
    output:
        **{
            name: report(
                paths.of(paths.FIGURE, name=name, ext="png"),
                caption=f"../report/figures_{name}.rst",
                category="Figures",
            )
            for name in FIGURE_RUNS
        },
        pdf=[paths.of(paths.FIGURE, name=name, ext="pdf") for name in FIGURE_RUNS],
    log:
        "logs/figures/draw_figures.log",
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        runs=FIGURE_RUNS,
        experiment=config["experiment"],
        dataset_options=config.get("datasets") or {},
        teacher=(config.get("distill") or {}).get("teacher", "maf"),
    script:
        "../scripts/figures.py"


rule figures:
    input:
        FIGURE_FILES,
