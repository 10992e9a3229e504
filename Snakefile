# xtalspec: crystal structures -> simulated spectra -> models that read structure from spectra.
# Thin on purpose: load and validate the config, include one rule file per stage, name targets.
# The science lives in the `xtalspec` package (src/xtalspec), which every rule calls by its CLI.

from snakemake.utils import min_version, validate

min_version("8.10")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/xrd.smk"
include: "workflow/rules/xrd_deploy.smk"
include: "workflow/rules/pdf.smk"
include: "workflow/rules/pdf_deploy.smk"
include: "workflow/rules/xanes.smk"
include: "workflow/rules/mof.smk"
include: "workflow/rules/thesis.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/validate.smk"


rule all:
    input:
        rules.structures.input,
        rules.xrd.input,
        rules.xrd_deploy.input,
        rules.pdf.input,
        rules.pdf_deploy.input,
        rules.xanes.input,
        rules.mof.input,
        rules.thesis.input,
    default_target: True
