"""The "ideal" delta-function XRD profile of Ozaki, Ishida & Kiyobayashi (J. Appl. Cryst. 2025).

Every reflection hkl with 0.1131 < 1/d < 1.0625 1/Angstrom contributes I = |F|^2, with

    F_hkl = sum_j g_j f_j(s) exp(-B s^2) exp(2 pi i (h u_j + k v_j + l w_j)),   s = 1/(2d), B = 2.0 A^2

(g_j occupancy, f_j the International Tables form factor; a site with several species is a
"virtual atom" whose f is the occupancy-weighted sum). Intensities are accumulated into 10001
equal 1/d bins and the profile is scaled to a maximum of 1. No wavelength, no Lorentz-polarisation,
no line shape. Every hkl is counted, so multiplicity, extinctions and overlaps come out by
themselves, and any cell of the crystal (conventional, primitive, supercell) gives the same profile.

The structure-factor core, :func:`reflections`, is independent of the binning so that a 2-theta
powder pattern (with wavelength and Lorentz-polarisation) reuses it: :func:`powder_peaks` (sticks)
and :func:`powder_pattern` (broadened onto :func:`powder_two_theta`), at the end of this module.

How it is fast: exp(2 pi i h.x) = exp(2 pi i h u) exp(2 pi i k v) exp(2 pi i l w), so the phase
factors are built per index along each axis, and for every element the sum over its atoms for a
block of (h, k) rows and all l is one complex matrix product. Friedel mates have equal intensity
(real form factors), so only h >= 0 is computed and h > 0 rows count twice. Those products are
small, so :func:`reflections` runs with one BLAS thread (:mod:`xtalspec.utils.threads`) whatever
the caller's setting.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..utils.threads import single_blas_thread
from .form_factors import element_symbol, form_factor_coefficients, form_factors
from .radiation import lorentz_polarisation_from_trig, parse_wavelength

INV_D_MIN = 0.1131  # 1/Angstrom (2 theta = 10 deg for Cu K-alpha)
INV_D_MAX = 1.0625  # 1/Angstrom (2 theta = 110 deg for Cu K-alpha)
N_BINS = 10001
BIN_EDGES = np.linspace(INV_D_MIN, INV_D_MAX, N_BINS + 1)
BIN_WIDTH = (INV_D_MAX - INV_D_MIN) / N_BINS
B_ISO = 2.0  # Angstrom^2, Debye-Waller T = exp(-B s^2) on F
ZERO_TOL = 1e-12  # normalised bins below this are round-off from exact extinctions: set to 0
CHUNK_ELEMENTS = 1 << 18  # (h, k) rows x max(l values, sites) per block: bounds memory to a few MB


def scatterers(structure) -> tuple[np.ndarray, list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """Fractional coordinates [n, 3], the elements present, and per element (site indices, occupancies)."""
    by_element: dict[str, tuple[list[int], list[float]]] = {}
    for j, site in enumerate(structure):
        for species, occ in site.species.items():
            sites, occs = by_element.setdefault(element_symbol(species), ([], []))
            sites.append(j)
            occs.append(occ)
    elements = sorted(by_element)
    groups = [(np.array(by_element[e][0]), np.array(by_element[e][1], dtype=np.float64)) for e in elements]
    return np.asarray(structure.frac_coords, dtype=np.float64), elements, groups


def _phase_table(indices: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """exp(2 pi i n x) for every index n and coordinate x: [len(indices), len(coords)]."""
    return np.exp(2j * np.pi * np.outer(indices, coords))


@dataclasses.dataclass
class _Crystal:
    """What every block of reflections needs: reciprocal basis, index ranges, phase tables, scatterers."""

    recip: np.ndarray  # rows a*, b*, c* (no 2 pi): 1/d = |h a* + k b* + l c*|
    k_min: int
    ls: np.ndarray  # every l, -L..L
    ex: np.ndarray  # exp(2 pi i h u_j), h = 0..H
    ey: np.ndarray  # exp(2 pi i k v_j), k = k_min..K
    ez: np.ndarray  # exp(2 pi i l w_j), l = -L..L
    groups: list  # per element: (site indices, occupancies)
    coeffs: tuple  # form-factor coefficients per element

    @classmethod
    def build(cls, structure, qmax: float) -> "_Crystal":
        lattice = np.asarray(structure.lattice.matrix, dtype=np.float64)
        h_max, k_max, l_max = np.floor(np.linalg.norm(lattice, axis=1) * qmax).astype(int)  # |h| <= |a| qmax
        frac, elements, groups = scatterers(structure)
        ls = np.arange(-l_max, l_max + 1)
        return cls(
            recip=np.linalg.inv(lattice).T,
            k_min=-k_max,
            ls=ls,
            ex=_phase_table(np.arange(h_max + 1), frac[:, 0]),
            ey=_phase_table(np.arange(-k_max, k_max + 1), frac[:, 1]),
            ez=_phase_table(ls, frac[:, 2]),
            groups=groups,
            coeffs=form_factor_coefficients(elements),
        )

    def rows(self, qmax: float) -> np.ndarray:
        """(h, k) pairs, h >= 0, whose line of l values passes within qmax of the origin."""
        h, k = np.meshgrid(np.arange(len(self.ex)), np.arange(len(self.ey)) + self.k_min, indexing="ij")
        hk = np.stack([h.ravel(), k.ravel()], axis=1)
        g = hk @ self.recip[:2]
        c_star = self.recip[2]
        closest2 = np.einsum("ij,ij->i", g, g) - (g @ c_star) ** 2 / (c_star @ c_star)
        return hk[closest2 <= qmax * qmax * (1 + 1e-12)]


@single_blas_thread()  # many small complex matrix products: BLAS threads cost more than they give
def reflections(structure, qmax: float, qmin: float = 0.0, b_iso: float = B_ISO) -> tuple[np.ndarray, np.ndarray]:
    """1/d and |F|^2 of every reflection with qmin < 1/d < qmax (1/Angstrom).

    Friedel mates (h, -h) have the same 1/d and |F|^2 and are returned as one entry whose
    intensity is their sum, so summing over entries counts every hkl once. The Debye-Waller
    factor exp(-b_iso s^2), s = 1/(2d), multiplies F; no wavelength-dependent factor is applied.
    """
    crystal = _Crystal.build(structure, qmax)
    rows = crystal.rows(qmax)
    step = max(1, CHUNK_ELEMENTS // max(len(crystal.ls), crystal.ez.shape[1]))  # rows per block
    parts = [_block(crystal, rows[i : i + step], qmin, qmax, b_iso) for i in range(0, len(rows), step)]
    if not parts:
        return np.zeros(0), np.zeros(0)
    inv_d, intensity = (np.concatenate(arrays) for arrays in zip(*parts))
    return inv_d, intensity


def _block(crystal: _Crystal, rows: np.ndarray, qmin: float, qmax: float, b_iso: float):
    """1/d and Friedel-summed |F|^2 of the reflections in a block of (h, k) rows times all l."""
    g = (rows @ crystal.recip[:2])[:, None, :] + crystal.ls[None, :, None] * crystal.recip[2]
    inv_d = np.sqrt(np.einsum("rlx,rlx->rl", g, g))
    r_idx, l_idx = np.nonzero((inv_d > qmin) & (inv_d < qmax))
    inv_d = inv_d[r_idx, l_idx]
    s = 0.5 * inv_d
    scatter = form_factors(crystal.coeffs, s) * np.exp(-b_iso * s * s)  # [n_elements, n_refl]
    row_phase = crystal.ex[rows[:, 0]] * crystal.ey[rows[:, 1] - crystal.k_min]  # [n_rows, n_sites]
    amplitude = np.zeros(len(inv_d), dtype=np.complex128)
    for (sites, occ), f in zip(crystal.groups, scatter):
        partial = (row_phase[:, sites] * occ) @ crystal.ez[:, sites].T  # [n_rows, n_l]: sum over the element's sites
        amplitude += f * partial[r_idx, l_idx]
    friedel = np.where(rows[r_idx, 0] > 0, 2.0, 1.0)  # the mate (-h, -k, -l) of h > 0 is not enumerated
    return inv_d, friedel * (amplitude.real**2 + amplitude.imag**2)


def bin_profile(inv_d: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """Accumulate intensities into the N_BINS 1/d bins and scale the maximum to 1."""
    keep = (inv_d > INV_D_MIN) & (inv_d < INV_D_MAX)
    index = np.floor((inv_d[keep] - INV_D_MIN) / BIN_WIDTH).astype(np.intp)
    profile = np.bincount(np.clip(index, 0, N_BINS - 1), weights=intensity[keep], minlength=N_BINS)
    top = profile.max()
    if top > 0:
        profile /= top
        profile[profile < ZERO_TOL] = 0.0
    return profile


def delta_profile(structure) -> np.ndarray:
    """The paper's 10001-bin delta-function profile of one structure (float64, max 1)."""
    return bin_profile(*reflections(structure, INV_D_MAX, INV_D_MIN))


