"""Bench section ``xrd``: speed of :func:`xtalspec.spectra.xrd.delta_profile` against pymatgen's
XRDCalculator.

Both run on the same structures, in the same process, one after the other per repeat, so a
busy machine slows both alike. numpy/BLAS threads are limited to one (threadpoolctl, where
installed), since pymatgen's calculator is single-threaded Python.

    python -m xtalspec.bench.xrd [n_structures]     # AMCSD structures from the larixite package

:func:`amcsd_structures` also feeds the ``pdf`` section.
"""

from __future__ import annotations

import statistics
import sys
import warnings

from ..utils.timing import ms_per_item, one_thread


def bench_delta_vs_pymatgen(structures, repeats: int = 3) -> dict:
    """Median over repeats of the mean ms/structure for delta_profile and for pymatgen."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from ..spectra.xrd import delta_profile

    structures = list(structures)
    calculator = XRDCalculator()

    def pymatgen_pattern(structure):
        return calculator.get_pattern(structure, two_theta_range=(10, 110))

    ours, theirs = [], []
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        delta_profile(structures[0])  # warm the form-factor table
        for _ in range(repeats):
            ours.append(ms_per_item(delta_profile, structures))
            theirs.append(ms_per_item(pymatgen_pattern, structures))
    ms_ours, ms_pymatgen = statistics.median(ours), statistics.median(theirs)
    return {
        "n_structures": len(structures),
        "repeats": repeats,
        "ms_per_structure_delta": ms_ours,
        "ms_per_structure_pymatgen": ms_pymatgen,
        "speedup": ms_pymatgen / ms_ours,
    }


def amcsd_structures(n: int, seed: int = 1) -> list:
    """n AMCSD structures (CIF cells, partial occupancies kept) that pass the cleaning checks."""
    import numpy as np

    from ..structures.cleaning import CleaningSettings, ParsedCIF, parse_and_check
    from ..structures.sources.amcsd import AMCSDSource

    source = AMCSDSource()
    ids = sorted(np.random.default_rng(seed).choice(source.list_ids(), size=int(n * 1.3), replace=False))
    structures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in source.iter_entries(ids):
            parsed = parse_and_check(entry.data, CleaningSettings())
            if isinstance(parsed, ParsedCIF):
                structures.append(parsed.structure)
    return structures[:n]


def section_xrd(sizes: dict, repeats: int, threads: int) -> dict:
    n = sizes["xrd_structures"]
    params = {"n_structures": n, "repeats": repeats, "structures": "AMCSD (larixite), CIF cells, seed 1",
              "pymatgen": "XRDCalculator().get_pattern, 2θ 10–110° (Cu Kα)", "numpy_threads": 1}
    result = bench_delta_vs_pymatgen(amcsd_structures(n), repeats=repeats)
    return {"parameters": params, "results": result,
            "ratios": {"pymatgen_over_delta_profile": result["speedup"]}}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 100
    result = bench_delta_vs_pymatgen(amcsd_structures(n))
    for key, value in result.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
