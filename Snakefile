# prefixlab: rebuilds the figures of Genewein et al. 2025 (Paper A) and Petrov et al. 2024 (Paper B)
# from config.yaml.
# Usage: snakemake --cores 2 all_figures [--config scale=quick]
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


localrules:
    all_figures,


rule all_figures:
    default_target: True
    input:
        all_figure_outputs(),
