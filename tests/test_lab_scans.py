"""Measured-like scans for the deploy models: each augmentation moves peaks or intensities as stated,
an ablation switches one off alone, and the front end recovers the δ-profile of a clean scan."""

import dataclasses

import numpy as np
import pytest

from xtalspec.spectra import lab_scans as ls
from xtalspec.spectra.measured import inv_d_from_two_theta
from xtalspec.spectra.radiation import WAVELENGTHS, lorentz_polarisation

INV_D = np.array([0.25, 0.40, 0.55, 0.70, 0.85])
INTENSITY = np.array([1.0, 0.5, 0.8, 0.3, 0.6])
LAM = WAVELENGTHS["CuKa1"]


def neutral(**changes) -> ls.ScanConditions:
    base = ls.ScanConditions(wavelength=LAM, told="CuKa", ka2_wavelength=None, two_theta_range=(5.0, 140.0),
                             step=0.02, fwhm=0.08, eta=0.5)
    return dataclasses.replace(base, **changes)


def sticks(cond, seed=0):
    return ls.stick_pattern(INV_D, INTENSITY, cond, np.random.default_rng(seed))


def test_neutral_sticks_are_bragg_positions_times_lp():
    tt, h = sticks(neutral())
    np.testing.assert_allclose(inv_d_from_two_theta(tt, LAM), INV_D, rtol=1e-12)
    np.testing.assert_allclose(h, INTENSITY * lorentz_polarisation(tt), rtol=1e-12)


def test_zero_shift_moves_every_peak_by_the_offset():
    tt0, h0 = sticks(neutral())
    tt, h = sticks(neutral(zero_shift=0.05))
    np.testing.assert_allclose(tt - tt0, 0.05, atol=1e-12)


def test_strain_scales_d_so_peaks_move_by_minus_eps_tan_theta():
    eps = 0.005
    tt0, _ = sticks(neutral())
    tt, _ = sticks(neutral(strain=eps))
    np.testing.assert_allclose(1.0 / inv_d_from_two_theta(tt, LAM), (1 + eps) / INV_D, rtol=1e-12)
    expected = -2.0 * np.degrees(eps * np.tan(np.radians(tt0 / 2)))  # first order
    np.testing.assert_allclose(tt - tt0, expected, rtol=0.02)
    assert (tt < tt0).all()


def test_kalpha2_adds_a_half_intensity_copy_at_the_ka2_wavelength():
    tt1, h1 = sticks(neutral())
    tt, h = sticks(neutral(ka2_wavelength=WAVELENGTHS["CuKa2"]))
    assert len(tt) == 2 * len(tt1)
    tt2, h2 = tt[len(tt1):], h[len(tt1):]
    np.testing.assert_allclose(inv_d_from_two_theta(tt2, WAVELENGTHS["CuKa2"]), INV_D, rtol=1e-12)
    assert (tt2 > tt1).all()
    np.testing.assert_allclose(h2 / h1, ls.KA2_RATIO * lorentz_polarisation(tt2) / lorentz_polarisation(tt1), rtol=1e-12)


def test_march_dollase_keeps_the_mean_and_favours_the_texture_axis():
    cos_alpha = (np.arange(200_000) + 0.5) / 200_000  # uniform on the sphere
    for r in (0.6, 1.0, 1.6):
        assert ls.march_dollase(r, cos_alpha).mean() == pytest.approx(1.0, rel=1e-3)
    assert ls.march_dollase(0.6, 1.0) > 1 > ls.march_dollase(0.6, 0.0)
    np.testing.assert_allclose(ls.march_dollase(1.0, cos_alpha[:10]), 1.0)
    _, h0 = sticks(neutral())
    _, h = sticks(neutral(march_r=0.6))
    assert not np.allclose(h, h0)


def test_intensity_drift_is_exponential_in_sin_theta():
    tt0, h0 = sticks(neutral())
    tt, h = sticks(neutral(drift=1.0))
    mid = np.sin(np.radians((5.0 + 140.0) / 4))
    np.testing.assert_allclose(h / h0, np.exp(np.sin(np.radians(tt / 2)) - mid), rtol=1e-12)


def test_scan_range_drops_peaks_outside_it():
    tt, _ = sticks(neutral(two_theta_range=(30.0, 80.0)))
    full, _ = sticks(neutral())
    assert set(np.round(tt, 6)) == {t for t in np.round(full, 6) if 30 < t < 80}


