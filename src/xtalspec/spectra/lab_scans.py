"""δ-profiles rendered as measured 2θ scans under drawn conditions, for training through the front end.

The deploy models (issue "Measured data") are trained on what the measured-data front end of
``predict-xrd`` (:func:`xtalspec.spectra.measured.find_peaks` → LP division → 1/d → bins) makes
of a realistic scan, not only on ideal δ-profiles. This module draws one measurement's
conditions (:class:`ScanConditions`), renders the scan in 2θ (:func:`render_scan`) and runs it
through the same front end (:func:`front_end_profile`).

Each augmentation is one step with a neutral value, so an ablation switches it off alone
(:data:`AUGMENTATIONS`, :func:`draw_conditions` ``disabled=``):

``wavelength``            Cu Kα (60 %), Co Kα, Mo Kα (10 % each) or synchrotron 0.3–1.0 Å (20 %);
                          off: always Cu Kα. The front end is told what a user would type: the
                          tube's name (``"CuKa"``, the Kα1/Kα2 weighted mean) or the synchrotron λ.
``kalpha2``               a Kα2 copy at λ(Kα2), half the Kα1 intensity (tubes only); off: Kα1 only.
``width``                 pseudo-Voigt FWHM (lab 0.04–0.25°, synchrotron 0.01–0.05° at 2θ = 0,
                          growing as 1/cos θ), η 0.2–0.9; off: FWHM 0.08°, η 0.5.
``zero_shift``            every peak moved by the same 2θ offset, N(0, 0.04°); off: 0.
``strain``                every d scaled by 1 + ε, ε uniform ±0.5 % (thermal expansion, solid
                          solution): peaks move by −ε tan θ; off: 0.
``preferred_orientation`` March–Dollase factor (r² cos²α + sin²α / r)^(−3/2), r log-uniform
                          0.6–1.6; the profile shard has no hkl, so α is drawn per reflection,
                          isotropically (cos α uniform): the right spread of factors, not their
                          correlation along one zone axis; off: r = 1.
``intensity_drift``       intensities × exp(g · (sin θ − sin θ_mid)), g uniform ±1.5 (absorption,
                          surface roughness, a wrong LP model); off: g = 0.
``background``            decay from low angle + a broad amorphous hump + a linear tilt,
                          0–0.5 × the strongest peak; off: none.
``noise``                 Poisson counting noise, the strongest peak at 10^3–10^5 counts; off: none.

The scanned range is drawn too (start 5–15°, end 60–150° for tubes; synchrotron 1–5° to
30–60°) with 4–8 points per FWHM, since a measured scan rarely covers the model's whole 1/d range.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .measured import PatternError, find_peaks, peak_table, two_theta_from_inv_d, _profile
from .radiation import WAVELENGTHS, lorentz_polarisation
from .xrd import BIN_WIDTH, INV_D_MIN, broaden

AUGMENTATIONS = ("wavelength", "kalpha2", "width", "zero_shift", "strain", "preferred_orientation",
                 "intensity_drift", "background", "noise")
TUBES = {"CuKa": 0.6, "CoKa": 0.1, "MoKa": 0.1}  # the rest: synchrotron
SYNCHROTRON_WAVELENGTH = (0.3, 1.0)  # Å
KA2_RATIO = 0.5
LAB_FWHM = (0.04, 0.25)  # degrees 2θ
SYNCHROTRON_FWHM = (0.01, 0.05)
NEUTRAL_FWHM, NEUTRAL_ETA = 0.08, 0.5
ZERO_SHIFT_SD = 0.04  # degrees
STRAIN = 0.005
MARCH_R = (0.6, 1.6)
DRIFT = 1.5
BACKGROUND = (0.0, 0.5)
COUNTS = (1e3, 1e5)
MAX_POINTS = 12_000  # scans are at most this long (coarser steps for wide, sharp scans)


@dataclasses.dataclass(frozen=True)
class ScanConditions:
    """One drawn measurement. ``wavelength`` places the peaks (Kα1 for tubes); ``told`` is what
    the front end is told (a tube's name or a synchrotron wavelength in Å)."""

    wavelength: float
    told: str
    ka2_wavelength: float | None
    two_theta_range: tuple[float, float]
    step: float
    fwhm: float
    eta: float
    zero_shift: float = 0.0
    strain: float = 0.0
    march_r: float = 1.0
    drift: float = 0.0
    background: float = 0.0
    background_shape: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    counts: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _kalpha1(name: str) -> float:
    return WAVELENGTHS[name + "1"]


def draw_conditions(rng: np.random.Generator, disabled: tuple[str, ...] | frozenset = ()) -> ScanConditions:
    """Draw one measurement's conditions; the augmentations in ``disabled`` take their neutral value.
    Draws are made in a fixed order whatever is disabled, so ablations differ only in what they switch off."""
    unknown = set(disabled) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentations {sorted(unknown)}; choose from {AUGMENTATIONS}")
    u = rng.random(16)
    # radiation
    tube = None
    cumulative = 0.0
    for name, share in TUBES.items():
        cumulative += share
        if u[0] < cumulative:
            tube = name
            break
    if "wavelength" in disabled:
        tube = "CuKa"
    if tube is not None:
        wavelength, told = _kalpha1(tube), tube
        ka2 = WAVELENGTHS[tube + "2"] if "kalpha2" not in disabled else None
        fwhm0 = np.exp(np.log(LAB_FWHM[0]) + u[1] * np.log(LAB_FWHM[1] / LAB_FWHM[0]))
        start = 5.0 + 10.0 * u[2]
        end = 60.0 + 90.0 * u[3]
    else:
        wavelength = SYNCHROTRON_WAVELENGTH[0] + u[4] * (SYNCHROTRON_WAVELENGTH[1] - SYNCHROTRON_WAVELENGTH[0])
        told, ka2 = f"{wavelength:.5f}", None
        fwhm0 = np.exp(np.log(SYNCHROTRON_FWHM[0]) + u[1] * np.log(SYNCHROTRON_FWHM[1] / SYNCHROTRON_FWHM[0]))
        start = 1.0 + 4.0 * u[2]
        end = 30.0 + 30.0 * u[3]
    eta = 0.2 + 0.7 * u[5]
    if "width" in disabled:
        fwhm0, eta = NEUTRAL_FWHM, NEUTRAL_ETA
    points_per_fwhm = 4.0 + 4.0 * u[6]
    step = max(fwhm0 / points_per_fwhm, (end - start) / MAX_POINTS)
    zero = float(rng.normal(0.0, ZERO_SHIFT_SD))
    strain = STRAIN * (2.0 * u[7] - 1.0)
    march_r = float(np.exp(np.log(MARCH_R[0]) + u[8] * np.log(MARCH_R[1] / MARCH_R[0])))
    drift = DRIFT * (2.0 * u[9] - 1.0)
    background = BACKGROUND[0] + u[10] * (BACKGROUND[1] - BACKGROUND[0])
    shape = (float(u[11]), float(u[12]), float(u[13]), float(u[14]))
    counts = float(np.exp(np.log(COUNTS[0]) + u[15] * np.log(COUNTS[1] / COUNTS[0])))
    return ScanConditions(
        wavelength=float(wavelength), told=told, ka2_wavelength=ka2, two_theta_range=(float(start), float(end)),
        step=float(step), fwhm=float(fwhm0), eta=float(eta),
        zero_shift=0.0 if "zero_shift" in disabled else zero,
        strain=0.0 if "strain" in disabled else float(strain),
        march_r=1.0 if "preferred_orientation" in disabled else march_r,
        drift=0.0 if "intensity_drift" in disabled else float(drift),
        background=0.0 if "background" in disabled else float(background), background_shape=shape,
        counts=None if "noise" in disabled else counts,
    )


def bin_centres(bins) -> np.ndarray:
    """1/d (1/Å) of the centres of δ-profile bins."""
    return INV_D_MIN + (np.asarray(bins, dtype=np.float64) + 0.5) * BIN_WIDTH


def march_dollase(r: float, cos_alpha) -> np.ndarray:
    """March–Dollase preferred-orientation factor for angle α between the scattering vector and the
    texture axis; its mean over the sphere is 1 for any r."""
    c2 = np.asarray(cos_alpha, dtype=np.float64) ** 2
    return (r * r * c2 + (1.0 - c2) / r) ** -1.5


def stick_pattern(inv_d, intensity, cond: ScanConditions, rng: np.random.Generator):
    """Peak positions (2θ, degrees) and integrated intensities of one δ-profile under ``cond``,
    Kα2 copies included, LP applied, inside the scanned range. ``rng`` draws the per-reflection
    texture angles (always drawn, so the stream does not depend on ``cond``)."""
    inv_d = np.asarray(inv_d, dtype=np.float64) / (1.0 + cond.strain)
    intensity = np.asarray(intensity, dtype=np.float64) * march_dollase(cond.march_r, rng.random(len(inv_d)))
    lines = [(cond.wavelength, 1.0)]
    if cond.ka2_wavelength is not None:
        lines.append((cond.ka2_wavelength, KA2_RATIO))
    positions, heights = [], []
    lo, hi = cond.two_theta_range
    for wavelength, weight in lines:
        tt = two_theta_from_inv_d(inv_d, wavelength) + cond.zero_shift
        ok = np.isfinite(tt) & (tt > lo) & (tt < hi)
        theta = np.radians(tt[ok] / 2.0)
        mid = np.sin(np.radians((lo + hi) / 4.0))
        factor = weight * lorentz_polarisation(tt[ok]) * np.exp(cond.drift * (np.sin(theta) - mid))
        positions.append(tt[ok])
        heights.append(intensity[ok] * factor)
    return np.concatenate(positions), np.concatenate(heights)


def _background(axis: np.ndarray, cond: ScanConditions) -> np.ndarray:
    a, b, c, d = cond.background_shape
    lo, hi = cond.two_theta_range
    x = (axis - lo) / (hi - lo)
    decay = np.exp(-x / (0.05 + 0.25 * a))
    hump = np.exp(-0.5 * ((x - (0.1 + 0.4 * b)) / (0.05 + 0.15 * c)) ** 2)
    tilt = 0.3 + 0.7 * (d * x + (1.0 - d) * (1.0 - x))
    shape = decay + hump + tilt
    return shape / shape.max()


def render_scan(inv_d, intensity, cond: ScanConditions, rng: np.random.Generator):
    """The scan (2θ axis, counts) of a δ-profile's sticks measured under ``cond``. Peak FWHM grows
    as 1/cos θ from ``cond.fwhm``; rendered in three 2θ segments of their own width."""
    lo, hi = cond.two_theta_range
    axis = np.arange(lo, hi, cond.step)
    positions, heights = stick_pattern(inv_d, intensity, cond, rng)
    scan = np.zeros_like(axis)
    edges = np.linspace(lo, hi, 4)
    for a, b in zip(edges[:-1], edges[1:]):
        inside = (positions >= a) & (positions < b)
        if inside.any():
            fwhm = cond.fwhm / np.cos(np.radians((a + b) / 4.0))
            scan += broaden(positions[inside], heights[inside], axis, fwhm=fwhm, eta=cond.eta)
    top = scan.max() if scan.size and scan.max() > 0 else 1.0
    scan = scan / top
    if cond.background > 0:
        scan = scan + cond.background * _background(axis, cond)
    noise = rng.poisson(np.clip(scan, 0, None) * (cond.counts or 1.0))  # drawn always: a fixed stream
    if cond.counts is not None:
        scan = noise.astype(np.float64)
    return axis, scan


def front_end_profile(two_theta, counts, told) -> tuple[np.ndarray, np.ndarray]:
    """What ``predict-xrd``'s front end makes of a scan: peaks → LP division → 1/d (for the
    wavelength the user gives, ``told``) → sparse bins (indices, values; maximum 1).
    Raises :class:`PatternError` when no peak lands in the model's range."""
    positions, heights = find_peaks(two_theta, counts)
    if len(positions) == 0:
        raise PatternError("<rendered scan>", "no peaks found")
    profile = _profile(peak_table(positions, heights, told), "<rendered scan>", told)
    index = np.flatnonzero(profile)
    return index.astype(np.int32), profile[index].astype(np.float32)


def measured_like_profile(bins, values, rng: np.random.Generator, disabled=()) -> tuple[np.ndarray, np.ndarray, ScanConditions]:
    """One δ-profile (sparse ``bins``, ``values``) → drawn conditions → scan → front end."""
    cond = draw_conditions(rng, disabled)
    axis, scan = render_scan(bin_centres(bins), values, cond, rng)
    index, profile = front_end_profile(axis, scan, cond.told)
    return index, profile, cond
