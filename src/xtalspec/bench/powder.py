"""Bench section ``powder``: the laboratory powder pattern (:mod:`xtalspec.spectra.xrd`) against
pymatgen's XRDCalculator.

Same small CoRE MOF structures for both, Cu K-alpha (1.54184 A), 2 theta 5-50 degrees, in the
same process, so a busy machine slows all alike. Each timing is the mean over as many calls as
fill 50 ms; the median over repeats is reported. pymatgen's ``get_pattern`` only computes sticks,
so two ratios are reported: against :func:`powder_peaks` (sticks, like for like) and against the
full :func:`powder_pattern` (sticks + pseudo-Voigt broadening onto 2251 points).

Two thread settings are measured in one run, both in every repeat (which one first alternates):
numpy/BLAS limited to one thread (threadpoolctl; pymatgen's calculator is single-threaded), the
keys without suffix, and the BLAS defaults, what a caller who sets nothing gets (keys
``*_blas_defaults``). Per repeat our sticks and pattern run first, structure by structure with
both settings back to back (so a busy machine's changing load hits both alike), then pymatgen's
calculator on every structure per setting, each followed by a pause (:data:`BLAS_SETTLE_S`): BLAS
worker threads woken by its calls spin for a while afterwards and would slow whatever runs next.

Our engine chooses one BLAS thread itself (:mod:`xtalspec.utils.threads`), so with the defaults
our times stay as with one thread. The check is on all structures together (total time: a few
larger cells, whose matrix products OpenBLAS does spread over threads, were 5-8x slower with the
defaults before, while the median structure hardly changed):
``pymatgen_one_thread_over_pattern_blas_defaults_all`` (pymatgen at one thread, its best, over
our patterns with the defaults) should be within 20 % of ``pymatgen_over_pattern_all`` (both at
one thread); their quotient is ``pattern_defaults_over_one_thread``. pymatgen itself does not choose: with the defaults its many
small BLAS calls can make it several times slower on a busy machine, so
``pymatgen_over_*_blas_defaults`` (both with the defaults, medians over structures) are larger
than the one-thread ratios by pymatgen's own slow-down (reported beside them).

    python -m xtalspec.bench.powder [n_structures]     # default 10; CoRE MOF 2019-ASR (core-mof package)

:data:`SMALL_MOF_IDS` and :func:`small_mofs` are also what the tests use.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import warnings

import numpy as np

from ..utils.timing import one_thread

WAVELENGTH = 1.54184  # Cu K-alpha weighted mean, pymatgen's "CuKa"
TWO_THETA = (5.0, 50.0)
MAX_ATOMS = 150
SAME_CELL_TOL = 0.05  # same site count and a, b, c within 5 %: an isostructural repeat, skipped
DEFAULTS = "_blas_defaults"  # key suffix of the timings and ratios with the BLAS defaults
SAME_RATIO_TOL = 0.2  # our ratio with the BLAS defaults should be within 20 % of the one-thread ratio
BLAS_SETTLE_S = 0.5  # seconds after pymatgen's calls before the next timing (spinning BLAS workers go idle)

#: The first 10 CoRE MOF 2019-ASR ids, in sorted id order, that pass the cleaning checks, have
#: fewer than MAX_ATOMS sites, and are not an isostructural repeat of an earlier pick (that skips
#: ABETAE, a second U5(PO4)4, and the Ln series ABEXIQ..ABEYIR of ABEXEM). Found once with
#: :func:`select_small_mofs` (which parses ~80 CIFs, ~20 s) and frozen here.
SMALL_MOF_IDS = (
    "ABAVIJ_clean", "ABESUX_clean", "ABEXEM_clean", "ABIXOZ_clean", "ABULOB_clean",
    "ACOLIP_clean", "ACUBAB_clean", "ADABIS_clean", "ADABUE_clean", "ADAXEK_clean",
)  # fmt: skip


def _parse(entries) -> dict:
    from ..structures.cleaning import CleaningSettings, ParsedCIF, parse_and_check

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in entries:
            parsed = parse_and_check(entry.data, CleaningSettings())
            if isinstance(parsed, ParsedCIF):
                out[entry.id] = parsed.structure
    return out


def small_mofs(ids=SMALL_MOF_IDS) -> dict:
    """{id: cleaned pymatgen Structure} for CoRE MOF 2019-ASR ids (one pass over the archive)."""
    from ..structures.sources.coremof import CoREMOFSource

    structures = _parse(CoREMOFSource("2019-ASR").iter_entries(list(ids)))
    return {i: structures[i] for i in ids if i in structures}


def select_small_mofs(n: int, batch: int = 100) -> list[str]:
    """The selection rule behind :data:`SMALL_MOF_IDS`, for any n."""
    from ..structures.sources.coremof import CoREMOFSource

    source = CoREMOFSource("2019-ASR")
    ids = source.list_ids()
    chosen: list[tuple[str, int, np.ndarray]] = []
    for start in range(0, len(ids), batch):
        structures = _parse(source.iter_entries(ids[start : start + batch]))
        for ident in ids[start : start + batch]:
            s = structures.get(ident)
            if s is None or len(s) >= MAX_ATOMS:
                continue
            abc = np.array(s.lattice.abc)
            if any(m == len(s) and np.all(np.abs(abc / a - 1) < SAME_CELL_TOL) for _, m, a in chosen):
                continue
            chosen.append((ident, len(s), abc))
            if len(chosen) == n:
                return [c[0] for c in chosen]
    return [c[0] for c in chosen]


def _ms(fn, structure, min_seconds: float = 0.05) -> float:
    """Mean ms per call over as many calls as fill min_seconds (one call for the slow ones)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn(structure)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return 1000.0 * elapsed / calls


