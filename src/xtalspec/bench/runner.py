"""``xtalspec bench``: the project's speed measurements in one run, on one machine.

:func:`run_benchmarks` (``xtalspec bench``, ``python -m xtalspec.bench``) runs every section not
skipped, in one process, and writes ``<out-dir>/benchmarks.json`` and ``<out-dir>/benchmarks.md``
(atomic renames); :func:`main` runs ``python -m xtalspec.bench`` through the command of :mod:`xtalspec.cli.bench`.

Each section runs inside ``--threads`` numpy/BLAS and torch threads (default 1) and with warnings
silenced; one that fails records its error and the run goes on; one whose input is missing is
"not available". The BLAS thread counts before any limit (the defaults) are taken first, so that
the ``powder`` section can measure with them too. Sections are looked up by name on
:mod:`xtalspec.bench` when they run (``section_<name>``), so a test can replace one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from .common import NotAvailable, blas_threads, jsonable, limited_threads, machine_info
from .report import write_report
from .xanes import FEFF_SITE

log = logging.getLogger("xtalspec.bench")

SECTIONS = ("xrd", "powder", "pdf", "feff", "training", "ensemble", "ensemble_jobs", "rules")
TITLES = {
    "xrd": "δ-profile vs pymatgen XRDCalculator",
    "powder": "Powder pattern vs pymatgen XRDCalculator",
    "pdf": "PDF vs diffpy PDFfit2",
    "feff": "FEFF fast vs reference preset",
    "training": "Training samples/s per model family",
    "ensemble": "Ensemble trained together vs sequentially",
    "ensemble_jobs": "Six `xrd train` jobs vs one `xrd train-ensemble` job on the pipeline's XRD data set",
    "rules": "Pipeline rules (Snakemake benchmark files of the last run)",
}
#: sizes of the default run (~5 min on a 2-core machine) and of --quick (tests)
SIZES = {
    "default": {"repeats": 5, "xrd_structures": 40, "powder_structures": 10, "pdf_structures": 40,
                "train_warmup": 2, "train_steps": 4, "ensemble_members": 6, "ensemble_repeats": 3,
                "ensemble_job_epochs": 2},
    "quick": {"repeats": 2, "xrd_structures": 4, "powder_structures": 1, "pdf_structures": 4,
              "train_warmup": 1, "train_steps": 1, "ensemble_members": 2, "ensemble_repeats": 1,
              "ensemble_job_epochs": 1},
}


def run_benchmarks(out_dir="results/benchmarks", quick: bool = False, feff: bool = False, repeats: int | None = None,
                   threads: int = 1, skip=(), rules_dir=None, feff_site: str = FEFF_SITE,
                   xrd_dataset="results/xrd/dataset/dataset.parquet") -> dict:
    """Run every section not skipped; write and return the record."""
    import warnings

    import scipy.linalg  # noqa: F401  (scipy's own BLAS: loaded now, its default threads are recorded too)

    from .. import bench as package
    from ..provenance import code_version

    blas_defaults = blas_threads()  # before any limit: what a caller who sets nothing gets
    out_dir = Path(out_dir)
    sizes = dict(SIZES["quick" if quick else "default"])
    repeats = int(repeats or sizes["repeats"])
    sizes["repeats"] = repeats
    rules_dir = Path(rules_dir) if rules_dir else out_dir / "rules"
    started = time.perf_counter()
    record = {
        "kind": "xtalspec_benchmarks", "code_version": code_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {"out_dir": str(out_dir), "quick": quick, "feff": feff, "repeats": repeats, "threads": threads,
                    "skip": sorted(skip), "rules_dir": str(rules_dir), "feff_site": feff_site,
                    "xrd_dataset": str(xrd_dataset)},
        "sizes": sizes, "machine": machine_info(threads), "sections": {},
    }
    record["machine"]["blas_default_threads"] = {Path(lib["filepath"]).name: lib["num_threads"]
                                                 for lib in blas_defaults}
    runners = {
        "xrd": lambda: package.section_xrd(sizes, repeats, threads),
        "powder": lambda: package.section_powder(sizes, repeats, threads, blas_defaults),
        "pdf": lambda: package.section_pdf(sizes, repeats, threads),
        "feff": lambda: package.section_feff(sizes, repeats, threads, feff_site),
        "training": lambda: package.section_training(sizes, repeats, threads),
        "ensemble": lambda: package.section_ensemble(sizes, repeats, threads, quick),
        "ensemble_jobs": lambda: package.section_ensemble_jobs(xrd_dataset, sizes["ensemble_members"],
                                                               sizes["ensemble_job_epochs"], threads,
                                                               out_dir / "ensemble_jobs"),
        "rules": lambda: package.section_rules(rules_dir),
    }
    for name in SECTIONS:
        entry = {"title": TITLES[name]}
        if name in skip:
            entry.update(status="skipped", note="--skip")
        elif name == "feff" and not feff:
            entry.update(status="skipped", note="slow (minutes of FEFF): run with --feff")
        else:
            log.info("bench: %s ...", name)
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings(), limited_threads(threads):
                    warnings.simplefilter("ignore")
                    entry.update(runners[name]())
                entry["status"] = "ok"
            except NotAvailable as exc:
                entry.update(status="not available", note=str(exc))
            except Exception as exc:  # a failing section is recorded; the others still run
                log.warning("bench: %s failed: %s", name, exc)
                entry.update(status="error", error=f"{type(exc).__name__}: {exc}",
                             traceback=traceback.format_exc(limit=8).splitlines()[-12:])
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            log.info("bench: %s %s in %.1f s", name, entry["status"], entry["seconds"])
        record["sections"][name] = entry
    with contextlib.suppress(OSError, AttributeError):
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    record = jsonable(record)
    write_report(record, out_dir)
    return record


def main(argv=None) -> int:
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..cli.bench import cmd_bench, register

    parser = argparse.ArgumentParser(prog="python -m xtalspec.bench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return cmd_bench(args)
