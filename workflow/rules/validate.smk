# Validation on measured data: the prediction commands scored on a labelled set of measured
# files (default: the development set in resources/measured; your lab's data: point
# `validation:` at your own LABELS.csv files). Not part of `all`: `snakemake validate`.

rule validate_kind:
    """One predictor over the labelled measured files: per-file results, top-k, crystal systems, timing."""
    input:
        labels=lambda wc: VALIDATION[wc.kind.split("-")[0]],
        models=lambda wc: validation_models(wc.kind),
    output:
        csv=VALIDATION_OUT / "{kind}/per_file.csv",
        md=report(VALIDATION_OUT / "{kind}/summary.md", caption="../report/validation.rst", category="Validation"),
        json=VALIDATION_OUT / "{kind}/summary.json",
    wildcard_constraints:
        kind="xrd|xrd-paper|pdf|xanes",
    params:
        models=lambda wc: validation_models_dir(wc.kind),
        predictor=lambda wc: wc.kind.split("-")[0],
    log:
        LOGS / "validation/{kind}.log",
    benchmark:
        BENCH / "validation/{kind}.tsv"
    conda:
        ENV
    shell:
        "xtalspec validate {params.predictor} {input.labels:q} --models {params.models:q} --csv {output.csv:q} "
        "--md {output.md:q} --json {output.json:q} > {log:q} 2>&1"


rule validate:
    """Every predictor on its labelled measured files."""
    input:
        expand(VALIDATION_OUT / "{kind}/summary.md", kind=[k for k in ("xrd", "pdf", "xanes") if VALIDATION[k]]),
        # the paper-protocol members beside the deploy models, for comparison
        [VALIDATION_OUT / "xrd-paper/summary.md"] if VALIDATION["xrd"] and xrd_deploy_members() else [],