def delta_profiles(structures) -> np.ndarray:
    """Profiles of many structures: array [n, N_BINS]."""
    structures = list(structures)
    out = np.zeros((len(structures), N_BINS))
    for i, structure in enumerate(structures):
        out[i] = delta_profile(structure)
    return out


def delta_profile_sparse(structure) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero bins of :func:`delta_profile`: (indices int32, values float32)."""
    return to_sparse(delta_profile(structure))


def to_sparse(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indices = np.flatnonzero(profile)
    return indices.astype(np.int32), profile[indices].astype(np.float32)


def from_sparse(indices, values, n_bins: int = N_BINS) -> np.ndarray:
    """Dense float64 profile from its sparse form."""
    profile = np.zeros(n_bins)
    profile[np.asarray(indices, dtype=np.intp)] = values
    return profile


# --------------------------------------------------------------------------- laboratory powder pattern
#
# The same structure factors, seen as a 2-theta powder pattern: a wavelength turns 1/d into
# 2 theta = 2 arcsin(lambda / (2 d)), every reflection is weighted by the Lorentz-polarisation
# factor (1 + cos^2 2theta) / (sin^2 theta cos theta) (unpolarised beam, no monochromator; the
# factor pymatgen's XRDCalculator uses; the formula and the wavelength names live in
# :mod:`xtalspec.spectra.radiation`), reflections at the same 2 theta are merged, and the sticks
# are broadened with a peak shape of constant width in degrees 2 theta.
#
# Debye-Waller: the default is the engine's B_ISO = 2.0 A^2 (exp(-B s^2) on F), as for the
# delta-profile, so both views of one structure agree and simulated patterns show the fall-off
# with angle of a room-temperature measurement. pymatgen's XRDCalculator applies no Debye-Waller
# factor unless given one: pass b_iso=0 to compare with it. Form factors: International Tables
# 9-parameter fits (pymatgen uses its own 4-Gaussian table): |F|^2 differ by < 1.5 % for most
# elements, up to ~6 % where La dominates (its f differs by up to 2.9 % at s < 0.28 1/A).

POWDER_TWO_THETA = (5.0, 50.0)  # degrees
POWDER_N_POINTS = 2251  # 0.02 degree steps over 5-50 degrees
POWDER_FWHM = 0.1  # degrees 2 theta
POWDER_ETA = 0.5  # Lorentzian fraction of the default pseudo-Voigt peak
PEAK_MERGE_TOL = 1e-4  # degrees: reflections closer than this in 2 theta are one peak
PROFILE_CUTOFF = 10.0  # each peak is evaluated within +-PROFILE_CUTOFF * FWHM of its centre
PROFILE_SHAPES = ("pseudo-voigt", "gaussian", "lorentzian")
GAUSS_CUTOFF = 4.0  # broaden evaluates the Gaussian part within +-4 FWHM only: beyond, it is < 1e-19 of its top
_PROFILE_CHUNK = 1 << 14  # peaks x window points evaluated at once (128 kB arrays: cache-sized)


def powder_two_theta(two_theta=POWDER_TWO_THETA, n_points: int = POWDER_N_POINTS) -> np.ndarray:
    """The 2-theta axis (degrees) of :func:`powder_pattern`: ``np.linspace(*two_theta, n_points)``."""
    low, high = _check_range(two_theta)
    if int(n_points) < 2:
        raise ValueError(f"a powder pattern needs at least 2 points, got {n_points!r}")
    return np.linspace(low, high, int(n_points))


def _check_range(two_theta) -> tuple[float, float]:
    low, high = (float(t) for t in two_theta)
    if not 0.0 <= low < high <= 180.0:
        raise ValueError(f"two_theta range must satisfy 0 <= low < high <= 180 degrees, got {two_theta!r}")
    return low, high


def powder_peaks(structure, wavelength="CuKa", two_theta=POWDER_TWO_THETA, b_iso: float = B_ISO):
    """Stick pattern: (2 theta in degrees ascending, intensity) of every peak with 2 theta in the range.

    intensity = sum over the hkl at that 2 theta (every hkl, so multiplicity is included) of
    |F|^2 * LP, LP = (1 + cos^2 2theta) / (sin^2 theta cos theta); reflections within
    PEAK_MERGE_TOL degrees are merged into one peak at their mean position. Absolute scale as
    pymatgen's ``get_pattern(..., scaled=False)``; peaks below 1e-12 of the strongest (round-off
    from exact extinctions) are dropped. wavelength: a line name (``"CuKa"``, ``"MoKa1"``, see
    :data:`xtalspec.spectra.radiation.WAVELENGTHS`) or a number in Angstrom.
    """
    lam = parse_wavelength(wavelength)
    low, high = _check_range(two_theta)
    qmin = 2.0 * np.sin(np.radians(low / 2)) / lam
    qmax = 2.0 * np.sin(np.radians(high / 2)) / lam
    inv_d, f2 = reflections(structure, qmax * (1 + 1e-9), qmin * (1 - 1e-9), b_iso)  # ends included
    sin_t = np.clip(0.5 * lam * inv_d, 0.0, 1.0)
    theta = np.arcsin(sin_t)
    tt = np.degrees(2.0 * theta)
    keep = (tt >= low) & (tt <= high) & (sin_t > 0) & (sin_t < 1)  # LP is infinite at 0 and 180 deg
    tt, f2, sin_t, theta = tt[keep], f2[keep], sin_t[keep], theta[keep]
    lp = lorentz_polarisation_from_trig(sin_t, np.cos(theta), 1.0 - 2.0 * sin_t * sin_t)
    intensity = f2 * lp
    order = np.argsort(tt, kind="stable")
    tt, intensity = tt[order], intensity[order]
    if not len(tt):
        return tt, intensity
    starts = np.flatnonzero(np.concatenate(([True], np.diff(tt) > PEAK_MERGE_TOL)))
    counts = np.diff(np.append(starts, len(tt)))
    position = np.add.reduceat(tt, starts) / counts
    total = np.add.reduceat(intensity, starts)
    strong = total > ZERO_TOL * total.max()
    return position[strong], total[strong]


def _shape_constants(fwhm: float, shape: str, eta: float) -> tuple[float, float, float, float, float]:
    """(Gaussian height, -1/(2 sigma^2), Lorentzian height, 1/gamma^2, cut^2) of the unit-area shape."""
    if shape not in PROFILE_SHAPES:
        raise ValueError(f"unknown peak shape {shape!r}; use one of {PROFILE_SHAPES}")
    if not fwhm > 0:
        raise ValueError(f"fwhm must be positive, got {fwhm!r}")
    eta = {"gaussian": 0.0, "lorentzian": 1.0}.get(shape, eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    cut = PROFILE_CUTOFF * fwhm
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    gamma = 0.5 * fwhm
    gauss_area = math.erf(cut / (math.sqrt(2.0) * sigma)) * sigma * math.sqrt(2.0 * math.pi)
    lorentz_area = 2.0 * math.atan(cut / gamma) * gamma
    return (1.0 - eta) / gauss_area, -0.5 / sigma**2, eta / lorentz_area, 1.0 / gamma**2, cut * cut


def _shape_values(offset: np.ndarray, constants) -> np.ndarray:
    """The unit-area shape at the offsets (any shape), zero beyond the cut-off."""
    gauss_h, gauss_k, lorentz_h, lorentz_k, cut2 = constants
    u2 = offset * offset
    values = gauss_h * np.exp(gauss_k * u2) + lorentz_h / (1.0 + lorentz_k * u2)
    return np.where(u2 > cut2, 0.0, values)


def peak_shape(offset, fwhm: float = POWDER_FWHM, shape: str = "pseudo-voigt", eta: float = POWDER_ETA) -> np.ndarray:
    """Unit-area peak profile (1/degree) at offsets (degrees) from the centre, zero beyond the cut-off.

    pseudo-Voigt = eta * Lorentzian + (1 - eta) * Gaussian, both of full width at half maximum
    ``fwhm``. Each component is truncated at +-PROFILE_CUTOFF * fwhm and rescaled to unit area
    on that window (the Lorentzian loses 3.2 % of its area outside +-10 FWHM; the Gaussian
    nothing measurable), so a peak's integral is exactly its stick intensity.
    """
    return _shape_values(np.asarray(offset, dtype=np.float64), _shape_constants(fwhm, shape, eta))


def broaden(positions, intensities, axis, fwhm: float = POWDER_FWHM, shape: str = "pseudo-voigt",
            eta: float = POWDER_ETA) -> np.ndarray:
    """sum_k I_k * peak_shape(axis - p_k) on an evenly spaced axis, each peak only within its cut-off.

    Vectorised over peaks: every peak gets a fixed-length window of grid indices covering
    +-cut-off, the shape is evaluated on [peaks, window] blocks and accumulated with one
    np.bincount per block (on an axis padded by one window each side, so no index needs
    masking). Blocks are cache-sized and computed in preallocated buffers (fresh large arrays
    cost more in page faults than the arithmetic). Only the window columns that can lie beyond
    the cut-off are tested against it, and the Gaussian part is evaluated only within
    +-GAUSS_CUTOFF FWHM (beyond, it is below 1e-19 of its maximum).
    """
    gauss_h, gauss_k, lorentz_h, lorentz_k, cut2 = _shape_constants(fwhm, shape, eta)
    axis = np.asarray(axis, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    intensities = np.asarray(intensities, dtype=np.float64)
    n = len(axis)
    if n == 0 or not len(positions):
        return np.zeros(n)
    step = (axis[-1] - axis[0]) / (n - 1) if n > 1 else 1.0
    cut = PROFILE_CUTOFF * fwhm
    width = int(np.ceil(2 * cut / step)) + 2  # grid points a window can cover
    first = np.ceil((positions - cut - axis[0]) / step - 1e-9).astype(np.intp)
    keep = (first + width > 0) & (first < n)  # windows that touch the axis
    first, positions, intensities = first[keep], positions[keep], intensities[keep]
    pad = width  # windows run from index >= -width to < n + width: accumulate on a padded axis
    padded = np.concatenate((axis[0] + step * np.arange(-pad, 0), axis, axis[-1] + step * np.arange(1, pad + 1)))
    first += pad
    offsets = np.arange(width)
    # window column j holds offsets in [j step - cut, j step - cut + step): which columns need what
    g_cut = min(GAUSS_CUTOFF, PROFILE_CUTOFF) * fwhm
    g_cols = slice(max(0, int(np.floor((cut - g_cut) / step)) - 1), min(width, int(np.ceil((cut + g_cut) / step)) + 1))
    c_cols = slice(max(0, int(np.floor(2 * cut / step)) - 2), width)  # the columns before are within +-cut
    rows = max(1, min(len(positions), _PROFILE_CHUNK // width))
    idx = np.empty((rows, width), dtype=np.intp)
    u2 = np.empty((rows, width))
    values = np.empty((rows, width))
    gauss = np.empty((rows, g_cols.stop - g_cols.start))
    total = np.zeros(n + 2 * pad)
    for i in range(0, len(positions), rows):
        m = min(rows, len(positions) - i)
        ix, u, v, g = idx[:m], u2[:m], values[:m], gauss[:m]
        weight = intensities[i : i + m, None]
        np.add(first[i : i + m, None], offsets, out=ix)
        np.take(padded, ix, out=u)
        np.subtract(u, positions[i : i + m, None], out=u)
        np.multiply(u, u, out=u)
        if lorentz_h:
            np.multiply(u, lorentz_k, out=v)
            v += 1.0
            np.divide(weight * lorentz_h, v, out=v)
        else:
            v.fill(0.0)
        if gauss_h:
            np.multiply(u[:, g_cols], gauss_k, out=g)
            np.exp(g, out=g)
            g *= weight * gauss_h
            v[:, g_cols] += g
        tail = v[:, c_cols]
        tail[u[:, c_cols] > cut2] = 0.0
        total += np.bincount(ix.ravel(), weights=v.ravel(), minlength=len(total))
    return total[pad : pad + n]


def powder_pattern(structure, wavelength="CuKa", two_theta=POWDER_TWO_THETA, n_points: int = POWDER_N_POINTS,
                   fwhm: float = POWDER_FWHM, shape: str = "pseudo-voigt", eta: float = POWDER_ETA,
                   b_iso: float = B_ISO, normalise: bool = True) -> np.ndarray:
    """Laboratory powder pattern on :func:`powder_two_theta` (``np.linspace(*two_theta, n_points)``).

    The sticks of :func:`powder_peaks` broadened by a unit-area :func:`peak_shape` of constant
    ``fwhm`` (degrees 2 theta): ``shape`` "pseudo-voigt" (Lorentzian fraction ``eta``),
    "gaussian" or "lorentzian". Peaks just outside the range contribute their tails. Scaled to
    a maximum of 1 when ``normalise`` (else the absolute scale of the sticks, per degree).
    Debye-Waller B = ``b_iso`` A^2 (default B_ISO = 2.0; 0 reproduces pymatgen's default).
    """
    axis = powder_two_theta(two_theta, n_points)
    low, high = _check_range(two_theta)
    _shape_constants(fwhm, shape, eta)  # validate before the structure-factor work
    cut = PROFILE_CUTOFF * fwhm
    positions, intensities = powder_peaks(structure, wavelength, (max(0.0, low - cut), min(180.0, high + cut)), b_iso)
    pattern = broaden(positions, intensities, axis, fwhm, shape, eta)
    if normalise:
        top = pattern.max()
        if top > 0:
            pattern /= top
    return pattern
