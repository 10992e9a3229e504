"""Neutron PDFs: weights b_i b_j / <b>^2 from the packaged scattering-length table (Sears 1992)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xtalspec.spectra.pdf import PDFError, neutron_scattering_length, neutron_scattering_lengths, pdf

# The packaged table's values (periodictable 2.1.0's Sears table), typed in by hand from its rows.
B = {"H": -3.7409, "D": 6.6681, "Li": -1.93, "O": 5.8037, "Ti": -3.37, "V": -0.443, "Mn": -3.75, "Ni": 10.3,
     "Na": 3.63, "Cl": 9.5792, "La": 8.24, "U": 8.417}


def rocksalt(a, b, lattice):
    return Structure.from_spacegroup(225, Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rutile_tio2():
    return Structure.from_spacegroup(136, Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])


def test_table_values_and_coverage():
    table = neutron_scattering_lengths()
    for symbol, value in B.items():
        assert table[symbol] == pytest.approx(value, abs=1e-9), symbol
    # every element H..Cm with a value except the ones the table lacks; none beyond Cf
    missing = {84, 85, 86, 87, 89, 97, 98}
    from pymatgen.core.periodic_table import Element

    have = {Element(s).Z for s in table if s not in ("D", "T")}
    assert have == set(range(1, 99)) - missing
    assert neutron_scattering_length("Mn3+") == B["Mn"]  # ions take the element's b
    assert neutron_scattering_length("D") == B["D"] != neutron_scattering_length("H")
    assert {"H", "Li", "Ti", "V", "Mn"} <= {s for s, v in table.items() if v < 0}  # they flip their pairs' peaks


def test_manganese_oxide_first_peak_points_down_for_neutrons():
    """MnO (rocksalt): Mn-O at a/2 = 2.22 A. b_Mn < 0 < b_O, so the pair weight b_Mn b_O / <b>^2 is
    negative: the peak dips below the -4 pi rho0 r baseline; for X-rays it rises above it."""
    mno = rocksalt("Mn", "O", 4.445)
    rho0 = 8 / mno.volume
    r, gx = pdf(mno, rmax=6.0)
    _, gn = pdf(mno, rmax=6.0, radiation="neutron")
    shell = (r > 2.0) & (r < 2.45)
    excess_x = gx[shell] + 4 * math.pi * rho0 * r[shell]
    excess_n = gn[shell] + 4 * math.pi * rho0 * r[shell]
    assert excess_x[np.abs(excess_x).argmax()] > 0  # an upward peak ...
    assert excess_n[np.abs(excess_n).argmax()] < 0 and excess_n.max() < 0  # ... and an inverted one
    # its area carries the weight: 6 O neighbours, b_Mn b_O / <b>^2 per Mn (and per O), per atom
    mean_b = (B["Mn"] + B["O"]) / 2
    expected = 6 * B["Mn"] * B["O"] / mean_b**2  # integral of r (G + 4 pi rho0 r) over the shell
    _, gn_bare = pdf(mno, rmax=6.0, radiation="neutron", termination=False, qdamp=0.0, uiso=0.002)
    window = (r > 1.9) & (r < 2.55)  # +-5 sigma of the sharper peak
    area = np.sum(r[window] * (gn_bare[window] + 4 * math.pi * rho0 * r[window])) * 0.01
    assert area == pytest.approx(expected, rel=1e-3)
    # the Mn-Mn (and O-O) shell at a/sqrt(2) = 3.14 A stays positive
    second = (r > 2.9) & (r < 3.4)
    assert (gn[second] + 4 * math.pi * rho0 * r[second]).max() > 0


def test_one_element_crystal_is_the_same_for_both_radiations():
    """Ni fcc: w_i = b / <b> = 1 = Z / <Z>, so the normalised G(r) are identical (same peak
    positions, same everything); any slip in the neutron normalisation would show here."""
    ni = Structure.from_spacegroup(225, Lattice.cubic(3.524), ["Ni"], [[0, 0, 0]])
    r, gx = pdf(ni)
    _, gn = pdf(ni, radiation="neutron")
    np.testing.assert_allclose(gn, gx, rtol=0, atol=1e-12 * np.abs(gx).max())
    # and with more than one element they do differ
    _, nacl_x = pdf(rocksalt("Na", "Cl", 5.64))
    _, nacl_n = pdf(rocksalt("Na", "Cl", 5.64), radiation="neutron")
    assert np.abs(nacl_x - nacl_n).max() > 0.05 * np.abs(nacl_x).max()


def test_neutron_pdf_of_rutile_equals_a_direct_pair_sum():
    """TiO2 rutile (b_Ti < 0): every pair's Gaussian summed on the grid with weights
    b_i b_j / <b>^2 (pymatgen's neighbour list, no histogram, no symmetry), Qdamp, no termination."""
    structure = rutile_tio2()
    uiso, qbroad, qdamp, rmax = 0.006, 0.03, 0.04, 12.0
    r, g = pdf(structure, rmax=rmax, qdamp=qdamp, qbroad=qbroad, uiso=uiso, termination=False, radiation="neutron")
    centre, neighbour, _, dist = structure.get_neighbor_list(rmax + 2.0)
    b = np.array([B[site.specie.symbol] for site in structure])
    w = b / b.mean()
    sigma = np.sqrt(2 * uiso * (1 + (qbroad * dist) ** 2))
    gauss = np.exp(-0.5 * ((r[:, None] - dist[None, :]) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    rho0 = len(structure) / structure.volume
    direct = gauss @ (w[centre] * w[neighbour]) / (len(structure) * r) - 4 * math.pi * rho0 * r
    direct *= np.exp(-0.5 * (qdamp * r) ** 2)
    assert np.abs(g - direct).max() < 2e-4 * np.abs(direct).max()
    # the X-ray PDF is another curve (Ti-O up instead of down)
    _, gx = pdf(structure, rmax=rmax, qdamp=qdamp, qbroad=qbroad, uiso=uiso, termination=False)
    first = (r > 1.85) & (r < 2.05)
    assert (gx[first] + 4 * math.pi * rho0 * r[first]).max() > 0 > (g[first] + 4 * math.pi * rho0 * r[first]).min()


def test_deuterium_and_hydrogen_differ_for_neutrons_only():
    lih, lid = rocksalt("Li", "H", 4.08), rocksalt("Li", "D", 4.08)
    assert neutron_scattering_length(next(iter(lid[4].species))) == B["D"]  # pymatgen's H named "D"
    assert np.array_equal(pdf(lih, rmax=8)[1], pdf(lid, rmax=8)[1])
    assert not np.allclose(pdf(lih, rmax=8, radiation="neutron")[1], pdf(lid, rmax=8, radiation="neutron")[1])


def test_null_average_and_missing_lengths_are_refused():
    # Ti0.68Zr0.32: the "null matrix" alloy, <b> ~ 0
    null = Structure(Lattice.cubic(3.3), [{"Ti": 0.68, "Zr": 0.32}], [[0, 0, 0]])
    with pytest.raises(PDFError) as info:
        pdf(null, radiation="neutron")
    assert info.value.reason == "null average scattering length"
    pdf(null)  # fine for X-rays
    samarium = Structure(Lattice.cubic(3.6), ["Sm"], [[0, 0, 0]])  # b_c(Sm) = 0.00 in the table: <b> = <|b|> = 0
    with pytest.raises(PDFError, match="null average scattering length"):
        pdf(samarium, radiation="neutron")
    polonium = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    with pytest.raises(PDFError) as info:
        pdf(polonium, radiation="neutron")
    assert info.value.reason == "no neutron scattering length"
    with pytest.raises(ValueError, match="unknown radiation"):
        pdf(polonium, radiation="electron")