def _blas_settings(blas_defaults):
    """{suffix: context manager factory}: one thread (numpy/BLAS via threadpoolctl), and the BLAS
    defaults (``blas_defaults``: threadpoolctl records of the BLAS libraries to restore; None:
    leave them as they are now)."""
    from threadpoolctl import threadpool_limits

    def defaults():
        return threadpool_limits(limits=list(blas_defaults)) if blas_defaults else contextlib.nullcontext()

    return {"": one_thread, DEFAULTS: defaults}


def bench_powder_vs_pymatgen(structures: dict, repeats: int = 3, blas_defaults=None) -> list[dict]:
    """Per structure: median ms over repeats of pymatgen get_pattern, our sticks and our full
    pattern, with one BLAS thread (``ms_pymatgen``, ``ratio_pattern``, ...) and with the BLAS
    defaults (the same keys with ``_blas_defaults``). ``blas_defaults``:
    threadpoolctl's records of the BLAS libraries to restore as the defaults (the bench takes them
    before it limits threads); None: the settings at the call."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from ..spectra.xrd import powder_pattern, powder_peaks

    calculator = XRDCalculator(wavelength=WAVELENGTH)
    ours = {
        "sticks": lambda s: powder_peaks(s, WAVELENGTH, TWO_THETA),
        "pattern": lambda s: powder_pattern(s, WAVELENGTH, TWO_THETA),
    }
    theirs = {"pymatgen": lambda s: calculator.get_pattern(s, scaled=False, two_theta_range=TWO_THETA)}
    settings = _blas_settings(blas_defaults)
    times = {ident: {name + suffix: [] for name in [*ours, *theirs] for suffix in settings} for ident in structures}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = next(iter(structures.values()))
        for fn in [*ours.values(), *theirs.values()]:
            fn(first)  # warm caches (form-factor table, imports)
        for repeat in range(repeats):
            order = list(settings.items())
            order = order[::-1] if repeat % 2 else order  # alternate which setting goes first
            for ident, structure in structures.items():  # ours: both settings back to back per structure
                for suffix, limits in order:
                    with limits():
                        for name, fn in ours.items():
                            times[ident][name + suffix].append(_ms(fn, structure))
            for suffix, limits in order:  # pymatgen: every structure per setting, then a pause
                with limits():
                    for ident, structure in structures.items():
                        for name, fn in theirs.items():
                            times[ident][name + suffix].append(_ms(fn, structure))
                time.sleep(BLAS_SETTLE_S)
    rows = []
    for ident, structure in structures.items():
        ms = {name: statistics.median(t) for name, t in times[ident].items()}
        row = {"id": ident, "atoms": len(structure), "peaks": len(powder_peaks(structure, WAVELENGTH, TWO_THETA)[0])}
        for suffix in settings:
            row.update({
                f"ms_pymatgen{suffix}": ms[f"pymatgen{suffix}"], f"ms_sticks{suffix}": ms[f"sticks{suffix}"],
                f"ms_pattern{suffix}": ms[f"pattern{suffix}"],
                f"ratio_sticks{suffix}": ms[f"pymatgen{suffix}"] / ms[f"sticks{suffix}"],
                f"ratio_pattern{suffix}": ms[f"pymatgen{suffix}"] / ms[f"pattern{suffix}"],
            })  # fmt: skip
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Median ratios (pymatgen / ours) over structures with one BLAS thread and with the BLAS
    defaults; over all structures together (total ms), pymatgen / our pattern at one thread, and
    pymatgen at one thread / our pattern with the defaults; ``pattern_defaults_over_one_thread``
    is the second of these over the first (1: the defaults cost our patterns nothing)."""
    out = {}
    for suffix in ("", DEFAULTS):
        for what in ("sticks", "pattern"):
            out[f"pymatgen_over_{what}{suffix}"] = statistics.median(r[f"ratio_{what}{suffix}"] for r in rows)
    total = {key: sum(r[key] for r in rows) for key in ("ms_pymatgen", "ms_pattern", f"ms_pattern{DEFAULTS}")}
    out["pymatgen_over_pattern_all"] = total["ms_pymatgen"] / total["ms_pattern"]
    out[f"pymatgen_one_thread_over_pattern{DEFAULTS}_all"] = total["ms_pymatgen"] / total[f"ms_pattern{DEFAULTS}"]
    out["pattern_defaults_over_one_thread"] = total["ms_pattern"] / total[f"ms_pattern{DEFAULTS}"]
    return out


