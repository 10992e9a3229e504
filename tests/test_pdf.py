"""Validation of the crystal PDF calculator (xtalspec.spectra.pdf).

Independent routes: the Debye scattering equation on nanoparticles cut from the crystal, PDFfit2
(when installed; the ``test`` extra pins it), a brute-force per-pair Gaussian sum, coordination
numbers, and exact identities (virtual atoms, cell choice, baseline).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.spatial.distance import cdist, pdist

from xtalspec.bench.pdf import pdffit2_pdf
from xtalspec.spectra.pdf import (
    MODEL_GRID,
    PDFError,
    _broadening_matrix,
    deposit,
    model_input,
    pair_distances,
    pdf,
    qmax_termination,
    site_weights,
)


def ni():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.524), ["Ni"], [[0, 0, 0]])


def nacl(species=("Na", "Cl")):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6402), list(species),
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def rutile():
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                     [[0, 0, 0], [0.3048, 0.3048, 0]])


def triclinic():
    """A made-up P1 cell, three elements, no symmetry to lean on."""
    lattice = Lattice.from_parameters(5.1, 6.3, 7.2, 81.0, 97.0, 105.0)
    frac = [[0.05, 0.10, 0.15], [0.55, 0.20, 0.35], [0.30, 0.70, 0.60], [0.80, 0.55, 0.90], [0.15, 0.45, 0.80]]
    return Structure(lattice, ["Fe", "O", "O", "Si", "O"], frac)


def disordered_rocksalt():
    return nacl(({"Na": 0.5, "K": 0.5}, "Cl"))


def number_density(structure):
    occ, _ = site_weights(structure)
    return occ.sum() / structure.volume


# ----------------------------------------------------------------- Debye scattering equation


def nanoparticle(structure, radius):
    """Cartesian positions and Z of the atoms within `radius` of the structure's first atom."""
    n = [int(math.ceil(radius / length)) + 1 for length in structure.lattice.abc]
    cells = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1).reshape(-1, 3)
    frac = (cells[:, None, :] + structure.frac_coords[None, :, :]).reshape(-1, 3)
    cart = frac @ structure.lattice.matrix - structure[0].coords
    z = np.tile([site.specie.Z for site in structure], len(cells))
    keep = np.einsum("ij,ij->i", cart, cart) <= radius**2
    return cart[keep], z[keep]


def debye_gr(cart, z, r, qmax, uiso, dq=0.005):
    """G(r) = (2/pi) int_0^Qmax F(Q) sin(Qr) dQ with the Debye equation
    F(Q) = 1/(N <f>^2) sum_{i != j} f_i f_j exp(-Uiso Q^2) sin(Q r_ij) / r_ij   (f = Z,
    exp(-sigma^2 Q^2 / 2) with sigma^2 = 2 Uiso per pair), no small-angle term subtracted."""
    dists, weights = [], []
    kinds = np.unique(z)
    for k, a in enumerate(kinds):
        for b in kinds[k:]:
            d = pdist(cart[z == a]) if a == b else cdist(cart[z == a], cart[z == b]).ravel()
            dists.append(d)
            weights.append(np.full(len(d), 2.0 * a * b))  # ordered pairs
    d, w = np.concatenate(dists), np.concatenate(weights)
    _, inverse = np.unique(np.rint(d / 1e-4).astype(np.int64), return_inverse=True)  # merge equal distances
    d_u = np.bincount(inverse, d) / np.bincount(inverse)
    w_u = np.bincount(inverse, w)
    q = np.arange(0.0, qmax + dq / 2, dq)
    fq = np.zeros_like(q)
    for s in range(0, len(d_u), 2000):
        fq += np.sin(np.outer(q, d_u[s:s + 2000])) @ (w_u[s:s + 2000] / d_u[s:s + 2000])
    fq *= np.exp(-uiso * q * q) / (len(z) * z.mean() ** 2)
    return 2.0 / math.pi * np.trapezoid(fq[None, :] * np.sin(np.outer(r, q)), q, axis=1)


def sphere_gamma0(r, n_atoms, rho0):
    """Characteristic function of a sphere of the particle's volume N / rho0."""
    radius = (3.0 * n_atoms / (4.0 * math.pi * rho0)) ** (1.0 / 3.0)
    x = np.clip(r / (2.0 * radius), 0.0, 1.0)
    return 1.0 - 1.5 * x + 0.5 * x**3  # = 1 - 3r/(4R) + r^3/(16R^3)


