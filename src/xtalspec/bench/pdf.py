"""Bench section ``pdf``: speed of :func:`xtalspec.spectra.pdf.pdf` against PDFfit2 at the paper's settings.

Both run on the same structures, in the same process, alternating per repeat, so a busy machine
slows both alike; numpy/BLAS threads are limited to one (threadpoolctl), PDFfit2 is single-threaded.
PDFfit2 (``diffpy.pdffit2``, the ``test`` extra) is optional: without it only our speed is reported.

    python -m xtalspec.bench.pdf [n_structures] [--cif-cell]

AMCSD structures from the larixite package, by default in their standard primitive cell
(``SpacegroupAnalyzer.get_primitive_standard_structure``, what the data set is built from);
``--cif-cell`` keeps the CIF's own cell. The cell reduction is done before timing.

:func:`pdffit2_pdf` is also the reference the tests compare against.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import warnings

import numpy as np

from ..spectra import pdf as pdfmod
from ..utils.timing import ms_per_item, one_thread


def pdffit2_available() -> bool:
    try:
        import diffpy.pdffit2  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_pdffit2():
    """PDFfit2 prints a banner and a report per call; send them to /dev/null."""
    from diffpy.pdffit2 import redirect_stdout

    with open(os.devnull, "w") as sink:
        redirect_stdout(sink)
        try:
            yield
        finally:
            redirect_stdout(sys.stdout)


def to_diffpy(structure, uiso: float = pdfmod.UISO):
    """pymatgen Structure -> diffpy.structure Structure, one Atom per (site, species), Uiso on all."""
    from diffpy.structure import Atom, Lattice, Structure

    from ..spectra.form_factors import element_symbol

    atoms = [Atom(element_symbol(sp), site.frac_coords, occupancy=occ, Uisoequiv=uiso)
             for site in structure for sp, occ in site.species.items()]
    return Structure(atoms, lattice=Lattice(*structure.lattice.abc, *structure.lattice.angles))


def pdffit2_pdf(stru, rmin: float = 0.01, rmax: float = pdfmod.RMAX, rstep: float = pdfmod.RSTEP,
                qmax: float = pdfmod.QMAX, qdamp: float = pdfmod.QDAMP, qbroad: float = pdfmod.QBROAD,
                uiso: float = pdfmod.UISO) -> tuple[np.ndarray, np.ndarray]:
    """G(r) from PDFfit2 (X-rays, scale 1, delta1 = delta2 = 0) for a pymatgen or diffpy structure.

    rmin defaults to 0.01 A, PDFgui's calculation default, so that PDFfit2's Qmax cut sees the
    whole G(r) from r ~ 0 (our convention); slice the result to the range wanted."""
    from diffpy.pdffit2 import PdfFit

    if not hasattr(stru, "writeStr"):
        stru = to_diffpy(stru, uiso)
    with _quiet_pdffit2():
        fit = PdfFit()
        fit.add_structure(stru)
        fit.alloc("X", qmax, qdamp, rmin, rmax, int(round((rmax - rmin) / rstep)) + 1)
        fit.setvar("qbroad", qbroad)
        fit.calc()
        r, g = np.array(fit.getR()), np.array(fit.getpdf_fit())
        fit.reset()
    return r, g


def bench_pdf(structures, repeats: int = 3) -> dict:
    """Median over repeats of the mean ms/structure of our pdf() and of PDFfit2 (paper settings)."""
    structures = list(structures)
    with_pdffit2 = pdffit2_available()
    diffpy_structures = [to_diffpy(s) for s in structures] if with_pdffit2 else []
    ours, theirs = [], []
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pdfmod.pdf(structures[0])  # imports, cached broadening matrix
        for _ in range(repeats):
            ours.append(ms_per_item(pdfmod.pdf, structures))
            if with_pdffit2:
                theirs.append(ms_per_item(pdffit2_pdf, diffpy_structures))
    ms_ours = statistics.median(ours)
    result = {
        "n_structures": len(structures),
        "mean_sites": float(np.mean([len(s) for s in structures])),
        "repeats": repeats,
        "ms_per_structure_ours": ms_ours,
        "structures_per_s_ours": 1000.0 / ms_ours,
    }
    if with_pdffit2:
        ms_pdffit2 = statistics.median(theirs)
        result.update(ms_per_structure_pdffit2=ms_pdffit2, speedup=ms_pdffit2 / ms_ours)
    return result


def amcsd_structures(n: int, primitive: bool = True, seed: int = 1) -> list:
    """n AMCSD structures that pass the cleaning checks and that pdf() accepts."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .xrd import amcsd_structures as cif_cells

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in cif_cells(int(n * 1.2) + 2, seed=seed):
            if primitive:
                try:
                    structure = SpacegroupAnalyzer(structure).get_primitive_standard_structure()
                except Exception:  # spglib fails on a few disordered cells: keep the CIF cell
                    pass
            try:
                pdfmod.pdf(structure, rmax=5.0)
            except pdfmod.PDFError:
                continue
            out.append(structure)
    return out[:n]


def section_pdf(sizes: dict, repeats: int, threads: int) -> dict:
    n = sizes["pdf_structures"]
    params = {"n_structures": n, "repeats": repeats, "cell": "standard primitive",
              "settings": {"rmax": pdfmod.RMAX, "rstep": pdfmod.RSTEP, "qmax": pdfmod.QMAX,
                           "qdamp": pdfmod.QDAMP, "qbroad": pdfmod.QBROAD, "uiso": pdfmod.UISO},
              "pdffit2": pdffit2_available(), "numpy_threads": 1}
    result = bench_pdf(amcsd_structures(n), repeats=repeats)
    ratios = {"pdffit2_over_ours": result["speedup"]} if "speedup" in result else {}
    out = {"parameters": params, "results": result, "ratios": ratios}
    if not ratios:
        out["note"] = "diffpy.pdffit2 not installed: only our structures/s (pip install -e '.[test]')"
    return out


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    primitive = "--cif-cell" not in argv
    numbers = [a for a in argv if not a.startswith("--")]
    n = int(numbers[0]) if numbers else 100
    result = bench_pdf(amcsd_structures(n, primitive=primitive))
    result["cell"] = "standard primitive" if primitive else "CIF cell"
    for key, value in result.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
