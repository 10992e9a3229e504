# Benchmarks: every speed measurement in one run on one machine (`xtalspec bench`): spectra vs
# pymatgen / PDFfit2 (ratios), training samples/s per model family, ensemble together vs
# sequential, and the per-rule wall times of the last pipeline run (BENCH files, read only).
# Not part of `all`; no inputs, so rerun it with `snakemake benchmark --forcerun bench`.
# Optional config (no schema section needed): benchmark: {threads: 1, feff: false, quick: false,
# repeats: null, skip: []}

BENCHMARK = config.get("benchmark") or {}


rule bench:
    """All benchmark sections in one process; holds every core so that no other job disturbs the timings."""
    output:
        json=RESULTS / "benchmarks/benchmarks.json",
        md=report(RESULTS / "benchmarks/benchmarks.md", caption="../report/benchmarks.rst", category="Benchmarks"),
    params:
        options=lambda wc: _flags(
            [
                ("--threads", BENCHMARK.get("threads", 1)),
                ("--repeats", BENCHMARK.get("repeats")),
                ("--feff", bool(BENCHMARK.get("feff", False))),
                ("--quick", bool(BENCHMARK.get("quick", False))),
                ("--skip", BENCHMARK.get("skip")),
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
        "xtalspec bench --out-dir $(dirname {output.json}) {params.options} > {log} 2>&1"


rule benchmark:
    """Target: results/benchmarks/benchmarks.{json,md}."""
    input:
        rules.bench.output,
