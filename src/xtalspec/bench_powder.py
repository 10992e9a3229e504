"""Speed of the laboratory powder pattern (:mod:`xtalspec.spectra.xrd`) against pymatgen's XRDCalculator.

Same small CoRE MOF structures for both, Cu K-alpha (1.54184 A), 2 theta 5-50 degrees, in the
same process; per repeat every structure runs pymatgen, our sticks and our full pattern in turn,
so a busy machine slows all alike. Each timing is the mean over as many calls as fill 50 ms; the
median over repeats is reported. numpy/BLAS threads are limited to one (threadpoolctl), since
pymatgen's calculator is single-threaded. pymatgen's ``get_pattern`` only computes sticks, so two
ratios are reported: against :func:`powder_peaks` (sticks, like for like) and against the full
:func:`powder_pattern` (sticks + pseudo-Voigt broadening onto 2251 points).

    python -m xtalspec.bench_powder [n_structures]     # default 10; CoRE MOF 2019-ASR (core-mof package)

:data:`SMALL_MOF_IDS` and :func:`small_mofs` are also what the tests use.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np

from .utils.timing import one_thread

WAVELENGTH = 1.54184  # Cu K-alpha weighted mean, pymatgen's "CuKa"
TWO_THETA = (5.0, 50.0)
MAX_ATOMS = 150
SAME_CELL_TOL = 0.05  # same site count and a, b, c within 5 %: an isostructural repeat, skipped

#: The first 10 CoRE MOF 2019-ASR ids, in sorted id order, that pass the cleaning checks, have
#: fewer than MAX_ATOMS sites, and are not an isostructural repeat of an earlier pick (that skips
#: ABETAE, a second U5(PO4)4, and the Ln series ABEXIQ..ABEYIR of ABEXEM). Found once with
#: :func:`select_small_mofs` (which parses ~80 CIFs, ~20 s) and frozen here.
SMALL_MOF_IDS = (
    "ABAVIJ_clean", "ABESUX_clean", "ABEXEM_clean", "ABIXOZ_clean", "ABULOB_clean",
    "ACOLIP_clean", "ACUBAB_clean", "ADABIS_clean", "ADABUE_clean", "ADAXEK_clean",
)  # fmt: skip


def _parse(entries) -> dict:
    from .structures.cleaning import CleaningSettings, ParsedCIF, parse_and_check

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
    from .structures.sources.coremof import CoREMOFSource

    structures = _parse(CoREMOFSource("2019-ASR").iter_entries(list(ids)))
    return {i: structures[i] for i in ids if i in structures}


def select_small_mofs(n: int, batch: int = 100) -> list[str]:
    """The selection rule behind :data:`SMALL_MOF_IDS`, for any n."""
    from .structures.sources.coremof import CoREMOFSource

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


def bench_powder_vs_pymatgen(structures: dict, repeats: int = 3) -> list[dict]:
    """Per structure: median ms over repeats of pymatgen get_pattern, our sticks and our full pattern."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from .spectra.xrd import powder_pattern, powder_peaks

    calculator = XRDCalculator(wavelength=WAVELENGTH)
    runs = {
        "pymatgen": lambda s: calculator.get_pattern(s, scaled=False, two_theta_range=TWO_THETA),
        "sticks": lambda s: powder_peaks(s, WAVELENGTH, TWO_THETA),
        "pattern": lambda s: powder_pattern(s, WAVELENGTH, TWO_THETA),
    }
    times = {ident: {name: [] for name in runs} for ident in structures}
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = next(iter(structures.values()))
        for fn in runs.values():
            fn(first)  # warm caches (form-factor table, imports)
        for _ in range(repeats):
            for ident, structure in structures.items():
                for name, fn in runs.items():
                    times[ident][name].append(_ms(fn, structure))
    rows = []
    for ident, structure in structures.items():
        ms = {name: statistics.median(t) for name, t in times[ident].items()}
        rows.append({
            "id": ident, "atoms": len(structure), "peaks": len(powder_peaks(structure, WAVELENGTH, TWO_THETA)[0]),
            "ms_pymatgen": ms["pymatgen"], "ms_sticks": ms["sticks"], "ms_pattern": ms["pattern"],
            "ratio_sticks": ms["pymatgen"] / ms["sticks"], "ratio_pattern": ms["pymatgen"] / ms["pattern"],
        })  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| structure | atoms | peaks | pymatgen ms | sticks ms | pattern ms | pymatgen / sticks | pymatgen / pattern |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['id']} | {r['atoms']} | {r['peaks']} | {r['ms_pymatgen']:.1f} | {r['ms_sticks']:.2f} | "
            f"{r['ms_pattern']:.2f} | {r['ratio_sticks']:.1f} | {r['ratio_pattern']:.1f} |"
        )
    sticks = statistics.median(r["ratio_sticks"] for r in rows)
    pattern = statistics.median(r["ratio_pattern"] for r in rows)
    lines.append("")
    lines.append(f"median ratio pymatgen / sticks: {sticks:.1f}x; pymatgen / full pattern: {pattern:.1f}x")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else len(SMALL_MOF_IDS)
    ids = SMALL_MOF_IDS[:n] if n <= len(SMALL_MOF_IDS) else select_small_mofs(n)
    print(markdown(bench_powder_vs_pymatgen(small_mofs(ids))))


if __name__ == "__main__":
    main()
