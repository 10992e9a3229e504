# Benchmarks: every speed measurement in one run on one machine (`xtalspec bench`): spectra vs
# pymatgen / PDFfit2 (ratios), training samples/s per model family, ensemble together vs
# sequential, and the per-rule wall times of the last pipeline run (BENCH files, read only).
# Not part of `all`; no inputs, so rerun it with `snakemake benchmark --forcerun bench`.
# Optional config `benchmark:` (threads, feff, quick, repeats, skip; defaults in config/schema.yaml).

BENCHMARK = config["benchmark"]


rule bench:
    """All benchmark sections in one process; holds every core so that no other job disturbs the timings."""
    output:
        json=RESULTS / "benchmarks/benchmarks.json",
        md=report(RESULTS / "benchmarks/benchmarks.md", caption="../report/benchmarks.rst", category="Benchmarks"),
    params:
        options=lambda wc: _flags(
            [
                ("--threads", BENCHMARK["threads"]),
                ("--repeats", BENCHMARK["repeats"]),
                ("--feff", BENCHMARK["feff"]),
                ("--quick", BENCHMARK["quick"]),
                ("--skip", BENCHMARK["skip"]),
                ("--rules-dir", BENCH),
            ]
        ),
    threads: workflow.cores
    log:
        LOGS / "benchmarks/bench.log",
    benchmark:
        BENCH / "benchmarks/bench.tsv"
    conda:
        ENV
    shell:
        "xtalspec bench --out-dir \"$(dirname {output.json:q})\" {params.options} > {log:q} 2>&1"


rule benchmark:
    """Target: results/benchmarks/benchmarks.{json,md}."""
    input:
        rules.bench.output,