def sine_termination(y, qmax, dr=0.01):
    """Qmax cut of y(r >= 0) as the sine transform sees it: odd extension to r < 0 first."""
    full = np.concatenate([-y[:0:-1], y])
    return qmax_termination(full, dr, qmax)[len(y) - 1:]


def debye_case(structure, radius, uiso):
    cart, z = nanoparticle(structure, radius)
    rho0 = number_density(structure)
    r, g = pdf(structure, rmin=0.0, rmax=2 * radius + 2, qdamp=0.0, qbroad=0.0, uiso=uiso, termination=False)
    peaks = (g + 4 * math.pi * rho0 * r) * sphere_gamma0(r, len(z), rho0)  # R(r)/r of the particle
    sel = (r >= 1.5) & (r <= 10.0 + 1e-9)
    return r, peaks, sel, debye_gr(cart, z, r[sel], 23.0, uiso), len(z), rho0


@pytest.mark.parametrize("make, radius, tol", [(ni, 20.0, 0.004), (nacl, 25.0, 0.01)])
def test_debye_nanoparticle_peak_positions_and_termination_ripples(make, radius, tol):
    """Uiso = 1e-4 A^2: peaks barely damped at Qmax = 23, so the termination ripples are strong and
    the Gaussian shape convention does not matter; what is compared is where the peaks are, their
    weights (f = Z, 1/(N <f>^2)) and the sinc ripples. Reached: Ni 0.12 %, NaCl 0.44 % of the
    largest peak (the rest is the sphere-cut surface vs the gamma0 envelope)."""
    r, peaks, sel, g_debye, _, _ = debye_case(make(), radius, 1e-4)
    g_ours = sine_termination(peaks, 23.0)[sel]
    scale = np.abs(g_debye).max()
    assert np.abs(g_ours - g_debye).max() < tol * scale


@pytest.mark.parametrize("make, radius", [(ni, 20.0), (nacl, 25.0)])
def test_debye_nanoparticle_at_the_paper_uiso(make, radius):
    """Uiso = 0.008 A^2. The Debye equation's Gaussian displacements give per pair
    (1/r_ij) N(r - r_ij; s), PDFfit2 (and we) write N(r - r_ij; s) / r: the same area and centre,
    flanks tilted by (r - r_ij)/r_ij ~ s/r_ij. Built with 1/r_ij from our own pair list, deposit and
    broadening, the particle agrees to 0.43 % (Ni) / 0.62 % (NaCl); our pdf() itself, PDFfit2's
    convention and its own FFT termination included, to 2.8 % / 2.1 %, the tilt and nothing else
    (peak maxima within 0.01 A)."""
    structure = make()
    r, peaks, sel, g_debye, n_atoms, rho0 = debye_case(structure, radius, 0.008)
    scale = np.abs(g_debye).max()
    # 1/r_ij convention from the same pair list
    occ, power = site_weights(structure)
    w = power / (power.sum() / occ.sum())
    n_out, n_src = len(r), len(r) + 80
    d, pw = pair_distances(structure, np.arange(len(structure)), w, w, 0.01 * (n_src - 2))
    per_pair = _broadening_matrix(n_out, n_src, 0.01, 0.0, 0.008, 0.0) @ deposit(d, pw / d, 0.01, 0.0, n_src)
    particle = per_pair / occ.sum() * sphere_gamma0(r, n_atoms, rho0)
    assert np.abs(sine_termination(particle, 23.0)[sel] - g_debye).max() < 0.01 * scale
    # pdf() as the pipeline calls it (its own termination), peaks only
    r2, g2 = pdf(structure, rmin=1.5, rmax=10.0, qdamp=0.0, qbroad=0.0, uiso=0.008)
    ours = (g2 + 4 * math.pi * rho0 * r2) * sphere_gamma0(r2, n_atoms, rho0)
    assert np.abs(ours - g_debye).max() < 0.035 * scale
    first = (r2 > 1.5) & (r2 < 4.5)
    assert abs(r2[first][np.argmax(ours[first])] - r2[first][np.argmax(g_debye[first])]) <= 0.01 + 1e-9


# ----------------------------------------------------------------- PDFfit2