def _fwhm(axis, scan, centre):
    window = np.abs(axis - centre) < 1.0
    x, y = axis[window], scan[window]
    half = y.max() / 2
    above = x[y >= half]
    return above.max() - above.min()


def test_width_grows_as_one_over_cos_theta():
    cond = neutral(fwhm=0.1, step=0.002, two_theta_range=(20.0, 140.0))
    axis, scan = ls.render_scan(INV_D[:1], INTENSITY[:1], cond, np.random.default_rng(0))
    centre = axis[np.argmax(scan)]
    edges = np.linspace(20.0, 140.0, 4)
    segment = np.searchsorted(edges, centre) - 1
    expected = 0.1 / np.cos(np.radians((edges[segment] + edges[segment + 1]) / 4))
    assert _fwhm(axis, scan, centre) == pytest.approx(expected, abs=0.006)


def test_background_adds_a_positive_smooth_curve_and_noise_is_poisson():
    cond = neutral()
    axis, clean = ls.render_scan(INV_D, INTENSITY, cond, np.random.default_rng(1))
    _, with_bg = ls.render_scan(INV_D, INTENSITY, dataclasses.replace(cond, background=0.3,
                                                                       background_shape=(0.5, 0.5, 0.5, 0.5)),
                                np.random.default_rng(1))
    added = with_bg - clean
    assert added.min() > 0 and added.max() == pytest.approx(0.3)
    _, noisy = ls.render_scan(INV_D, INTENSITY, dataclasses.replace(cond, counts=1e4), np.random.default_rng(1))
    assert np.array_equal(noisy, np.round(noisy)) and noisy.max() > 5e3
    far = np.abs(axis - axis[np.argmax(clean)]) < 0.01
    assert noisy[far].max() == pytest.approx(1e4, rel=0.05)


def test_disabling_one_augmentation_changes_only_that_one():
    full = ls.draw_conditions(np.random.default_rng(7))
    for name, field in [("zero_shift", "zero_shift"), ("strain", "strain"), ("preferred_orientation", "march_r"),
                        ("intensity_drift", "drift"), ("background", "background"), ("noise", "counts")]:
        off = ls.draw_conditions(np.random.default_rng(7), disabled=(name,))
        changed = {f.name for f in dataclasses.fields(full) if getattr(full, f.name) != getattr(off, f.name)}
        assert changed == {field}, name
    with pytest.raises(ValueError, match="unknown augmentations"):
        ls.draw_conditions(np.random.default_rng(0), disabled=("colour",))


def test_wavelength_draws_tubes_and_synchrotron_or_only_cu_when_off():
    drawn = [ls.draw_conditions(np.random.default_rng(s)) for s in range(300)]
    told = {c.told for c in drawn}
    assert {"CuKa", "MoKa", "CoKa"} <= told and any(t[0].isdigit() for t in told)
    assert all(c.ka2_wavelength is None for c in drawn if c.told[0].isdigit())
    off = [ls.draw_conditions(np.random.default_rng(s), disabled=("wavelength",)) for s in range(50)]
    assert {c.told for c in off} == {"CuKa"} and all(c.wavelength == LAM for c in off)


def test_front_end_of_a_clean_scan_recovers_the_delta_profile_peaks():
    bins = ((INV_D - 0.1131) / ((1.0625 - 0.1131) / 10001)).astype(int)
    cond = neutral(fwhm=0.05, step=0.01)
    axis, scan = ls.render_scan(ls.bin_centres(bins), INTENSITY, cond, np.random.default_rng(0))
    index, values = ls.front_end_profile(axis, scan, f"{LAM}")
    # every stick comes back within 2 bins; the front end reads peak heights, so its intensities are
    # the δ-profile's divided by the line width (wider at high angle): LP is divided out, width is not
    tt, _ = ls.stick_pattern(ls.bin_centres(bins), INTENSITY, cond, np.random.default_rng(0))
    edges = np.linspace(*cond.two_theta_range, 4)
    segment = np.clip(np.searchsorted(edges, tt) - 1, 0, 2)
    width = cond.fwhm / np.cos(np.radians((edges[segment] + edges[segment + 1]) / 4))
    expected = INTENSITY / width
    for b, i in zip(bins, expected / expected.max()):
        near = np.abs(index - b) <= 2
        assert near.any(), b
        assert values[near].sum() == pytest.approx(i, rel=0.05)
