"""``xtalspec bench``: the project's speed measurements in one run, on one machine.

One module per section (``--skip`` leaves any out; each records its parameters; one that fails
records its error and the run goes on):

* ``xrd``       δ-profile (:func:`~xtalspec.spectra.xrd.delta_profile`) against pymatgen's
                XRDCalculator on AMCSD structures (:mod:`xtalspec.bench.xrd`)
* ``powder``    laboratory powder pattern against pymatgen on small CoRE MOFs, with one BLAS
                thread and with the BLAS defaults in the same run (:mod:`xtalspec.bench.powder`)
* ``pdf``       PDFs per second, and against diffpy PDFfit2 when installed (:mod:`xtalspec.bench.pdf`)
* ``feff``      FEFF ``fast`` against ``reference`` on one site (:mod:`xtalspec.bench.xanes`), both
                run now in a scratch folder; slow, so only with ``--feff``
* ``training``  training samples/s of every model family: timed Adam steps (forward, the
                training module's loss, backward, step) on synthetic batches of the real shapes and
                batch sizes, after warm-up steps, median over repeats; the repeats cycle through
                the models so that a busy machine slows all alike (:mod:`xtalspec.bench.training`)
* ``ensemble``  an ensemble trained together against its members one after another, in one
                process (:mod:`xtalspec.bench.ensemble`)
* ``ensemble_jobs``  six ``xrd train`` commands against one ``xrd train-ensemble`` command on the
                pipeline's XRD data set (:mod:`xtalspec.bench.ensemble_jobs`)
* ``rules``     wall times of the last pipeline run from Snakemake's ``benchmark:`` files under
                ``<out-dir>/rules`` (reads files only): per rule (its wildcard instances together),
                jobs, total, median and max seconds; per stage (the first folder) totals
                (:mod:`xtalspec.bench.rules`)

Ratios (ours against a reference, together against sequential, a model against SpgNet) are the
numbers to compare between machines; absolute times are shown beside them. numpy/BLAS and torch
run with ``--threads`` threads (default 1). :mod:`xtalspec.bench.runner` runs the sections and
holds :func:`run_benchmarks` (the command's arguments are parsed in :mod:`xtalspec.cli.bench`);
:mod:`xtalspec.bench.report` writes ``<out-dir>/benchmarks.json`` and ``<out-dir>/benchmarks.md``.

    xtalspec bench [--quick] [--feff] [--skip SECTION ...]     # or: python -m xtalspec.bench ...
    python -m xtalspec.bench.xrd | .powder | .pdf | .xanes      # one section's own script

The names below are imported from their modules on first use, so that ``import xtalspec.bench``
stays light and ``python -m xtalspec.bench.<section>`` runs its module only once.
"""

from __future__ import annotations

import importlib

#: public name -> module of this package that defines it
_EXPORTS = {
    "SECTIONS": "runner", "TITLES": "runner", "SIZES": "runner", "run_benchmarks": "runner",
    "main": "runner",
    "markdown": "report", "write_report": "report",
    "NotAvailable": "common", "machine_info": "common",
    "section_xrd": "xrd", "section_powder": "powder", "section_pdf": "pdf",
    "section_feff": "xanes", "FEFF_SITE": "xanes",
    "section_training": "training", "TRAINING_MODELS": "training", "training_case": "training",
    "bench_training": "training",
    "section_ensemble": "ensemble", "bench_together_vs_sequential": "ensemble",
    "synthetic_profiles": "ensemble",
    "section_ensemble_jobs": "ensemble_jobs",
    "section_rules": "rules", "collect_rule_benchmarks": "rules", "read_benchmark_tsv": "rules",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
