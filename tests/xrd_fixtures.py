"""Small families of real structure types for XRD model tests (made with pymatgen)."""

from __future__ import annotations

from pathlib import Path

from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

ROCKSALT = [("Na", "Cl", 5.64), ("K", "Cl", 6.29), ("Mg", "O", 4.21), ("Li", "F", 4.03), ("Ca", "O", 4.81),
            ("Ni", "O", 4.18), ("Ba", "O", 5.52), ("Pb", "S", 5.94)]
CESIUM_CHLORIDE = [("Cs", "Cl", 4.12), ("Cs", "Br", 4.29), ("Tl", "Cl", 3.84), ("Cs", "I", 4.57),
                   ("Tl", "Br", 3.97), ("Ni", "Al", 2.88), ("Co", "Al", 2.86), ("Fe", "Al", 2.91)]
RUTILE = [("Ti", "O", 4.59, 2.96), ("Sn", "O", 4.74, 3.19), ("Mn", "O", 4.40, 2.87), ("Ru", "O", 4.49, 3.11),
          ("Ge", "O", 4.40, 2.86), ("Pb", "O", 4.95, 3.38), ("Ir", "O", 4.50, 3.16), ("Cr", "O", 4.42, 2.92)]


def structures() -> list[tuple[str, Structure]]:
    out = []
    for a, b, lat in ROCKSALT:
        out.append((f"{a}{b}_rocksalt", Structure.from_spacegroup(225, Lattice.cubic(lat), [a, b],
                                                                   [[0, 0, 0], [0.5, 0.5, 0.5]])))
    for a, b, lat in CESIUM_CHLORIDE:
        out.append((f"{a}{b}_cscl", Structure.from_spacegroup(221, Lattice.cubic(lat), [a, b],
                                                              [[0, 0, 0], [0.5, 0.5, 0.5]])))
    for a, b, lat, c in RUTILE:
        out.append((f"{a}{b}2_rutile", Structure.from_spacegroup(136, Lattice.tetragonal(lat, c), [a, b],
                                                                 [[0, 0, 0], [0.305, 0.305, 0]])))
    return out


def write_cif_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, structure in structures():
        (folder / f"{name}.cif").write_text(str(CifWriter(structure)))
    return folder


def simulated_pattern(structure: Structure, wavelength: float, two_theta: tuple[float, float], seed: int = 0,
                      fwhm: float = 0.1, step: float = 0.02, background: float = 200.0, counts: float = 2e4):
    """A laboratory pattern: pymatgen's peak list (Lorentz–polarisation included, Debye–Waller
    B = 2 Å² as in the δ-profiles) rendered with pseudo-Voigt lines, a decaying background and
    Poisson counting noise."""
    import numpy as np
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    b_factors = {el.symbol: 2.0 for el in structure.composition.elements}
    calculator = XRDCalculator(wavelength=wavelength, debye_waller_factors=b_factors)
    peaks = calculator.get_pattern(structure, two_theta_range=two_theta)
    x = np.arange(two_theta[0], two_theta[1], step)
    y = background * (0.3 + np.exp(-(x - two_theta[0]) / 40.0))
    sigma = fwhm / 2.3548
    for position, height in zip(peaks.x, peaks.y):
        gauss = np.exp(-0.5 * ((x - position) / sigma) ** 2)
        lorentz = 1.0 / (1.0 + ((x - position) / (fwhm / 2)) ** 2)
        y += counts * height / 100.0 * (0.5 * gauss + 0.5 * lorentz)
    return x, np.random.default_rng(seed).poisson(y).astype(float)


def profile_rows() -> list[dict]:
    """One δ-profile shard row (the columns of xtalspec.datasets.xrd_profiles) per structure of :func:`structures`."""
    import numpy as np
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from xtalspec.spectra.xrd import delta_profile_sparse

    rows = []
    for name, structure in structures():
        bins, values = delta_profile_sparse(structure)
        sga = SpacegroupAnalyzer(structure)
        prim = sga.get_primitive_standard_structure()
        rows.append({"id": name, "source": "test", "spacegroup": sga.get_space_group_number(), "volume": prim.volume,
                     "n_atoms": len(prim), "log_volume_per_atom": float(np.log(prim.volume / len(prim))),
                     "log_density": float(np.log(prim.density)), "bins": bins.astype(np.int32),
                     "values": values.astype(np.float32)})
    return rows
