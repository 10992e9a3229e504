# Stage 1: get CIFs -> clean -> relabel space groups with spglib -> Parquet shards.


rule fetch_structures:
    """Download a networked source (COD, Materials Project) into its cache."""
    output:
        RESULTS / "structures/{source}/cache/index.jsonl",
    wildcard_constraints:
        source="cod|mp",
    params:
        options=lambda wc: fetch_options(wc.source),
    log:
        LOGS / "structures/{source}/fetch.log",
    benchmark:
        BENCH / "structures/{source}/fetch.tsv"
    conda:
        ENV
    shell:
        "xtalspec fetch --source {wildcards.source} --cache \"$(dirname {output:q})\" {params.options} > {log:q} 2>&1"


rule ingest_shard:
    """Clean, relabel and write one shard of one source (entry k goes to shard k mod N)."""
    input:
        ingest_inputs,
    output:
        shard=RESULTS / "structures/{source}/shard-{shard}.parquet",
        rejects=RESULTS / "structures/{source}/rejects-{shard}.parquet",
    wildcard_constraints:
        shard=r"\d{3}",
    params:
        options=lambda wc: ingest_options(wc.source),
    log:
        LOGS / "structures/{source}/ingest-{shard}.log",
    benchmark:
        BENCH / "structures/{source}/ingest-{shard}.tsv"
    conda:
        ENV
    shell:
        "xtalspec ingest --source {wildcards.source} --out \"$(dirname {output.shard:q})\" --shard {wildcards.shard} "
        "{params.options} > {log:q} 2>&1"


rule structures_summary:
    """Counts per source, rejects by reason, relabel statistics, space-group histogram."""
    input:
        shards=structure_shard_files("shard"),
        rejects=structure_shard_files("rejects"),
    output:
        json=RESULTS / "structures/summary.json",
        md=report(RESULTS / "structures/summary.md", caption="../report/structures_summary.rst", category="Structures"),
        rejects=RESULTS / "structures/rejects.parquet",
        histogram=report(
            RESULTS / "structures/spacegroup_histogram.png",
            caption="../report/spacegroup_histogram.rst",
            category="Structures",
        ),
    log:
        LOGS / "structures/summary.log",
    benchmark:
        BENCH / "structures/summary.tsv"
    conda:
        ENV
    shell:
        "xtalspec summarize --shards {input.shards:q} --rejects {input.rejects:q} "
        "--out \"$(dirname {output.json:q})\" > {log:q} 2>&1"


rule structures:
    """Target: all structure shards and the ingestion summary."""
    input:
        rules.structures_summary.output,
