"""Laboratory powder pattern (2 theta, Lorentz-polarisation, peak shapes) from the delta-profile engine.

Sticks are checked against pymatgen's XRDCalculator on 10 small CoRE MOF structures
(:data:`xtalspec.bench.powder.SMALL_MOF_IDS`, core-mof package, offline); the broadening against
analytic properties (unit area, peak maximum at the stick, cell-choice invariance).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xtalspec.bench.powder import SMALL_MOF_IDS, TWO_THETA, WAVELENGTH, small_mofs
from xtalspec.spectra.form_factors import form_factor_coefficients, form_factors
from xtalspec.spectra.xrd import (
    B_ISO,
    PEAK_MERGE_TOL,
    PROFILE_CUTOFF,
    broaden,
    peak_shape,
    powder_pattern,
    powder_peaks,
    powder_two_theta,
    reflections,
)

SIMPLE_CUBIC = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # 100 at 29.75, 110 at 42.59 deg (Cu Ka)


@pytest.fixture(scope="module")
def mofs() -> dict[str, Structure]:
    out = small_mofs()
    assert list(out) == list(SMALL_MOF_IDS)
    assert all(len(s) < 150 for s in out.values())
    return out


@pytest.fixture(scope="module")
def pymatgen_sticks(mofs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    calculator = XRDCalculator(wavelength=WAVELENGTH)  # its "CuKa" is this same 1.54184 A mean
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ident, structure in mofs.items():
            pattern = calculator.get_pattern(structure, scaled=False, two_theta_range=TWO_THETA)
            out[ident] = np.array(pattern.x), np.array(pattern.y)
    return out


def _merge(x, y, tol=PEAK_MERGE_TOL):
    """pymatgen merges only reflections within 1e-5 deg; merge its sticks like ours (gap < tol)."""
    groups: list[list[int]] = []
    for i in np.argsort(x):
        if groups and x[i] - x[groups[-1][-1]] <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    return np.array([x[g].mean() for g in groups]), np.array([y[g].sum() for g in groups])


def _lp(two_theta_deg):
    theta = np.radians(two_theta_deg) / 2
    return (1 + np.cos(2 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


# ------------------------------------------------------------------ sticks against pymatgen


def test_pymatgen_intensity_includes_lorentz_polarisation():
    """pymatgen's unscaled intensity is sum |F|^2 * LP: divided by our sum |F|^2 (no LP) it is LP."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    pattern = XRDCalculator(wavelength=WAVELENGTH).get_pattern(SIMPLE_CUBIC, scaled=False, two_theta_range=(5, 90))
    x, y = np.array(pattern.x), np.array(pattern.y)
    inv_d, f2 = reflections(SIMPLE_CUBIC, 2 / WAVELENGTH, b_iso=0.0)
    tt = np.degrees(2 * np.arcsin(WAVELENGTH * inv_d / 2))
    per_peak = np.array([f2[np.abs(tt - t) < 1e-6].sum() for t in x])
    assert len(x) == 6  # 100 110 111 200 210 211
    ratio = y / per_peak
    np.testing.assert_allclose(ratio, _lp(x), rtol=0.01)  # Cu form factors of the two tables: < 0.3 %
    assert ratio.max() / ratio.min() > 3  # and LP does vary, so this is not a constant scale


def test_simple_cubic_sticks_are_analytic():
    """Positions from Bragg's law, intensity = multiplicity f^2 exp(-2 B s^2) LP."""
    x, y = powder_peaks(SIMPLE_CUBIC, "CuKa", (5, 90))
    hkl_sq, multiplicity = np.array([1, 2, 3, 4, 5, 6]), np.array([6, 12, 8, 6, 24, 24])
    d = 3.0 / np.sqrt(hkl_sq)
    expected_tt = np.degrees(2 * np.arcsin(WAVELENGTH / (2 * d)))
    np.testing.assert_allclose(x, expected_tt, atol=1e-9)
    s = 1 / (2 * d)
    f = form_factors(form_factor_coefficients(["Cu"]), s)[0]
    expected = multiplicity * (f * np.exp(-B_ISO * s * s)) ** 2 * _lp(expected_tt)
    np.testing.assert_allclose(y, expected, rtol=1e-10)


