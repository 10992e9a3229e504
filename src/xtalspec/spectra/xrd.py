"""The "ideal" delta-function XRD profile of Ozaki, Ishida & Kiyobayashi (J. Appl. Cryst. 2025).

Every reflection hkl with 0.1131 < 1/d < 1.0625 1/Angstrom contributes I = |F|^2, with

    F_hkl = sum_j g_j f_j(s) exp(-B s^2) exp(2 pi i (h u_j + k v_j + l w_j)),   s = 1/(2d), B = 2.0 A^2

(g_j occupancy, f_j the International Tables form factor; a site with several species is a
"virtual atom" whose f is the occupancy-weighted sum). Intensities are accumulated into 10001
equal 1/d bins and the profile is scaled to a maximum of 1. No wavelength, no Lorentz-polarisation,
no line shape. Every hkl is counted, so multiplicity, extinctions and overlaps come out by
themselves, and any cell of the crystal (conventional, primitive, supercell) gives the same profile.

The structure-factor core, :func:`reflections`, is independent of the binning so that a 2-theta
powder pattern (with wavelength and Lorentz-polarisation) can reuse it.

How it is fast: exp(2 pi i h.x) = exp(2 pi i h u) exp(2 pi i k v) exp(2 pi i l w), so the phase
factors are built per index along each axis, and for every element the sum over its atoms for a
block of (h, k) rows and all l is one complex matrix product. Friedel mates have equal intensity
(real form factors), so only h >= 0 is computed and h > 0 rows count twice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .form_factors import element_symbol, form_factor_coefficients, form_factors

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