PARAMS = [
    dict(qmax=23.0, qdamp=0.04, qbroad=0.01, uiso=0.008, rmax=30.0),  # the paper's
    dict(qmax=15.0, qdamp=0.10, qbroad=0.03, uiso=0.005, rmax=20.0),
]


def rutile_supercell():
    return rutile().make_supercell([2, 2, 3], in_place=False)  # 72 sites: symmetry-reduced centres


@pytest.mark.parametrize("make", [ni, nacl, rutile, triclinic, disordered_rocksalt, rutile_supercell])
@pytest.mark.parametrize("params", PARAMS, ids=["paper", "other"])
def test_matches_pdffit2(make, params):
    """Same structure and parameters (X-rays, scale 1, delta1 = delta2 = 0, PDFgui termination):
    reached <= 1e-4 of the largest |G| (typically 5e-5); asserted at 2e-4."""
    pytest.importorskip("diffpy.pdffit2")
    structure = make()
    r, g = pdf(structure, **params)
    r_ref, g_ref = pdffit2_pdf(structure, **params)
    k = int(np.searchsorted(r_ref, r[0] - 1e-6))
    assert np.allclose(r_ref[k:k + len(r)], r)
    g_ref = g_ref[k:k + len(r)]
    assert np.abs(g - g_ref).max() < 2e-4 * np.abs(g_ref).max()


# ----------------------------------------------------------------- direct checks


