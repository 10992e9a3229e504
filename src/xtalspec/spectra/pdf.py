"""Atomic pair distribution function G(r) of a periodic crystal, PDFgui/PDFfit2 convention.

This is the signal of the spacegroupMining system (Lan, Liu, Du, Billinge): PDFs computed
with r = 1.5-30 A, Qmax = 23 1/A, Qdamp = 0.04 1/A, Qbroad = 0.01 1/A, Uiso = 0.008 A^2 for
every atom, resampled to 209 points and min-max normalised (:func:`model_input`).
``diffpy.srreal`` does not install from PyPI, so the calculator is written here, following
PDFfit2 (libpdffit2 ``DataSet::determine``, ``Phase::setup_weights``, ``applyQmaxCutoff``):

    G(r) = [ 1/(N r) sum_{i in cell} sum_{j != i, all images} w_i w_j T(r; r_ij, s_ij) - 4 pi r rho0 ]
           * exp(-(Qdamp r)^2 / 2),                      then Qmax termination (below)

* Weights: a site i holding species s with occupancy c_s scatters with f_i = sum_s c_s Z_s,
  and w_i = f_i / <f>, <f> = sum_i f_i / N, N = sum_i sum_s c_s (total occupancy per cell),
  rho0 = N / V. X-ray scattering factors are taken at Q = 0 as the atomic number Z of the
  neutral element (what PDFgui/PDFfit2 use for X-rays: ``get_scat('X', 'Ni') == 28``); the
  International Tables f(0) (``xtalspec.spectra.form_factors``) equals Z to ~0.1 % for neutral
  atoms, and Z keeps the result identical to PDFfit2 and independent of oxidation states.
  A disordered site is thus the occupancy-weighted sum over its species (one "virtual atom";
  PDFfit2 would place the species as separate atoms on the same position, which gives the
  same pairs, since coincident atoms (r_ij < 0.1 A) are skipped there as here).
* Neutrons (``radiation="neutron"``): f_s is the bound coherent scattering length b_c of the
  element (natural isotopic mixture; D and T their own), from the packaged table
  ``xtalspec/data/neutron_scattering_lengths.csv`` (Sears 1992, provenance in its header), as
  PDFfit2 does for neutron data. The pair weights of G(r) are then b_i b_j / <b>^2: an element
  with a negative b (H, Li, Ti, V, Mn, ...) paired with a positive one gives a *negative* peak
  (a Mn-O first peak points down in a neutron PDF and up in an X-ray one). When <b> is close to
  zero (|<b>| < 1e-3 of the occupancy-weighted mean |b|: a "null matrix" such as Ti-Zr alloys
  made to have no coherent scattering) the normalisation is undefined: PDFError
  "null average scattering length". An element without a tabulated b_c: PDFError
  "no neutron scattering length".
* Peak T: a normalised Gaussian of r - r_ij with, as PDFfit2 (``NEW_SHARP``) writes it,

      s_ij = s'_ij sqrt(1 - delta1/r_ij - delta2/r_ij^2 + Qbroad^2 r_ij^2),   s'_ij^2 = U_i + U_j

  (delta1 = delta2 = 0 here), i.e. the Qbroad term multiplies the squared width:
  s^2 = 2 Uiso (1 + Qbroad^2 r^2), not s^2 = 2 Uiso + Qbroad^2 r^2.
* Baseline -4 pi r rho0 (PDFfit2's bulk crystal, ``dnorm`` = 1); the Qdamp envelope multiplies
  peaks and baseline alike, before termination, as in PDFfit2.
* Qmax termination (PDFgui convention, ``DataSet::applyQmaxCutoff``): the G(r) computed on the
  grid r = 0 ... rmax + 6 (2 pi / Qmax) (six termination ripples beyond rmax, as PDFfit2 extends
  its range) is zero-padded to a power of two >= twice its length, Fourier transformed, every
  component with |Q| >= Qmax is zeroed (Q step 2 pi / ((npad - 1) dr), PDFfit2's own) and the
  result transformed back: G is convolved with the sinc of Qmax, which gives the termination
  ripples. ``termination=False`` (or qmax <= 0) skips it. diffpy.srreal instead skips the cut
  when Qmax >= pi / rstep (then the grid cannot carry it); with the default rstep = 0.01 A that
  is Qmax >= 314 1/A, far above any Qmax used here, so both agree on when it applies.
* Qmin: PDFfit2 has no Qmin. ``qmin`` is accepted (the paper lists Qmin = 0.5) and, like
  diffpy.srreal's band-pass filter, zeroes the components with |Q| < Qmin in the same Fourier
  step, but only with ``apply_qmin=True``. By default it is not applied (PDFgui convention): on
  the one-sided, zero-padded window the cut mostly removes the window's own low-frequency
  content (G starts at -4 pi rho0 r, not odd about r = 0), a smooth background of 2-5 % of the
  largest peak on AMCSD structures, not the physics of a missing Q < 0.5 region (which only
  matters for cells with Bragg peaks below Q = 0.5, i.e. d > 12.6 A).

Speed: distances come from a vectorised periodic search (lattice translations x site pairs,
one matrix product) over the symmetry-distinct centres only (spglib's equivalent atoms, each
weighted by its multiplicity). Each distance is deposited on the r grid with the three-point
quadratic (Lagrange) weights, which keep the zeroth, first and second moments of the delta
exactly, and the r-dependent Gaussian broadening is one banded sparse matrix-vector product,
the matrix being cached per (grid, Uiso, Qbroad). The Qmax termination is one real FFT.
:func:`pdf` runs with one BLAS thread (:mod:`xtalspec.utils.threads`) whatever the caller's setting.
"""

