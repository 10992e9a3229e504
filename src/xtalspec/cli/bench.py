"""``xtalspec bench``: the argument parsing of the speed benchmarks; the measurements, their
sections and the report are :mod:`xtalspec.bench` (:func:`xtalspec.bench.run_benchmarks`)."""

from __future__ import annotations

from pathlib import Path


def cmd_bench(args) -> int:
    from ..bench import run_benchmarks

    record = run_benchmarks(out_dir=args.out_dir, quick=args.quick, feff=args.feff, repeats=args.repeats,
                            threads=args.threads, skip=set(args.skip or ()), rules_dir=args.rules_dir,
                            feff_site=args.feff_site, xrd_dataset=args.xrd_dataset)
    failed = [n for n, e in record["sections"].items() if e["status"] == "error"]
    out = Path(args.out_dir)
    print(f"wrote {out / 'benchmarks.json'} and {out / 'benchmarks.md'} in {record['total_seconds']} s"
          + (f"; failed sections: {', '.join(failed)}" if failed else ""))
    return 0


def register(sub) -> None:
    from .. import bench

    p = sub.add_parser("bench", help="every speed benchmark in one run: spectra vs references, training "
                                     "samples/s, ensemble, pipeline rule times",
                       description=bench.__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="results/benchmarks", help="benchmarks.json and benchmarks.md go here")
    p.add_argument("--quick", action="store_true", help="small sizes (tests; numbers are noisy)")
    p.add_argument("--feff", action="store_true", help="also FEFF fast vs reference on one site (minutes)")
    p.add_argument("--feff-site", default=bench.FEFF_SITE, help="site of xtalspec.bench.xanes.SITES")
    p.add_argument("--repeats", type=int, default=None, help="repeats per measurement (default 5; --quick 2)")
    p.add_argument("--threads", type=int, default=1, help="torch and numpy/BLAS threads")
    p.add_argument("--skip", nargs="+", choices=bench.SECTIONS, default=[], metavar="SECTION",
                   help=f"sections to leave out: {' '.join(bench.SECTIONS)}")
    p.add_argument("--xrd-dataset", default="results/xrd/dataset/dataset.parquet",
                   help="the pipeline's XRD data set, for the ensemble_jobs section (not available without it)")
    p.add_argument("--rules-dir", default=None,
                   help="Snakemake benchmark files of the pipeline (default <out-dir>/rules)")
    p.set_defaults(func=cmd_bench)
