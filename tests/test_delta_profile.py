"""The paper's delta-function XRD profile (xtalspec.spectra): form factors, positions, intensities, bins."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from pymatgen.core import Element, Lattice, Species, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xtalspec.spectra import (
    BIN_EDGES,
    INV_D_MAX,
    INV_D_MIN,
    N_BINS,
    delta_profile,
    delta_profile_sparse,
    delta_profiles,
    form_factor_coefficients,
    form_factors,
    from_sparse,
    reflections,
)
from xtalspec.spectra.form_factors import coefficient_table, element_symbol
from xtalspec.spectra.xrd import BIN_WIDTH, bin_profile

CU_KA = 1.54184  # pymatgen's WAVELENGTHS["CuKa"]
B = 2.0
AMCSD_IDS = ["0004448", "0005842", "0009652", "0010513", "0012953"]  # C2/c, I-42m (disordered), P2_13 (disordered), Pnma, P-3m1 (with H)

# ITC Vol. C Table 6.1.1.4 coefficients typed in here (a1 b1 a2 b2 a3 b3 a4 b4 c), independent of the CSV
ITC = {
    "Na": (4.7626, 3.285, 3.1736, 8.8422, 1.2674, 0.3136, 1.1128, 129.424, 0.676),
    "K": (8.2186, 12.7949, 7.4398, 0.7748, 1.0519, 213.187, 0.8659, 41.6841, 1.4228),
    "Cl": (11.4604, 0.0104, 7.1964, 1.1662, 6.2556, 18.5194, 1.6455, 47.7784, -9.5574),
}


def f_itc(symbol: str, s: float) -> float:
    p = ITC[symbol]
    return sum(p[2 * i] * np.exp(-p[2 * i + 1] * s * s) for i in range(4)) + p[8]


def bin_of(inv_d: float) -> int:
    return int(np.floor((inv_d - INV_D_MIN) / BIN_WIDTH))


def rocksalt(a: float, cation, anion) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


NACL = rocksalt(5.6402, "Na", "Cl")
RUTILE = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.5937, 2.9587), ["Ti", "O"], [[0, 0, 0], [0.3053, 0.3053, 0]])
MONOCLINIC = Structure(
    Lattice.monoclinic(5.3, 7.1, 6.2, 104.0),
    ["Fe", "O", "O", {"Mg": 0.7, "Fe": 0.3}, "Si"],
    [[0.1, 0.2, 0.3], [0.37, 0.11, 0.72], [0.61, 0.43, 0.05], [0.25, 0.8, 0.5], [0.83, 0.57, 0.29]],
)
TRICLINIC = Structure(
    Lattice.from_parameters(4.9, 6.1, 7.4, 68.0, 103.0, 121.0),
    ["Ba", "O", "O", "S", {"Na": 0.5, "K": 0.25}],
    [[0.05, 0.12, 0.21], [0.44, 0.31, 0.68], [0.72, 0.55, 0.14], [0.27, 0.83, 0.46], [0.9, 0.66, 0.77]],
)


@pytest.fixture(scope="module")
def amcsd_structures() -> list[Structure]:
    from xtalspec.structures.cleaning import CleaningSettings, ParsedCIF, parse_and_check
    from xtalspec.structures.sources.amcsd import AMCSDSource

    structures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in AMCSDSource().iter_entries(AMCSD_IDS):
            parsed = parse_and_check(entry.data, CleaningSettings())
            assert isinstance(parsed, ParsedCIF), (entry, parsed)
            structures.append(parsed.structure)
    return structures


# ---------------------------------------------------------------- form factors


def test_form_factor_table_covers_z_1_to_97():
    table = coefficient_table()
    assert [Element(sym).Z for sym in table] == list(range(1, 98))


@pytest.mark.parametrize("symbols", [["O", "Si", "Fe", "Ba", "U"], list(coefficient_table())])
def test_form_factors_match_waasmaier_kirfel(symbols):
    """ITC 4-Gaussian fit vs xraydb's Waasmaier-Kirfel 5-Gaussian fit of the same tabulated f0.

    Tolerance 1 % of f0 for s <= 0.6 1/A (the two fits differ by <= 0.25 % over all 97 elements).
    """
    xraydb = pytest.importorskip("xraydb")
    s = np.linspace(0.0, 0.6, 13)
    ours = form_factors(form_factor_coefficients(symbols), s)
    assert ours.shape == (len(symbols), len(s))
    reference = np.array([xraydb.f0(sym, s) for sym in symbols])  # xraydb's q is sin(theta)/lambda
    np.testing.assert_allclose(ours, reference, rtol=0.01)


def test_form_factor_at_zero_is_z():
    symbols = ["H", "C", "O", "Na", "Si", "Cl", "Fe", "Br", "Ba", "Pb", "U", "Bk"]
    f0 = form_factors(form_factor_coefficients(symbols), 0.0)
    np.testing.assert_allclose(f0, [Element(s).Z for s in symbols], rtol=0.01)


def test_ions_and_isotopes_use_the_neutral_element():
    assert [element_symbol(x) for x in (Species("Fe", 3), Element("O"), "Cl-", "O2-", "D")] == ["Fe", "O", "Cl", "O", "H"]
    with pytest.raises(KeyError):
        form_factor_coefficients(["Cf"])


# ---------------------------------------------------------------- bins and basic shape


def test_bins_and_profile_shape():
    assert BIN_EDGES.shape == (N_BINS + 1,) == (10002,)
    assert BIN_EDGES[0] == INV_D_MIN == 0.1131 and BIN_EDGES[-1] == INV_D_MAX == 1.0625
    profile = delta_profile(NACL)
    assert profile.shape == (10001,) and profile.dtype == np.float64
    assert profile.max() == 1.0 and profile.min() >= 0.0


def test_peak_at_known_inv_d_lands_in_expected_bin():
    k = 1234
    a = 1.0 / (INV_D_MIN + (k + 0.5) * BIN_WIDTH)  # simple cubic: 100 at the centre of bin k
    profile = delta_profile(Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]]))
    sums = {h * h + k * k + l * l for h, k, l in itertools.product(range(10), repeat=3)}  # h^2+k^2+l^2
    expected = {bin_of(np.sqrt(n) / a) for n in sums if INV_D_MIN < np.sqrt(n) / a < INV_D_MAX}
    assert k in expected and set(np.flatnonzero(profile)) == expected
    # hand-made reflections: edges go to the bin above, out-of-range values are dropped
    inv_d = np.array([BIN_EDGES[10] + 1e-9, BIN_EDGES[11] - 1e-9, INV_D_MIN, INV_D_MAX, 0.05, 2.0])
    binned = bin_profile(inv_d, np.array([1.0, 2.0, 5.0, 5.0, 5.0, 5.0]))
    assert np.flatnonzero(binned).tolist() == [10] and binned[10] == 1.0


def test_first_reflection_below_range_is_not_counted():
    a = 10.0  # 1/d(100) = 0.1 < 0.1131; 110 at 0.1414 is the first counted
    profile = delta_profile(Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]]))
    assert np.flatnonzero(profile)[0] == bin_of(np.sqrt(2) / a)


# ---------------------------------------------------------------- positions vs pymatgen


def pymatgen_peaks(structure) -> tuple[np.ndarray, np.ndarray]:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pattern = XRDCalculator("CuKa").get_pattern(structure, two_theta_range=(10, 110))
    inv_d = 2.0 * np.sin(np.radians(pattern.x / 2.0)) / CU_KA
    keep = (inv_d > INV_D_MIN) & (inv_d < INV_D_MAX)
    return inv_d[keep], pattern.y[keep] / pattern.y[keep].max()


def assert_positions_agree(structure, pymatgen_min=0.005, ours_min=0.01):
    profile = delta_profile(structure)
    inv_d, rel = pymatgen_peaks(structure)
    theirs_all = np.array([bin_of(x) for x in inv_d])
    ours_all = np.flatnonzero(profile)
    for b in theirs_all[rel > pymatgen_min]:  # pymatgen's visible peaks exist in ours
        assert np.abs(ours_all - b).min() <= 1, f"pymatgen peak in bin {b} missing"
    for b in np.flatnonzero(profile > ours_min):  # our strong peaks exist in pymatgen's
        assert np.abs(theirs_all - b).min() <= 1, f"our peak in bin {b} missing from pymatgen"
    assert (rel > pymatgen_min).sum() >= 3


@pytest.mark.parametrize("structure", [NACL, RUTILE, MONOCLINIC, TRICLINIC], ids=["NaCl", "rutile", "monoclinic", "triclinic"])
def test_positions_agree_with_pymatgen(structure):
    assert_positions_agree(structure)


def test_positions_agree_with_pymatgen_amcsd(amcsd_structures):
    for structure in amcsd_structures:
        assert_positions_agree(structure)


# ---------------------------------------------------------------- cell independence and completeness


def test_conventional_and_primitive_cells_give_the_same_profile(amcsd_structures):
    for structure in [NACL, RUTILE, MONOCLINIC, *amcsd_structures]:
        primitive = SpacegroupAnalyzer(structure).get_primitive_standard_structure()
        if structure is NACL:
            assert len(primitive) == 2
        np.testing.assert_allclose(delta_profile(primitive), delta_profile(structure), atol=1e-9)


def test_supercell_gives_the_same_profile():
    for structure in (RUTILE, TRICLINIC):
        np.testing.assert_allclose(delta_profile(structure * (2, 1, 3)), delta_profile(structure), atol=1e-9)


def test_reflections_complete_for_an_oblique_cell():
    """Brute force over a generous hkl box with a per-site loop (no separable phases, no Friedel halving)."""
    structure = Structure(Lattice.from_parameters(3.1, 4.3, 5.2, 58.0, 117.0, 64.0), ["Fe", {"O": 0.6, "F": 0.4}, "Si"],
                          [[0.0, 0.1, 0.2], [0.4, 0.7, 0.35], [0.8, 0.25, 0.9]])
    lattice, recip = structure.lattice.matrix, np.linalg.inv(structure.lattice.matrix).T
    span = [range(-m, m + 1) for m in np.ceil(np.linalg.norm(lattice, axis=1) * 2 * INV_D_MAX).astype(int)]
    hkl = np.array(list(itertools.product(*span)))
    inv_d = np.linalg.norm(hkl @ recip, axis=1)
    keep = (inv_d > INV_D_MIN) & (inv_d < INV_D_MAX)
    hkl, inv_d = hkl[keep], inv_d[keep]
    s = inv_d / 2
    amplitude = np.zeros(len(s), dtype=complex)
    for site in structure:
        for species, occ in site.species.items():
            f = form_factors(form_factor_coefficients([species]), s)[0]
            amplitude += occ * f * np.exp(-B * s * s) * np.exp(2j * np.pi * hkl @ site.frac_coords)
    ours_d, ours_i = reflections(structure, INV_D_MAX, INV_D_MIN)
    np.testing.assert_allclose(ours_i.sum(), (np.abs(amplitude) ** 2).sum(), rtol=1e-10)
    np.testing.assert_allclose(bin_profile(ours_d, ours_i), bin_profile(inv_d, np.abs(amplitude) ** 2), atol=1e-12)


# ---------------------------------------------------------------- intensities


@pytest.mark.parametrize("a, absent, present", [(3.615, [(1, 0, 0), (1, 1, 0), (2, 1, 0)], [(1, 1, 1), (2, 0, 0), (2, 2, 0)]),
                                                (4.0495, [(1, 0, 0), (1, 1, 0)], [(1, 1, 1), (3, 1, 1)])], ids=["Cu", "Al"])
def test_fcc_systematic_absences(a, absent, present):
    structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Cu"], [[0, 0, 0]])
    assert len(structure) == 4
    profile = delta_profile(structure)
    for hkl in absent:
        b = bin_of(np.linalg.norm(hkl) / a)
        assert profile[b - 1 : b + 2].max() == 0.0, hkl
    for hkl in present:
        assert profile[bin_of(np.linalg.norm(hkl) / a)] > 0.05, hkl


def test_bcc_systematic_absences():
    a = 2.8665
    profile = delta_profile(Structure.from_spacegroup("Im-3m", Lattice.cubic(a), ["Fe"], [[0, 0, 0]]))
    for hkl, ok in [((1, 0, 0), False), ((1, 1, 0), True), ((1, 1, 1), False), ((2, 0, 0), True), ((2, 1, 0), False), ((2, 1, 1), True)]:
        assert (profile[bin_of(np.linalg.norm(hkl) / a)] > 0) == ok, hkl


def rocksalt_ratio_111_200(a: float, f_cation, anion: str) -> float:
    """I(111)/I(200) in closed form: F = 4 (f_M -/+ f_X) exp(-B s^2); multiplicities 8 and 6."""
    s111, s200 = np.sqrt(3) / (2 * a), 1.0 / a
    i111 = 8 * (4 * (f_cation(s111) - f_itc(anion, s111)) * np.exp(-B * s111**2)) ** 2
    i200 = 6 * (4 * (f_cation(s200) + f_itc(anion, s200)) * np.exp(-B * s200**2)) ** 2
    return i111 / i200


def test_nacl_intensity_ratio_by_hand():
    a = 5.6402
    profile = delta_profile(NACL)
    b111, b200 = bin_of(np.sqrt(3) / a), bin_of(2 / a)
    assert profile[bin_of(np.sqrt(8) / a)] == 1.0  # 220 (12 reflections) is the strongest without Lorentz-polarisation
    expected = rocksalt_ratio_111_200(a, lambda s: f_itc("Na", s), "Cl")
    assert 0.01 < expected < 0.2
    np.testing.assert_allclose(profile[b111] / profile[b200], expected, rtol=1e-6)


@pytest.mark.parametrize("site, f_cation", [
    ({"Na": 0.5, "K": 0.5}, lambda s: 0.5 * f_itc("Na", s) + 0.5 * f_itc("K", s)),
    ({"Na": 0.5}, lambda s: 0.5 * f_itc("Na", s)),
], ids=["Na0.5K0.5", "Na0.5-vacancy"])
def test_partial_occupancy_is_a_virtual_atom(site, f_cation):
    a = 5.9
    structure = rocksalt(a, site, "Cl")
    inv_d, intensity = reflections(structure, INV_D_MAX, INV_D_MIN)
    i111 = intensity[np.isclose(inv_d, np.sqrt(3) / a)].sum()
    i200 = intensity[np.isclose(inv_d, 2 / a)].sum()
    np.testing.assert_allclose(i111 / i200, rocksalt_ratio_111_200(a, f_cation, "Cl"), rtol=1e-6)
    s200 = 1.0 / a  # absolute |F(200)|^2 summed over its 6 reflections
    f200 = 4 * (f_cation(s200) + f_itc("Cl", s200)) * np.exp(-B * s200**2)
    np.testing.assert_allclose(i200, 6 * f200**2, rtol=1e-4)  # 1e-4: ITC coefficients typed with fewer digits


# ---------------------------------------------------------------- batch and sparse forms


def test_batch_equals_single_and_sparse_round_trips():
    structures = [NACL, RUTILE, MONOCLINIC, TRICLINIC]
    batch = delta_profiles(structures)
    assert batch.shape == (4, N_BINS)
    for row, structure in zip(batch, structures):
        single = delta_profile(structure)
        np.testing.assert_array_equal(row, single)
        indices, values = delta_profile_sparse(structure)
        assert indices.dtype == np.int32 and values.dtype == np.float32
        assert np.all(np.diff(indices) > 0) and np.all(values > 0)
        assert len(indices) == np.count_nonzero(single)
        np.testing.assert_allclose(from_sparse(indices, values), single, rtol=1e-7, atol=0)


def test_bench_reports_both_timings():
    from xtalspec.bench.xrd import bench_delta_vs_pymatgen

    result = bench_delta_vs_pymatgen([NACL, RUTILE], repeats=1)
    assert result["n_structures"] == 2 and result["ms_per_structure_delta"] > 0 and result["ms_per_structure_pymatgen"] > 0
    assert result["speedup"] == pytest.approx(result["ms_per_structure_pymatgen"] / result["ms_per_structure_delta"])