@pytest.mark.parametrize("ident", SMALL_MOF_IDS)
def test_sticks_match_pymatgen(mofs, pymatgen_sticks, ident):
    x, y = powder_peaks(mofs[ident], WAVELENGTH, TWO_THETA, b_iso=0.0)  # pymatgen: no Debye-Waller
    px, py = pymatgen_sticks[ident]
    assert x.min() >= TWO_THETA[0] and x.max() <= TWO_THETA[1] and np.all(np.diff(x) > PEAK_MERGE_TOL)
    # positions: every peak above 1 % on either side has a partner on the other within 0.001 deg
    # (the brief asks 0.01; the largest seen is 5e-5, from merging at 1e-4 vs pymatgen's 1e-5)
    for mine, other, rel in ((px, x, py / py.max()), (x, px, y / y.max())):
        strong = mine[rel > 0.01]
        assert len(strong) >= 5
        assert np.abs(strong[:, None] - other[None, :]).min(axis=1).max() < 1e-3
    # absolute scale: the same sum |F|^2 LP convention (strongest peaks within the form-factor tolerance)
    mx, my = _merge(px, py)
    assert y.max() / my.max() == pytest.approx(1.0, rel=0.1)
    # relative intensities of the 10 strongest pymatgen peaks (after merging its near-coincident
    # reflections as we do). Tolerance: pymatgen's own 4-Gaussian form factors differ from the
    # International Tables fits by < 0.7 % for H-Zn, Mo, U, but by up to 2.9 % for La at
    # s < 0.28 1/A, i.e. up to ~6 % in |F|^2; largest seen: 4.9 % relative / 0.010 absolute (ABEXEM, La).
    rel_theirs, rel_ours = my / my.max(), y / y.max()
    for k in np.argsort(my)[::-1][:10]:
        j = np.argmin(np.abs(x - mx[k]))
        assert abs(x[j] - mx[k]) < 1e-3, (ident, mx[k])
        diff = abs(rel_ours[j] - rel_theirs[k])
        assert diff < 0.02 and diff < 0.10 * rel_theirs[k], (ident, mx[k], rel_ours[j], rel_theirs[k])


def test_wavelength_names_and_numbers():
    by_name = powder_peaks(SIMPLE_CUBIC, "CuKa")
    np.testing.assert_array_equal(by_name[0], powder_peaks(SIMPLE_CUBIC, 1.54184)[0])
    np.testing.assert_array_equal(by_name[0], powder_peaks(SIMPLE_CUBIC, "1.54184 A")[0])
    mo = powder_peaks(SIMPLE_CUBIC, "MoKa", (5, 50))[0]
    assert mo[0] == pytest.approx(math.degrees(2 * math.asin(0.71073 / 6.0)), abs=1e-3)
    with pytest.raises(ValueError):
        powder_peaks(SIMPLE_CUBIC, "FeKz")
    with pytest.raises(ValueError):
        powder_peaks(SIMPLE_CUBIC, "CuKa", (50, 5))


# ------------------------------------------------------------------ the broadened pattern


@pytest.mark.parametrize("shape", ["pseudo-voigt", "gaussian", "lorentzian"])
def test_peak_shape_has_unit_area_and_fwhm(shape):
    fwhm = 0.1
    x = np.linspace(-1.2, 1.2, 240001)
    g = peak_shape(x, fwhm, shape)
    assert np.trapezoid(g, x) == pytest.approx(1.0, abs=1e-4)
    assert peak_shape(fwhm / 2, fwhm, shape) == pytest.approx(0.5 * peak_shape(0.0, fwhm, shape))
    assert g[np.abs(x) > PROFILE_CUTOFF * fwhm].max() == 0.0
    with pytest.raises(ValueError):
        peak_shape(x, fwhm, "voigt")


@pytest.mark.parametrize("shape", ["pseudo-voigt", "gaussian", "lorentzian"])
@pytest.mark.parametrize("grid", [(5, 50, 2251), (3.3, 61.7, 1777)])
def test_broaden_is_the_sum_of_peak_shapes(shape, grid):
    """The vectorised accumulation (windows, truncated Gaussian part) against a plain dense sum."""
    rng = np.random.default_rng(0)
    axis = powder_two_theta(grid[:2], grid[2])
    positions = np.concatenate(([4.3, 5.0, 27.513, 49.99, 50.7], rng.uniform(4, 51, 300)))  # incl. edge tails
    intensities = rng.uniform(0.1, 10, len(positions))
    dense = (intensities[:, None] * peak_shape(axis[None, :] - positions[:, None], 0.1, shape)).sum(axis=0)
    result = broaden(positions, intensities, axis, 0.1, shape)
    np.testing.assert_allclose(result, dense, rtol=0, atol=1e-12 * dense.max())