def within_tolerance(summ: dict, tol: float = SAME_RATIO_TOL) -> bool:
    """Whether our full-pattern ratio with the BLAS defaults is within ``tol`` of the one-thread ratio."""
    return abs(summ["pattern_defaults_over_one_thread"] - 1.0) <= tol


def section_powder(sizes: dict, repeats: int, threads: int, blas_defaults=None) -> dict:
    ids = SMALL_MOF_IDS[: sizes["powder_structures"]]
    structures = small_mofs(ids)
    if not structures:
        raise RuntimeError(f"none of the CoRE MOF ids {list(ids)} could be read")
    rows = bench_powder_vs_pymatgen(structures, repeats=repeats, blas_defaults=blas_defaults)
    default_threads = {lib["prefix"]: lib["num_threads"] for lib in blas_defaults or ()}
    params = {"structures": list(structures), "repeats": repeats, "wavelength_A": WAVELENGTH,
              "two_theta": list(TWO_THETA), "timing": "mean over calls filling 50 ms, median over repeats",
              "numpy_threads": 1, "blas_default_threads": default_threads or "as at the call",
              "thread_settings": "every repeat: one BLAS thread and the BLAS defaults (keys *_blas_defaults), "
                                 "alternating which goes first; ours per structure in both, then pymatgen "
                                 "per setting, each followed by a pause",
              "blas_settle_s": BLAS_SETTLE_S}
    ratios = summary(rows)
    results = {"rows": rows}
    for suffix in ("", DEFAULTS):
        for what in ("pymatgen", "sticks", "pattern"):
            results[f"median_ms_{what}{suffix}"] = statistics.median(r[f"ms_{what}{suffix}"] for r in rows)
    for key in ("ms_pymatgen", "ms_pattern", f"ms_pattern{DEFAULTS}"):
        results[f"total_{key}"] = sum(r[key] for r in rows)
    results["pymatgen_slowdown_blas_defaults"] = statistics.median(r[f"ms_pymatgen{DEFAULTS}"] / r["ms_pymatgen"]
                                                                   for r in rows)
    results["defaults_within_20_percent_of_one_thread"] = within_tolerance(ratios)
    return {"parameters": params, "results": results, "ratios": ratios}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| structure | atoms | peaks | pymatgen ms | sticks ms | pattern ms | pymatgen / sticks | pymatgen / pattern "
        "| pattern ms, BLAS defaults | pymatgen ms, BLAS defaults |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['id']} | {r['atoms']} | {r['peaks']} | {r['ms_pymatgen']:.1f} | {r['ms_sticks']:.2f} | "
            f"{r['ms_pattern']:.2f} | {r['ratio_sticks']:.1f} | {r['ratio_pattern']:.1f} | "
            f"{r['ms_pattern' + DEFAULTS]:.2f} | {r['ms_pymatgen' + DEFAULTS]:.1f} |"
        )
    summ = summary(rows)
    lines.append("")
    lines.append(f"median ratio pymatgen / sticks: {summ['pymatgen_over_sticks']:.1f}x; pymatgen / full pattern: "
                 f"{summ['pymatgen_over_pattern']:.1f}x (one BLAS thread); all structures together, pymatgen / "
                 f"our patterns: {summ['pymatgen_over_pattern_all']:.1f}x at one thread, "
                 f"{summ['pymatgen_one_thread_over_pattern' + DEFAULTS + '_all']:.1f}x with our patterns at the "
                 f"BLAS defaults ({summ['pattern_defaults_over_one_thread']:.2f} of it); both with the "
                 f"BLAS defaults: {summ['pymatgen_over_sticks' + DEFAULTS]:.1f}x and "
                 f"{summ['pymatgen_over_pattern' + DEFAULTS]:.1f}x")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else len(SMALL_MOF_IDS)
    ids = SMALL_MOF_IDS[:n] if n <= len(SMALL_MOF_IDS) else select_small_mofs(n)
    print(markdown(bench_powder_vs_pymatgen(small_mofs(ids))))


if __name__ == "__main__":
    main()