from __future__ import annotations

import functools
import math
import re
import warnings

import numpy as np

from ..utils.threads import single_blas_thread

# The paper's PDF settings (Lan et al., Table 1): defined here only; datasets/pdf_paper.py, the
# models and the reports import them.
RMIN = 1.5  # Angstrom
RMAX = 30.0  # Angstrom
QMIN = 0.5  # 1/Angstrom
QMAX = 23.0  # 1/Angstrom
QDAMP = 0.04  # 1/Angstrom
QBROAD = 0.01  # 1/Angstrom
UISO = 0.008  # Angstrom^2, every atom
RSTEP = 0.01  # Angstrom, calculation grid
MODEL_POINTS = 209  # the CNN's input: G(r) resampled at this many points over RMIN..RMAX
MODEL_GRID = np.linspace(RMIN, RMAX, MODEL_POINTS)  # the CNN's input grid

N_RIPPLES = 6  # PDFfit2 extends the calculation range by this many 2 pi / Qmax ripples
PEAK_SIGMAS = 5.0  # Gaussians are evaluated to +-5 sigma, as in PDFfit2
MIN_PAIR_DISTANCE = 0.1  # Angstrom; PDFfit2 skips pairs closer than this (self pairs, split sites)
RHO_MAX = 0.5  # atoms / A^3; the densest solids have ~0.18 (diamond)
RHO_MIN = 1e-4  # atoms / A^3; porous frameworks have > 0.005
MAX_PAIRS = 30_000_000  # refuse structures whose pair list would not fit in memory
SYMPREC = 1e-3  # Angstrom, spglib tolerance for the symmetry-distinct centres
SYMMETRY_MIN_WORK = 3e5  # site pairs x translations below which spglib (~3 ms) does not pay
CHUNK = 4_000_000  # (site pairs x translations) evaluated at once in the neighbour search


RADIATIONS = ("x-ray", "neutron")  # the scattering weights pdf() knows
NEUTRON_TABLE = "neutron_scattering_lengths.csv"  # package data: b_c in fm (Sears 1992)
NULL_MEAN_B = 1e-3  # |<b>| below this share of <|b|>: no usable normalisation (null-scattering matrix)