@pytest.mark.parametrize("shape", ["pseudo-voigt", "gaussian", "lorentzian"])
def test_isolated_peak_integrals_equal_stick_intensities(shape):
    fwhm = 0.1
    axis = powder_two_theta((5, 50), 2251)
    pattern = powder_pattern(SIMPLE_CUBIC, "CuKa", (5, 50), 2251, fwhm, shape, normalise=False)
    x, y = powder_peaks(SIMPLE_CUBIC, "CuKa", (5, 50))
    assert len(x) == 2
    for p, intensity in zip(x, y):
        window = np.abs(axis - p) <= PROFILE_CUTOFF * fwhm + 0.1
        # 5 samples per FWHM; the truncated Lorentzian's step at +-10 FWHM costs ~3e-4 of the area
        assert np.trapezoid(pattern[window], axis[window]) == pytest.approx(intensity, rel=1e-3)


def test_isolated_mof_peak_integrals(mofs):
    """Every MOF stick with no neighbour within 2 cut-offs: area under its peak = stick intensity."""
    fwhm, cut = 0.1, PROFILE_CUTOFF * 0.1
    axis = powder_two_theta()
    checked = 0
    for structure in mofs.values():
        pattern = powder_pattern(structure, normalise=False)
        x, y = powder_peaks(structure, "CuKa", (TWO_THETA[0] - cut, TWO_THETA[1] + cut))
        gaps = np.diff(x)
        isolated = np.concatenate(([True], gaps > 2 * cut)) & np.concatenate((gaps > 2 * cut, [True]))
        isolated &= (x > TWO_THETA[0] + cut) & (x < TWO_THETA[1] - cut)
        for p, intensity in zip(x[isolated], y[isolated]):
            window = np.abs(axis - p) <= cut + 0.05
            assert np.trapezoid(pattern[window], axis[window]) == pytest.approx(intensity, rel=1e-3)
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("centre", [29.75, 29.757])
def test_single_peak_maximum_sits_at_the_stick(centre):
    x, _ = powder_peaks(SIMPLE_CUBIC, "CuKa", (25, 35))
    assert len(x) == 1 and x[0] == pytest.approx(math.degrees(2 * math.asin(WAVELENGTH / 6.0)), abs=1e-9)
    low = 25.0 + (x[0] - centre)  # the axis has points at 25.0 + 0.01 k + (x - centre): on / off the stick
    axis = powder_two_theta((low, low + 10), 1001)
    pattern = powder_pattern(SIMPLE_CUBIC, "CuKa", (low, low + 10), 1001, fwhm=0.2)
    top = np.argmax(pattern)
    assert pattern.max() == 1.0 and abs(axis[top] - x[0]) <= 0.005 + 1e-12
    # symmetric about the stick: mirror samples through x[0] by interpolation
    near = np.abs(axis - x[0]) < 1.0
    np.testing.assert_allclose(pattern[near], np.interp(2 * x[0] - axis[near], axis, pattern), atol=2e-3)


def test_pattern_is_invariant_to_the_cell_choice(mofs):
    conventional = mofs["ABESUX_clean"]  # Cmc2_1, C-centred cell of 100 sites
    primitive = conventional.get_primitive_structure()
    assert len(primitive) == 50
    reference = powder_pattern(conventional)
    np.testing.assert_allclose(powder_pattern(primitive), reference, atol=1e-8, rtol=0)
    supercell = mofs["ADAXEK_clean"] * (1, 2, 1)
    np.testing.assert_allclose(powder_pattern(supercell), powder_pattern(mofs["ADAXEK_clean"]), atol=1e-8, rtol=0)


def test_pattern_axis_normalisation_and_debye_waller(mofs):
    structure = mofs["ADAXEK_clean"]
    pattern = powder_pattern(structure)
    assert pattern.shape == (2251,) and pattern.max() == 1.0 and pattern.min() >= 0.0
    np.testing.assert_array_equal(powder_two_theta(), np.linspace(5, 50, 2251))
    cold = powder_peaks(structure, b_iso=0.0)
    warm = powder_peaks(structure)
    np.testing.assert_array_equal(cold[0], warm[0])
    s2 = (np.sin(np.radians(warm[0] / 2)) / WAVELENGTH) ** 2
    np.testing.assert_allclose(warm[1], cold[1] * np.exp(-2 * B_ISO * s2), rtol=1e-9)


def test_bench_reports_both_ratios(mofs):
    from xtalspec.bench.powder import bench_powder_vs_pymatgen, markdown

    rows = bench_powder_vs_pymatgen({"ADAXEK_clean": mofs["ADAXEK_clean"]}, repeats=1)
    assert rows[0]["ms_sticks"] > 0 and rows[0]["ratio_pattern"] > 0
    assert rows[0]["ms_sticks_blas_defaults"] > 0 and rows[0]["ratio_pattern_blas_defaults"] > 0
    assert "median ratio" in markdown(rows)
