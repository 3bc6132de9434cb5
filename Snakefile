# flowbench: prepare data -> train (mle, vi, distill) -> evaluate -> tables -> figures.
# The grid comes from the config (flows_tf.experiment.jobs); see README.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