class PDFError(ValueError):
    """A structure the calculator cannot handle; ``reason`` is a short tag for a rejects table."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- structure -> scatterers


def _atomic_number(species) -> int:
    """Z of the neutral element of a pymatgen Element/Species (D, T -> H); PDFError otherwise."""
    from pymatgen.core.periodic_table import Element

    from .form_factors import element_symbol

    try:
        z = Element(element_symbol(species)).Z
    except (KeyError, ValueError, AttributeError):
        raise PDFError("unknown element", str(species)) from None
    if not 1 <= z <= 98:
        raise PDFError("unknown element", str(species))
    return z


@functools.lru_cache(maxsize=1)
def neutron_scattering_lengths() -> dict[str, float]:
    """Element symbol (and D, T) -> bound coherent scattering length b_c in fm, read once from
    the packaged table (Sears 1992; its header says how it was made)."""
    import csv
    from importlib import resources

    text = resources.files("xtalspec").joinpath("data", NEUTRON_TABLE).read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {row["symbol"]: float(row["b_c_fm"]) for row in rows}


def _hydrogen_isotope(species) -> str | None:
    """'D' or 'T' for deuterium/tritium (pymatgen keeps them as H with name 'D'/'T'), else None."""
    for obj in (species, getattr(species, "element", None)):
        if getattr(obj, "name", None) in ("D", "T"):
            return obj.name
    match = re.match(r"^([A-Z][a-z]?)", str(species))
    return match.group(1) if match is not None and match.group(1) in ("D", "T") else None


def neutron_scattering_length(species) -> float:
    """b_c (fm) of a pymatgen Element/Species or a symbol such as 'Mn3+' or 'D' (deuterium keeps
    its own b_c, unlike the X-ray weights); PDFError when the element has none in the table."""
    from .form_factors import element_symbol

    text = str(getattr(species, "symbol", species))
    table = neutron_scattering_lengths()
    isotope = _hydrogen_isotope(species)
    if isotope is not None:
        return table[isotope]
    try:
        symbol = element_symbol(species)
    except (KeyError, ValueError, AttributeError):
        raise PDFError("unknown element", text) from None
    if symbol not in table:
        raise PDFError("no neutron scattering length", f"{text}: not in {NEUTRON_TABLE}")
    return table[symbol]


def _scattering_power(species, radiation: str) -> float:
    if radiation == "x-ray":
        return float(_atomic_number(species))
    if radiation == "neutron":
        return neutron_scattering_length(species)
    raise ValueError(f"unknown radiation {radiation!r}; choose from {RADIATIONS}")


def site_weights(structure, radiation: str = "x-ray") -> tuple[np.ndarray, np.ndarray]:
    """Per site: total occupancy sum_s c_s and scattering power f_i = sum_s c_s f_s, with f_s = Z
    (X-rays) or the coherent scattering length b_c in fm (neutrons; may be negative)."""
    occ = np.zeros(len(structure))
    power = np.zeros(len(structure))
    for i, site in enumerate(structure):
        for species, c in site.species.items():
            occ[i] += c
            power[i] += c * _scattering_power(species, radiation)
    return occ, power


def _mean_abs_power(structure, radiation: str) -> float:
    """sum over sites and species of c_s |f_s|, per atom: the scale <|f|> of the null-average check."""
    total = sum(c * abs(_scattering_power(species, radiation)) for site in structure
                for species, c in site.species.items())
    occupancy = sum(c for site in structure for c in site.species.values())
    return total / occupancy if occupancy > 0 else 0.0


def _symmetry_centres(structure) -> tuple[np.ndarray, np.ndarray]:
    """Symmetry-distinct site indices and their multiplicities (all sites, weight 1, if spglib fails).

    Sites are typed by their exact composition, so a disordered site is only equivalent to sites
    with the same species and occupancies.
    """
    import spglib

    kinds: dict[tuple, int] = {}
    types = [kinds.setdefault(tuple(sorted((str(s), round(c, 6)) for s, c in site.species.items())),
                              len(kinds) + 1) for site in structure]
    cell = (np.asarray(structure.lattice.matrix), np.asarray(structure.frac_coords), types)
    try:
        with warnings.catch_warnings():  # spglib 2.x warns about its old error handling
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    except Exception:  # spglib raises on degenerate cells in some versions
        dataset = None
    if dataset is None:
        return np.arange(len(structure)), np.ones(len(structure))
    equivalent = np.asarray(dataset.equivalent_atoms)
    centres, counts = np.unique(equivalent, return_counts=True)
    return centres, counts.astype(np.float64)


# ---------------------------------------------------------------- periodic neighbour search


def _translations(lattice: np.ndarray, reach: float) -> np.ndarray:
    """All lattice vectors t = n . L with |t| <= reach (Cartesian, [m, 3])."""
    recip_norms = np.linalg.norm(np.linalg.inv(lattice), axis=0)  # 1 / interplanar spacings
    nmax = np.ceil(reach * recip_norms).astype(int)
    grids = np.meshgrid(*[np.arange(-n, n + 1) for n in nmax], indexing="ij")
    n = np.stack([g.ravel() for g in grids], axis=1).astype(np.float64)
    t = n @ lattice
    return t[np.einsum("ij,ij->i", t, t) <= reach * reach]


def pair_distances(structure, centres: np.ndarray, centre_weights: np.ndarray, weights: np.ndarray,
                   rcut: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d (MIN_PAIR_DISTANCE <= d <= rcut) from every centre site to every atom of the
    infinite crystal, and the weight centre_weights[c] * weights[j] of each pair. Weights may
    carry a trailing axis ([n, k]: k weight sets, e.g. X-ray and neutron, from one search); the
    pair weights are then [pairs, k]."""
    lattice = np.asarray(structure.lattice.matrix, dtype=np.float64)
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    diff = frac[None, :, :] - frac[centres, None, :]  # centre -> j, [c, n, 3]
    diff -= np.round(diff)  # nearest image in fractional terms
    cart = (diff @ lattice).reshape(-1, 3)
    centre_weights, weights = np.asarray(centre_weights, np.float64), np.asarray(weights, np.float64)
    pair_w = (centre_weights[:, None] * weights[None, :]).reshape((len(cart),) + weights.shape[1:])
    c2 = np.einsum("ij,ij->i", cart, cart)
    trans = _translations(lattice, rcut + float(np.sqrt(c2.max())))
    t2 = np.einsum("ij,ij->i", trans, trans)
    rcut2, rmin2 = rcut * rcut, MIN_PAIR_DISTANCE**2
    dists, wts = [], []
    step = max(1, CHUNK // max(len(trans), 1))
    for start in range(0, len(cart), step):
        sl = slice(start, start + step)
        d2 = c2[sl, None] + t2[None, :] + 2.0 * (cart[sl] @ trans.T)
        keep = (d2 <= rcut2) & (d2 >= rmin2)
        dists.append(np.sqrt(d2[keep]))
        wts.append(np.repeat(pair_w[sl], np.count_nonzero(keep, axis=1), axis=0))
    return np.concatenate(dists), np.concatenate(wts)


# ---------------------------------------------------------------- grid operations


def deposit(d: np.ndarray, w: np.ndarray, dr: float, r0: float, n: int) -> np.ndarray:
    """Histogram of weighted deltas at d on the grid r0 + k dr (k < n), three-point quadratic
    (Lagrange) weights: sum, mean and variance of every delta are kept exactly."""
    x = (d - r0) / dr
    m = np.rint(x).astype(np.int64)
    u = x - m
    h = np.bincount(m, w * (1.0 - u * u), minlength=n)
    h += np.bincount(m - 1, w * (0.5 * u * (u - 1.0)), minlength=n)
    h += np.bincount(m + 1, w * (0.5 * u * (u + 1.0)), minlength=n)
    return h[:n]


def peak_sigma(r: np.ndarray, uiso: float, qbroad: float) -> np.ndarray:
    """PDFfit2 peak width: s = sqrt(2 Uiso) sqrt(1 + Qbroad^2 r^2) (delta1 = delta2 = 0)."""
    return np.sqrt(2.0 * uiso * (1.0 + (qbroad * r) ** 2))


@functools.lru_cache(maxsize=32)
def _broadening_matrix(n_out: int, n_src: int, dr: float, r0: float, uiso: float, qbroad: float):
    """Banded [n_out, n_src] matrix (scipy DIA format): column m is the normalised Gaussian of
    width s(r_m) centred on r_m, cut at +-PEAK_SIGMAS s as in PDFfit2."""
    import scipy.sparse as sp

    sigma = peak_sigma(r0 + dr * np.arange(n_src), uiso, qbroad)
    half = int(math.ceil(PEAK_SIGMAS * sigma.max() / dr))
    shift = np.arange(-half, half + 1)  # row k = m + shift
    x = shift[:, None] * (dr / sigma[None, :])
    band = np.exp(-0.5 * x * x) * (1.0 / (math.sqrt(2.0 * math.pi) * sigma))[None, :]
    band[np.abs(x) > PEAK_SIGMAS] = 0.0
    # DIA storage: data[i, m] is A[m - offsets[i], m], so offsets = -shift
    return sp.dia_matrix((band, -shift), shape=(n_out, n_src))


def _fft_length(n: int) -> int:
    """PDFfit2's padding: the next power of two >= 2 n."""
    return 1 << int(math.ceil(math.log2(2 * n)))


def qmax_termination(y: np.ndarray, dr: float, qmax: float, qmin: float = 0.0) -> np.ndarray:
    """Zero the Fourier components with |Q| >= qmax (and |Q| < qmin if qmin > 0) of y on a grid
    of step dr, PDFfit2's way: zero-pad to 2^k >= 2 len(y), dQ = 2 pi / ((npad - 1) dr)."""
    npad = _fft_length(len(y))
    spectrum = np.fft.rfft(y, npad)
    dq = 2.0 * math.pi / ((npad - 1) * dr)
    spectrum[int(math.ceil(qmax / dq)):] = 0.0
    if qmin > 0:
        spectrum[: int(math.ceil(qmin / dq))] = 0.0
    return np.fft.irfft(spectrum, npad)[: len(y)]


# ---------------------------------------------------------------- the PDF


def _scatterers(structure, radiation: str = "x-ray") -> tuple[float, float, np.ndarray]:
    """Total occupancy N, number density rho0 = N / V and site weights w_i = f_i / <f>
    (neutrons: b_i / <b>, PDFError when <b> is about zero)."""
    if radiation not in RADIATIONS:
        raise ValueError(f"unknown radiation {radiation!r}; choose from {RADIATIONS}")
    if len(structure) == 0:
        raise PDFError("no sites")
    occ, power = site_weights(structure, radiation)
    n_atoms = float(occ.sum())
    if n_atoms <= 0:
        raise PDFError("no atoms", "total occupancy is zero")
    rho0 = n_atoms / structure.volume
    if not RHO_MIN <= rho0 <= RHO_MAX:
        raise PDFError("absurd density", f"{rho0:.3g} atoms/A^3")
    mean = power.sum() / n_atoms
    if radiation == "neutron" and abs(mean) <= NULL_MEAN_B * _mean_abs_power(structure, radiation):  # <=: b = 0 (Sm)
        raise PDFError("null average scattering length",
                       f"<b> = {mean:.3g} fm against <|b|> = {_mean_abs_power(structure, radiation):.3g} fm")
    return n_atoms, rho0, power / mean


def _grid(rmin: float, rmax: float, rstep: float, rext: float, uiso: float, qbroad: float):
    """Calculation grid r0 + k rstep, k < n_out, reaching rmax + rext, with rmin = r0 + k0 rstep
    exactly (r0 < rstep), and n_src >= n_out source bins covering the peaks whose +-5 sigma
    tails reach into it; pairs are needed up to rcut."""
    k0 = int(math.floor(rmin / rstep + 1e-9))
    r0 = rmin - k0 * rstep
    n_out = int(math.ceil((rmax + rext - r0) / rstep - 1e-9)) + 1
    sigma_max = float(peak_sigma(np.array(r0 + n_out * rstep), uiso, qbroad))
    n_src = n_out + int(math.ceil(PEAK_SIGMAS * sigma_max / rstep)) + 2
    return k0, r0, n_out, n_src, r0 + (n_src - 2) * rstep


def _pairs(structure, weights: np.ndarray, rcut: float, use_symmetry: bool):
    """Pair distances up to rcut and weights w_i w_j, over the symmetry-distinct centres when
    that pays (each weighted by its multiplicity). ``weights`` may be [sites, k] (k weight sets)."""
    n_sites = len(structure)
    sphere = 4.0 / 3.0 * math.pi * rcut**3 / structure.volume  # ~ lattice translations needed
    if use_symmetry and n_sites * n_sites * sphere > SYMMETRY_MIN_WORK:
        centres, mult = _symmetry_centres(structure)
    else:
        centres, mult = np.arange(n_sites), np.ones(n_sites)
    expected = len(centres) * n_sites * sphere
    if expected > MAX_PAIRS:
        raise PDFError("too many atom pairs", f"~{expected:.3g} within {rcut:.1f} A")
    weights = np.asarray(weights, dtype=np.float64)
    centre_weights = weights[centres] * np.reshape(mult, (-1,) + (1,) * (weights.ndim - 1))
    return pair_distances(structure, centres, centre_weights, weights, rcut)


@single_blas_thread()  # the neighbour search's [pairs, 3] x [3, translations] products are small
def pdf(structure, rmin: float = RMIN, rmax: float = RMAX, qmin: float = QMIN, qmax: float = QMAX,
        qdamp: float = QDAMP, qbroad: float = QBROAD, uiso: float = UISO, rstep: float = RSTEP,
        termination: bool = True, apply_qmin: bool = False, use_symmetry: bool = True,
        radiation: str = "x-ray") -> tuple[np.ndarray, np.ndarray]:
    """Reduced PDF G(r) (1/A^2) of a periodic crystal on r = rmin, rmin + rstep, ..., rmax.

    PDFgui/PDFfit2 convention (see the module docstring): X-ray weights f = Z, or with
    ``radiation="neutron"`` the coherent scattering lengths b_c, so that a pair weighs
    f_i f_j / <f>^2 (b_i b_j / <b>^2: negative for pairs of opposite-sign b); peak width
    sqrt(2 Uiso (1 + Qbroad^2 r^2)), baseline -4 pi rho0 r, Qdamp envelope, Qmax termination by
    FFT on the grid from r ~ 0 to rmax + six ripples. ``qmin`` only acts with ``apply_qmin``.
    Raises PDFError (with ``.reason``) for structures it cannot handle.
    """
    if not (0 <= rmin < rmax and rstep > 0 and uiso > 0 and qdamp >= 0 and qbroad >= 0):
        raise ValueError(f"bad PDF parameters: rmin={rmin} rmax={rmax} rstep={rstep} uiso={uiso}")
    n_atoms, rho0, weights = _scatterers(structure, radiation)
    terminate = termination and qmax > 0
    rext = N_RIPPLES * 2.0 * math.pi / qmax if terminate else 0.0
    k0, r0, n_out, n_src, rcut = _grid(rmin, rmax, rstep, rext, uiso, qbroad)
    d, w = _pairs(structure, weights, rcut, use_symmetry)
    if not np.any(d <= rmax):
        raise PDFError("no atoms within rmax", f"no pair closer than {rmax:g} A")

    r = r0 + rstep * np.arange(n_out)
    broaden = _broadening_matrix(n_out, n_src, rstep, r0, float(uiso), float(qbroad))
    peaks = broaden @ deposit(d, w, rstep, r0, n_src)
    g = np.divide(peaks, n_atoms * r, out=np.zeros_like(r), where=r > 0) - 4.0 * math.pi * rho0 * r
    if qdamp > 0:
        g *= np.exp(-0.5 * (qdamp * r) ** 2)
    if terminate:
        g = qmax_termination(g, rstep, qmax, qmin if apply_qmin else 0.0)
    k1 = k0 + int(round((rmax - rmin) / rstep)) + 1
    return r[k0:k1].copy(), g[k0:k1].copy()


# ---------------------------------------------------------------- the CNN's input


def model_input(r: np.ndarray, g: np.ndarray, data_rmax: float | None = None) -> np.ndarray:
    """The paper's 209-point input: G zero-padded beyond the data's rmax (default: the last r),
    quadratically interpolated (scipy interp1d, kind="quadratic") onto linspace(1.5, 30, 209),
    then min-max normalised to [0, 1]. The padded zeros are padded *before* normalising, so past
    data_rmax the input holds the normalised level of G = 0, i.e. -min / (max - min)."""
    from scipy.interpolate import interp1d

    r = np.asarray(r, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if r.ndim != 1 or r.shape != g.shape or len(r) < 3:
        raise ValueError("model_input needs matching 1-D r and G with at least 3 points")
    if not np.all(np.isfinite(g)):
        raise PDFError("non-finite PDF")
    data_rmax = float(r[-1]) if data_rmax is None else float(data_rmax)
    keep = r <= data_rmax + 1e-9
    r, g = r[keep], g[keep]
    top = MODEL_GRID[-1]
    if r[-1] < top:  # zero-pad on the data's own step up to 30 A
        step = float(np.median(np.diff(r)))
        pad = np.arange(r[-1] + step, top + step, step)
        r, g = np.concatenate([r, pad]), np.concatenate([g, np.zeros_like(pad)])
    x = interp1d(r, g, kind="quadratic", bounds_error=False, fill_value=0.0)(MODEL_GRID)
    span = x.max() - x.min()
    if span <= 1e-12 * max(1.0, np.abs(x).max()):  # flat input: nothing to normalise
        return np.zeros_like(x)
    return (x - x.min()) / span