def test_brute_force_gaussian_sum():
    """Every pair's Gaussian evaluated on the grid (no histogram, no symmetry), qbroad widths,
    Qdamp, no termination: reached 7e-5 of the largest |G| (the three-point deposit's
    higher-order error, coherent over a shell), asserted at 2e-4."""
    structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6402), ["Na", "Cl"],
                                          [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    uiso, qbroad, qdamp, rmax = 0.006, 0.05, 0.04, 15.0
    r, g = pdf(structure, rmax=rmax, qdamp=qdamp, qbroad=qbroad, uiso=uiso, termination=False)
    centre, neighbour, _, dist = structure.get_neighbor_list(rmax + 2.0)
    z = np.array([site.specie.Z for site in structure], dtype=float)
    w = z / z.mean()
    sigma = np.sqrt(2 * uiso * (1 + (qbroad * dist) ** 2))
    gauss = np.exp(-0.5 * ((r[:, None] - dist[None, :]) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    rho0 = len(structure) / structure.volume
    brute = gauss @ (w[centre] * w[neighbour]) / (len(structure) * r) - 4 * math.pi * rho0 * r
    brute *= np.exp(-0.5 * (qdamp * r) ** 2)
    assert np.abs(g - brute).max() < 2e-4 * np.abs(brute).max()


def test_cell_choice_and_symmetry_do_not_matter():
    """Primitive vs 2x2x2 conventional supercell (64 sites, where the symmetry-distinct centres
    are used), and with the symmetry reduction switched off."""
    primitive = nacl().get_primitive_structure()
    supercell = nacl().make_supercell(2, in_place=False)
    _, g1 = pdf(primitive)
    _, g2 = pdf(supercell)
    _, g3 = pdf(supercell, use_symmetry=False)
    _, g4 = pdf(rutile().make_supercell([2, 2, 3], in_place=False))
    _, g5 = pdf(rutile())
    assert np.abs(g1 - g2).max() < 1e-9 * np.abs(g1).max()
    assert np.abs(g2 - g3).max() < 1e-9 * np.abs(g1).max()
    assert np.abs(g4 - g5).max() < 1e-9 * np.abs(g5).max()


def test_baseline_below_the_first_peak():
    """Nearest Ni-Ni 2.49 A, its Gaussian reaches down to 2.49 - 5 sigma = 1.86 A: below that
    G = -4 pi rho0 r exactly, times the Qdamp envelope."""
    structure = ni()
    rho0 = number_density(structure)
    r, g = pdf(structure, qdamp=0.04, termination=False)
    low = r < 1.85
    expected = -4 * math.pi * rho0 * r[low] * np.exp(-0.5 * (0.04 * r[low]) ** 2)
    assert np.allclose(g[low], expected, rtol=1e-9, atol=1e-12)


def first_shell(structure, lo, hi):
    """Integral of the RDF R(r) = r G(r) + 4 pi rho0 r^2 over [lo, hi] (no termination, no Qdamp)."""
    r, g = pdf(structure, rmin=0.5, rmax=8.0, qdamp=0.0, termination=False)
    rdf = r * g + 4 * math.pi * number_density(structure) * r**2
    sel = (r >= lo) & (r <= hi)
    return np.trapezoid(rdf[sel], r[sel])


def test_fcc_nickel_coordination_is_twelve():
    n = first_shell(ni(), 2.0, 3.0)
    assert n == pytest.approx(12.0, rel=0.02)
    assert n == pytest.approx(12.0, rel=1e-4)  # reached


def test_rocksalt_first_shell_carries_the_x_ray_weights():
    """6 Cl around Na and 6 Na around Cl, weighted w_Na w_Cl = (11/14)(17/14)."""
    assert first_shell(nacl(), 2.4, 3.4) == pytest.approx(6 * 11 * 17 / 14**2, rel=1e-3)


def test_mixed_site_is_the_occupancy_weighted_virtual_atom():
    """(Na0.5 K0.5)Cl scatters like a rocksalt of an atom with f = (11 + 19)/2 = 15 = Z(P)."""
    r, g_mixed = pdf(disordered_rocksalt())
    _, g_virtual = pdf(nacl(("P", "Cl")))
    assert np.abs(g_mixed - g_virtual).max() < 1e-9 * np.abs(g_virtual).max()
    assert first_shell(disordered_rocksalt(), 2.4, 3.4) == pytest.approx(6 * 15 * 17 / 16**2, rel=1e-3)


def test_vacancies_lower_density_and_weights():
    """Na half occupied: N = 6 per cell, <f> = (4 * 5.5 + 4 * 17) / 6 = 15."""
    half = nacl(({"Na": 0.5}, "Cl"))
    assert number_density(half) == pytest.approx(6 / 5.6402**3)
    assert first_shell(half, 2.4, 3.4) == pytest.approx(8 * 5.5 * 17 / 15**2, rel=1e-3)


# ----------------------------------------------------------------- model input


def test_model_input_grid_range_and_padding():
    r, g = pdf(ni(), rmax=20.0)
    x = model_input(r, g, data_rmax=20.0)
    assert x.shape == (209,) and x.min() == 0.0 and x.max() == 1.0
    # zero beyond the data, padded before the min-max scaling: the normalised level of G = 0
    interp = np.interp(MODEL_GRID, r, g, right=0.0)
    level = -interp.min() / (interp.max() - interp.min())
    padded = x[MODEL_GRID > 20.2]
    assert np.ptp(padded) < 1e-9 and padded[0] == pytest.approx(level, abs=2e-3)
    # inside the data: the quadratic interpolant of G, scaled
    r_full, g_full = pdf(ni())
    x_full = model_input(r_full, g_full)
    inside = np.interp(MODEL_GRID, r_full, g_full)
    assert np.abs(x_full - (inside - inside.min()) / np.ptp(inside)).max() < 0.02
    # data_rmax cuts a longer PDF
    short = r_full <= 20.0 + 1e-9
    assert np.allclose(model_input(r_full, g_full, data_rmax=20.0), model_input(r_full[short], g_full[short]))


def test_model_input_constant_and_bad_data():
    r = np.linspace(0.5, 30, 300)
    assert not model_input(r, np.ones_like(r)).any()
    with pytest.raises(PDFError, match="non-finite"):
        model_input(r, np.full_like(r, np.nan))


# ----------------------------------------------------------------- rejects


def test_rejects_with_reasons():
    cases = [
        (Structure(Lattice.cubic(5.0), [], []), "no sites"),
        (Structure(Lattice.cubic(5.0), ["X"], [[0, 0, 0]]), "unknown element"),
        (Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]]), "absurd density"),  # 2 atoms/A^3
        (Structure(Lattice.cubic(40.0), ["Fe"], [[0, 0, 0]]), "absurd density"),  # 1.6e-5 atoms/A^3
    ]
    for structure, reason in cases:
        with pytest.raises(PDFError) as info:
            pdf(structure)
        assert info.value.reason == reason
    with pytest.raises(PDFError) as info:
        pdf(Structure(Lattice.cubic(15.0), ["Fe"], [[0, 0, 0]]), rmax=10.0)
    assert info.value.reason == "no atoms within rmax"
    assert isinstance(info.value, ValueError)
