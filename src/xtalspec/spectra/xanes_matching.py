"""One preprocessing for FEFF and measured K-edge XANES (the sim-to-real gap of issue 17).

A spectrum becomes a model input in four steps, each a function here, and FEFF spectra (the
training data) and measured files (``predict-xanes``) go through the same code,
:func:`prepare`; the only difference is that the simulated spectrum is broadened first, since a
measurement already carries the core-hole lifetime and the beamline resolution:

1. **Broadening** (:func:`broaden`, simulations only) — a convolution with a Lorentzian of FWHM
   ``lorentz_factor`` × the element's K-level width (:data:`CORE_HOLE_WIDTH_EV`, Krause & Oliver,
   J. Phys. Chem. Ref. Data 8, 329 (1979), the values ``xraydb.core_width`` gives) plus
   ``lorentz_extra_ev``, and a Gaussian of FWHM ``gauss_fwhm_ev`` (beamline resolution). FEFF
   already includes the core-hole lifetime in its self-energy (``EXCHANGE 0 0.0 0.0``: no extra
   imaginary part), so the Lorentzian here is *extra* broadening; its width is a choice measured
   by ``xtalspec xanes sim-to-real``, not a physical constant. The defaults (4 × the K width,
   Gaussian 3 eV: 5 eV extra Lorentzian FWHM for Fe) are far more than a lifetime or a
   monochromator adds: they stand for what the ``fast`` preset lacks (a 5 Å FMS cluster gives
   sharper, higher resonances than the measured spectra show) and were chosen on the 24 files of
   the development set (README, "Sim-to-real").
2. **E0** (:func:`edge_e0`) — the reader's rule for measured spectra,
   :func:`xtalspec.spectra.xanes_measured.find_edge` (maximum of the Gaussian-smoothed
   (σ = 1 eV) dμ/dE on the main edge, within the element's tabulated K edge −20…+40 eV, after
   a pre-edge line is subtracted), applied to FEFF spectra as well (without the check that the
   data reach below the tabulated edge: FEFF spectra start just below their own edge).
   ``e0_rule: half_step`` then moves E0 to where the normalised μ crosses 0.5 nearest that
   point (:func:`edge_e0_half_step`): the same rule for both, but stable where an edge has two
   steep parts of similar slope.
3. **Normalisation** (:func:`normalise_spectrum`) — first, for both: the reader's Athena-style
   normalisation (:func:`xtalspec.spectra.xanes_measured.normalise`: pre-edge line over
   E0 −150…−30 eV where the data reach it, else the mean of the first points below E0 −10 eV;
   the post-edge level over E0 + ``post_window``, 15…40 eV by default, the same window for FEFF
   (whose spectra end ~40–60 eV above E0) and measured data; edge step = post − pre at E0, μ
   divided by it). ``"step"`` stops there (edge step 1); ``"max"`` (the default, the paper's
   convention) then divides by the maximum on the grid, so only the pre-edge line matters. On
   the development set "max" gave the better balanced accuracy and distance ratio (the FEFF
   ``fast`` post-edge level 15–40 eV above E0, which sets the edge step, is itself off).
4. **Energy axis** (:func:`on_relative_grid`) — ``"relative"``: the spectrum is put on E − E0
   (its own E0), ``grid_start_ev`` … (``n_points`` × ``step_ev``), −15…+34.5 eV by default, so
   the T4 pre-edge peaks (−12 … −17 eV) are inside. FEFF's absolute edge energies are off by
   several eV and measured calibrations differ from beamline to beamline, so the absolute edge
   position carries no trustworthy information; the per-spectrum E0 costs the chemical shift
   between classes, which the shape keeps. (The old per-element absolute grid with a measured
   spectrum moved onto the median FEFF E0 and refined against the training spectra is
   ``"absolute"`` in the sim-to-real comparison; it is not used for training any more.)

Training adds copies shifted by ``shifts_ev`` (the E0 of a broad measured edge and of a sharp
FEFF edge need not mean the same point of the edge) — :mod:`xtalspec.training.xanes`.

:class:`Preprocessing` holds the choices; the data set records it in its metadata, the model
bundle in ``bundle.json``, and ``predict-xanes`` applies the bundle's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .xanes_grid import on_grid
from .xanes_measured import XanesError, canonical_element, find_edge, normalise

#: K-level widths (eV, FWHM): Krause & Oliver 1979, as tabulated by ``xraydb.core_width``
CORE_HOLE_WIDTH_EV = {"Sc": 0.86, "Ti": 0.94, "V": 1.01, "Cr": 1.08, "Mn": 1.16, "Fe": 1.25, "Co": 1.33,
                      "Ni": 1.44, "Cu": 1.55, "Zn": 1.67}
FINE_STEP_EV = 0.1
ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: the old convention (before issue 17), as :class:`Preprocessing` settings: absolute per-element
#: grid, E0 by ``xanes_grid.edge_energy``, each spectrum divided by its maximum, no broadening
LEGACY = {"energy_axis": "absolute", "normalisation": "max", "lorentz_factor": 0.0, "gauss_fwhm_ev": 0.0,
          "e0_rule": "max_slope"}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The choices of :func:`prepare` (defaults: the choice of the sim-to-real comparison)."""

    lorentz_factor: float = 4.0  # × the K-level width: extra Lorentzian FWHM on FEFF spectra
    lorentz_extra_ev: float = 0.0  # + this (eV)
    gauss_fwhm_ev: float = 3.0  # Gaussian FWHM on FEFF spectra (beamline resolution and what FEFF fast lacks), eV
    e0_rule: str = "half_step"  # "max_slope" (find_edge) | "half_step" (see edge_e0_half_step)
    normalisation: str = "max"  # "max" | "step"
    post_window: tuple = (15.0, 40.0)  # eV above E0: the post-edge level of the edge step
    energy_axis: str = "relative"  # "relative" (E − own E0); "absolute" only in the comparison
    grid_start_ev: float = -15.0
    n_points: int = 100
    step_ev: float = 0.5

    @classmethod
    def from_dict(cls, options: dict | None) -> "Preprocessing":
        options = dict(options or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise ValueError(f"unknown XANES preprocessing settings: {sorted(unknown)}; known: {sorted(names)}")
        if "post_window" in options:
            options["post_window"] = tuple(float(v) for v in options["post_window"])
        pp = cls(**options)
        if pp.normalisation not in ("step", "max"):
            raise ValueError(f"normalisation must be 'step' or 'max', not {pp.normalisation!r}")
        if pp.e0_rule not in ("max_slope", "half_step"):
            raise ValueError(f"e0_rule must be 'max_slope' or 'half_step', not {pp.e0_rule!r}")
        if pp.energy_axis not in ("relative", "absolute"):
            raise ValueError(f"energy_axis must be 'relative' or 'absolute', not {pp.energy_axis!r}")
        return pp

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["post_window"] = list(self.post_window)
        return out

    @property
    def offsets(self) -> np.ndarray:
        """The model grid, eV relative to E0."""
        return self.grid_start_ev + self.step_ev * np.arange(self.n_points)

    def lorentz_fwhm(self, element: str) -> float:
        return self.lorentz_factor * CORE_HOLE_WIDTH_EV[canonical_element(element)] + self.lorentz_extra_ev


# --------------------------------------------------------------------------- the four steps


def _kernel(lorentz_fwhm: float, gauss_fwhm: float, step: float) -> np.ndarray:
    """Normalised Voigt kernel on a ``step`` grid (the Lorentzian cut at ±25 FWHM)."""
    half = max(25.0 * lorentz_fwhm, 4.0 * gauss_fwhm, step)
    x = np.arange(-np.ceil(half / step), np.ceil(half / step) + 1) * step
    kernel = np.zeros_like(x)
    kernel[len(x) // 2] = 1.0
    if lorentz_fwhm > 0:
        gamma = lorentz_fwhm / 2.0
        kernel = gamma / np.pi / (x ** 2 + gamma ** 2)
    if gauss_fwhm > 0:
        sigma = gauss_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        gauss = np.exp(-0.5 * (x / sigma) ** 2)
        kernel = np.convolve(kernel, gauss / gauss.sum(), mode="same")
    return kernel / kernel.sum()


def broaden(energy, mu, lorentz_fwhm: float = 0.0, gauss_fwhm: float = 0.0,
            step: float = FINE_STEP_EV) -> tuple[np.ndarray, np.ndarray]:
    """(energies, μ) convolved with a Lorentzian (FWHM ``lorentz_fwhm``) and a Gaussian (FWHM
    ``gauss_fwhm``), on a ``step`` grid over the spectrum's range (linear interpolation of the
    input); beyond its ends μ is continued with its end values. No broadening: the input sorted."""
    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    order = np.argsort(energy, kind="stable")
    energy, mu = energy[order], mu[order]
    if lorentz_fwhm <= 0 and gauss_fwhm <= 0:
        return energy, mu
    fine = np.arange(energy[0], energy[-1] + step / 2, step)
    values = np.interp(fine, energy, mu)
    kernel = _kernel(lorentz_fwhm, gauss_fwhm, step)
    pad = len(kernel) // 2
    padded = np.concatenate([np.full(pad, values[0]), values, np.full(pad, values[-1])])
    return fine, np.convolve(padded, kernel, mode="valid")


def edge_e0(energy, mu, element: str) -> float:
    """E0 by the measured-spectrum rule (:func:`~xtalspec.spectra.xanes_measured.find_edge`),
    for FEFF and measured spectra alike."""
    return find_edge(energy, mu, element, check_range=False)[0]


def edge_e0_half_step(energy, norm_mu, e0_slope: float, smooth: float = 1.0) -> float:
    """E0 where the normalised μ (edge step 1), Gaussian-smoothed (σ = ``smooth`` eV) on a 0.1 eV
    grid, rises through 0.5: the upward crossing nearest the maximum-slope E0 ``e0_slope``,
    linearly interpolated. Where an edge has two steep parts of similar slope (shoulders, a
    tetrahedral vanadate) the maximum slope can jump between them with noise; the half-height
    point does not. ``e0_slope`` when there is no crossing within 10 eV."""
    from scipy.ndimage import gaussian_filter1d

    energy = np.asarray(energy, dtype=np.float64)
    fine = np.arange(energy[0], energy[-1], FINE_STEP_EV)
    values = gaussian_filter1d(np.interp(fine, energy, norm_mu), smooth / FINE_STEP_EV, mode="nearest")
    ups = np.flatnonzero((values[:-1] < 0.5) & (values[1:] >= 0.5))
    if ups.size == 0:
        return float(e0_slope)
    crossings = fine[ups] + FINE_STEP_EV * (0.5 - values[ups]) / (values[ups + 1] - values[ups])
    best = crossings[int(np.argmin(np.abs(crossings - e0_slope)))]
    return float(best) if abs(best - e0_slope) <= 10.0 else float(e0_slope)


def normalise_spectrum(energy, mu, e0: float, pp: Preprocessing) -> tuple[np.ndarray, dict]:
    """(μ normalised to an edge step of 1, info) — ``pp.normalisation`` "step" and "max" both
    start from the edge step (:func:`~xtalspec.spectra.xanes_measured.normalise` with the
    post-edge window ``pp.post_window``); "max" divides by the maximum on the grid later."""
    return normalise(energy, mu, e0, post=tuple(pp.post_window))


def on_relative_grid(energy, mu, e0: float, pp: Preprocessing) -> tuple[np.ndarray, float]:
    """(μ on E0 + ``pp.offsets``, fraction of the grid the data cover)."""
    return on_grid(np.asarray(energy, dtype=np.float64) - e0, mu, pp.offsets)


def scale_max(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(x))
    return x / peak if peak > 0 else x


# --------------------------------------------------------------------------- the one path


def prepare(energy, mu, element: str, pp: Preprocessing, simulated: bool) -> tuple[np.ndarray, dict]:
    """(model input on the relative grid, info) of one spectrum — FEFF (``simulated``: broadened
    first) or measured (raw, normalised or not: it is normalised here). ``info``: ``e0``,
    ``edge_step``, ``coverage``, ``broadening`` (FWHMs, eV) and the normalisation's ranges.
    XanesError when no edge is found or the normalisation fails."""
    if pp.energy_axis != "relative":
        raise ValueError("prepare() puts spectra on the relative grid; energy_axis 'absolute' is the old path")
    element = canonical_element(element)
    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    broadening = {"lorentz_fwhm_ev": 0.0, "gauss_fwhm_ev": 0.0}
    if simulated:
        broadening = {"lorentz_fwhm_ev": pp.lorentz_fwhm(element), "gauss_fwhm_ev": float(pp.gauss_fwhm_ev)}
        energy, mu = broaden(energy, mu, broadening["lorentz_fwhm_ev"], broadening["gauss_fwhm_ev"])
    e0 = edge_e0(energy, mu, element)
    norm, info = normalise_spectrum(energy, mu, e0, pp)
    info["e0_max_slope"] = e0
    if pp.e0_rule == "half_step":
        e0 = edge_e0_half_step(energy, norm, e0)
    x, coverage = on_relative_grid(energy, norm, e0, pp)
    if pp.normalisation == "max":
        x = scale_max(x)
    info = dict(info, e0=e0, coverage=coverage, broadening=broadening, simulated=bool(simulated))
    return x, info


def prepare_many(energies, mus, element: str, pp: Preprocessing, simulated: bool = True):
    """(inputs (n, n_points), e0 (n,), coverage (n,), errors {row: message}) of many spectra;
    a spectrum that fails gets a row of NaN and its message."""
    rows, e0s, cover, errors = [], [], [], {}
    for i, (energy, mu) in enumerate(zip(energies, mus)):
        try:
            x, info = prepare(energy, mu, element, pp, simulated)
        except XanesError as exc:
            errors[i] = str(exc)
            x, info = np.full(pp.n_points, np.nan), {"e0": np.nan, "coverage": 0.0}
        rows.append(x)
        e0s.append(info["e0"])
        cover.append(info["coverage"])
    return np.array(rows).reshape(len(rows), pp.n_points), np.array(e0s, float), np.array(cover, float), errors
