"""Scheme 2 of Ozaki, Ishida & Kiyobayashi (J. Appl. Cryst. 2025): measured pattern -> model input.

The SpgNet/SpgVolNet models read the "ideal" delta-function profile of :mod:`xtalspec.spectra.xrd`:
I_hkl = |F_hkl|^2 (multiplicity included) accumulated into 10001 equal 1/d bins between
0.1131 and 1.0625 1/Angstrom, maximum 1, no wavelength, no Lorentz-polarisation. A measured
powder pattern I(2theta) is turned into that input in five steps:

1. read the file (:func:`read_pattern`, or :func:`read_peak_list` when it already lists peaks), in
   any format of :mod:`xtalspec.spectra.pattern_formats` (detected on content);
2. find the peaks (:func:`find_peaks`): SNIP background, ``scipy.signal.find_peaks_cwt``
   (as the paper did) with wavelet widths derived from the 2theta step, parabolic refinement;
3. divide each peak height by the Lorentz-polarisation factor (:func:`lorentz_polarisation`,
   from :mod:`xtalspec.spectra.radiation`, as are the wavelength names of :func:`parse_wavelength`);
4. convert 2theta to 1/d = 2 sin(theta) / lambda (Bragg);
5. accumulate into the model's bins and scale the maximum to 1 (:func:`profile_from_peaks`).

Conventions
-----------
* Angles are in degrees of 2theta, wavelengths and d in Angstrom, 1/d in 1/Angstrom.
* Peak intensities are *heights* above the background (the paper does not say whether it
  used heights or areas). With a constant instrumental line shape the height is proportional
  to the integrated intensity.
* The bins, their edges and the accumulation come from :mod:`xtalspec.spectra.xrd`, so a
  measured peak lands in exactly the bin its reflection has in the ideal profile.
* Every :class:`PatternError` message starts with the file (or source) it is about.

Known limitation: a resolved K-alpha2 doublet gives a second, half-height peak about
Delta(lambda)/lambda = 0.25 % higher in 1/d (~25 bins at 1/d = 1 for Cu); the paper corrected
such peaks by hand. Strip K-alpha2 before this step, or pass the data as a peak list.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter, uniform_filter1d
from scipy.signal import find_peaks_cwt, peak_prominences, savgol_filter

from ..utils.textfiles import check_axis
from .pattern_formats import FORMATS, ParsedPattern, PatternError, read_pattern_file
from .pattern_formats import numeric_rows as _numeric_rows  # noqa: F401  (the 2/3-column reader, moved)
from .pattern_formats import split_fields as _split  # noqa: F401
from .radiation import WAVELENGTHS, WavelengthError, lorentz_polarisation, parse_wavelength
from .xrd import BIN_WIDTH, INV_D_MAX, INV_D_MIN, N_BINS, bin_profile

__all__ = [
    "PatternError", "WavelengthError", "WAVELENGTHS", "FORMATS", "parse_wavelength", "read_pattern",
    "read_pattern_with_meta", "read_peak_list", "is_peak_list", "estimate_background", "find_peaks",
    "lorentz_polarisation", "peak_table", "profile_from_peaks", "MeasuredProfile", "profile_from_pattern",
    "raw_profile_from_pattern",
]

# --------------------------------------------------------------------------- reading files

MIN_PATTERN_POINTS = 20  # a scan with fewer points is not a pattern
MIN_PEAKS = 3  # a peak list with fewer peaks says nothing about a space group
MIN_STEP_DEG = 1e-5  # a finer 2theta step is not a measured scan
PEAK_LIST_MAX_POINTS = 200  # auto-detection: shorter, unevenly spaced files are peak lists
EVEN_STEP_TOLERANCE = 0.1  # steps within 10 % of the median step count as evenly spaced
def _read_parsed(path) -> ParsedPattern:
    """The file in whichever format it is (:func:`xtalspec.spectra.pattern_formats.read_pattern_file`),
    values checked (finite, 2theta inside (0, 180)); file order kept."""
    parsed = read_pattern_file(path)
    _check_values(Path(path), parsed.two_theta, parsed.intensity)
    return parsed


def _read_columns(path) -> tuple[np.ndarray, np.ndarray]:
    """(2theta, intensity) of a pattern file in file order, values checked.

    Any format of :data:`FORMATS` (detected on content); for 2- or 3-column text, lines starting
    with '#' or '!' and blank lines are skipped, one non-numeric line before the first data row
    is a header, and a third column (e.g. the esd of .xye files) is ignored.
    """
    parsed = _read_parsed(path)
    return parsed.two_theta, parsed.intensity


def _check_values(path: Path, two_theta: np.ndarray, intensity: np.ndarray) -> None:
    bad = ~(np.isfinite(two_theta) & np.isfinite(intensity))
    if bad.any():
        raise PatternError(path, f"{int(bad.sum())} rows hold non-finite values (nan/inf)")
    outside = (two_theta <= 0.0) | (two_theta >= 180.0)
    if outside.any():
        raise PatternError(path, f"2theta must lie in (0, 180) degrees; found {two_theta[outside][:3].tolist()}")


def _sorted(two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(two_theta, kind="stable")
    return two_theta[order], intensity[order]


def _as_pattern(path, two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checks for a scan; sorts by 2theta and averages repeated 2theta values."""
    if len(two_theta) < MIN_PATTERN_POINTS:
        raise PatternError(path, f"only {len(two_theta)} points; a measured pattern needs at least "
                                 f"{MIN_PATTERN_POINTS} (is it a peak list?)")
    if not (intensity > 0).any():
        raise PatternError(path, "no positive intensity")
    unique, inverse, counts = np.unique(two_theta, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, weights=intensity) / counts
    if len(unique) < MIN_PATTERN_POINTS:
        raise PatternError(path, f"only {len(unique)} distinct 2theta values; need at least {MIN_PATTERN_POINTS}")
    check_axis(unique, path, PatternError, "2theta", "deg", MIN_STEP_DEG, (0.0, 180.0))
    return unique, mean


def _as_peak_list(path, two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checks for a peak list: heights must be >= 0 and one of them > 0; sorted by 2theta."""
    if (intensity < 0).any():
        raise PatternError(path, "a peak list cannot hold negative intensities")
    if (intensity > 0).sum() < MIN_PEAKS:
        raise PatternError(path, f"{int((intensity > 0).sum())} peak(s) with a positive intensity: a peak list needs "
                                 f"at least {MIN_PEAKS}")
    return _sorted(two_theta, intensity)


def read_pattern(path) -> tuple[np.ndarray, np.ndarray]:
    """A measured scan: (2theta in degrees, intensity), sorted by 2theta.

    Text with 2 or 3 columns (.xy, .xye, .csv, .txt, .dat ...), separators comma, space, tab or
    semicolon (with semicolons a comma is read as a decimal comma), comments '#'/'!', at most one
    header line; or any other format of :data:`FORMATS` (XRDML, FullProf, UXD, RIETAN, IGOR, DASH
    .xye, MAUD pairs, Fox XML; bzip2/gzip compressed or not), recognised by content, not by the
    extension. Raises :class:`PatternError` (naming the file) for a missing or empty file,
    non-numeric content, fewer than ``MIN_PATTERN_POINTS`` points, non-finite values or 2theta
    outside (0, 180) degrees.
    """
    return _as_pattern(path, *_read_columns(path))


def read_pattern_with_meta(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`read_pattern` plus what the file says about itself: ``meta["format"]`` (a key of
    :data:`FORMATS`, ``+bz2``/``+gzip`` when compressed), ``meta["wavelength"]`` (Angstrom, or
    None when the file states none) and ``meta["notes"]`` (e.g. how the wavelength was derived)."""
    parsed = _read_parsed(path)
    two_theta, intensity = _as_pattern(path, parsed.two_theta, parsed.intensity)
    return two_theta, intensity, parsed.meta


def read_peak_list(path) -> tuple[np.ndarray, np.ndarray]:
    """A list of peaks (2theta in degrees, height), same file format as :func:`read_pattern`."""
    return _as_peak_list(path, *_read_columns(path))


def is_peak_list(two_theta) -> bool:
    """Auto-detection rule: a file is a peak list when it has fewer than ``MIN_PATTERN_POINTS``
    points, or fewer than ``PEAK_LIST_MAX_POINTS`` points whose 2theta steps are not even (some
    step differs from the median step by more than ``EVEN_STEP_TOLERANCE`` of it)."""
    x = np.sort(np.asarray(two_theta, dtype=np.float64))
    if len(x) < MIN_PATTERN_POINTS:
        return True
    if len(x) >= PEAK_LIST_MAX_POINTS:
        return False
    steps = np.diff(x)
    median = np.median(steps)
    return bool(median <= 0 or np.max(np.abs(steps - median)) > EVEN_STEP_TOLERANCE * median)


# --------------------------------------------------------------------------- peak finding

FWHM_RANGE = (0.04, 0.6)  # degrees 2theta: line widths find_peaks_cwt looks for
BACKGROUND_WIDTH = 1.5  # degrees 2theta: SNIP clipping window (full width)
BACKGROUND_SMOOTH = 0.3  # degrees 2theta: moving average applied before SNIP
MAX_WAVELET_WIDTHS = 24
CWT_MIN_RIDGE = 3  # a ridge must span this many wavelet widths


def _uniform(two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The scan on an even grid (linear interpolation when the steps vary by > 1 %) and its step."""
    steps = np.diff(two_theta)
    step = float(np.median(steps))
    if step <= 0:
        raise ValueError("2theta values must increase")
    if np.max(np.abs(steps - step)) > 0.01 * step:
        grid = np.arange(two_theta[0], two_theta[-1] + 0.5 * step, step)
        return grid, np.interp(grid, two_theta, intensity), step
    return two_theta, intensity, step


def _smooth(y: np.ndarray, points: int) -> np.ndarray:
    """Savitzky-Golay (quadratic) over an odd window of at least 5 points (keeps peak heights)."""
    window = max(5, int(points) | 1)
    if window >= len(y):
        return y.copy()
    return savgol_filter(y, window, 2)


def _lls(y: np.ndarray) -> np.ndarray:
    """Log-log-square-root operator of SNIP: compresses the dynamic range of counts."""
    return np.log(np.log(np.sqrt(np.clip(y, 0.0, None) + 1.0) + 1.0) + 1.0)


def _lls_inverse(v: np.ndarray) -> np.ndarray:
    return (np.exp(np.exp(v) - 1.0) - 1.0) ** 2 - 1.0


def _edge_extension(v: np.ndarray, m: int) -> np.ndarray:
    """m values continuing v to the left of index 0 along the line through the minima of v over
    [0, k) and [k, 2k), k <= m: the local trend of the background, not lifted by a peak near
    the end (padding with the end value would make a falling background concave there)."""
    k = min(m, len(v) // 2)
    if k < 2:
        return np.full(m, v[0])
    a = int(np.argmin(v[:k]))
    b = k + int(np.argmin(v[k : 2 * k]))
    slope = (v[b] - v[a]) / (b - a)
    return v[a] + slope * (np.arange(-m, 0) - a)


def _snip(y: np.ndarray, half_window: int) -> np.ndarray:
    """SNIP clipping (Ryan et al. 1988; Morhac 2008): for p = 1..m, v_i <- min(v_i, (v_{i-p}+v_{i+p})/2).

    Works on the LLS-transformed signal; both ends are extended by m points along the local
    background trend (:func:`_edge_extension`) so that the ends are clipped like the middle.
    """
    m = max(1, int(half_window))
    v0 = _lls(y)
    v = np.concatenate([_edge_extension(v0, m), v0, _edge_extension(v0[::-1], m)[::-1]])
    for p in range(1, m + 1):
        mean = 0.5 * (v[: -2 * p] + v[2 * p :])
        np.minimum(v[p:-p], mean, out=v[p:-p])
    return _lls_inverse(v[m:-m])


def estimate_background(two_theta, intensity, width: float = BACKGROUND_WIDTH,
                        smooth_width: float = BACKGROUND_SMOOTH) -> np.ndarray:
    """Smooth background under the peaks: SNIP with a clipping window of ``width`` degrees 2theta.

    The scan is first averaged over ``smooth_width`` degrees (moving average: no negative side
    lobes next to strong peaks), so the clipping follows the mean of the noise rather than its
    lower envelope. ``width`` must exceed a peak (or a cluster of overlapping peaks) and stay
    below the scale of the background's curvature. Assumes an evenly stepped scan.
    """
    x = np.asarray(two_theta, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    step = float(np.median(np.diff(x)))
    smoothed = uniform_filter1d(y, max(1, round(smooth_width / step)) | 1, mode="nearest")
    return _snip(smoothed, round(0.5 * width / step))


def _wavelet_widths(step: float, fwhm_range: tuple[float, float]) -> np.ndarray:
    """Ricker widths in points: half of the expected FWHMs divided by the step, at most
    ``MAX_WAVELET_WIDTHS`` of them, geometrically spaced."""
    low = max(1.0, 0.5 * fwhm_range[0] / step)
    high = max(low + 1.0, 0.5 * fwhm_range[1] / step)
    return np.unique(np.round(np.geomspace(low, high, MAX_WAVELET_WIDTHS)))


def _cwt_candidates(net: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``find_peaks_cwt`` indices on the net scan, mirrored at both ends first so that the
    wavelet convolution sees no artificial step at the ends of the scan."""
    pad = min(len(net) - 1, int(5 * widths[-1]))
    padded = np.pad(net, pad, mode="reflect")
    found = find_peaks_cwt(padded, widths, min_snr=1.0, min_length=CWT_MIN_RIDGE,
                           window_size=len(padded) // 20 + 1) - pad
    return found[(found >= 0) & (found < len(net))]


def _local_noise(y: np.ndarray, window: int) -> np.ndarray:
    """Point-to-point noise of ``y`` around each point: 1.4826 x running median of |first
    difference| / sqrt(2) (robust to peaks; follows the counting statistics along the scan)."""
    jumps = np.abs(np.diff(y, append=y[-1]))
    return 1.4826 / np.sqrt(2.0) * median_filter(jumps, size=max(51, int(window) | 1), mode="nearest")


def _prominences(net: np.ndarray, index: np.ndarray, window: int) -> np.ndarray:
    """How far each local maximum rises above the higher of the lowest points on either side
    within +-window/2 points (scipy's peak prominence): a noise ripple on the tail of a strong
    line has a large height above background but a small prominence."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when a prominence is 0
        return peak_prominences(net, index, wlen=max(3, int(window) | 1))[0]


def _parabola_vertex(y: np.ndarray, i: int) -> tuple[float, float]:
    """Offset (in points, within +-0.5) and value of the parabola through y[i-1], y[i], y[i+1]."""
    if i <= 0 or i >= len(y) - 1:
        return 0.0, float(y[i])
    a, b, c = y[i - 1], y[i], y[i + 1]
    curvature = a - 2.0 * b + c
    if curvature >= 0:
        return 0.0, float(b)
    offset = float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5))
    return offset, float(b - 0.25 * (a - c) * offset)


def _half_width(y: np.ndarray, i: int, limit: int) -> int:
    """Half width at half maximum of the peak at i, in points (walk out until below half)."""
    half = 0.5 * y[i]
    lo, hi = i, i
    while lo > 0 and i - lo < limit and y[lo - 1] >= half:
        lo -= 1
    while hi < len(y) - 1 and hi - i < limit and y[hi + 1] >= half:
        hi += 1
    return max(1, (hi - lo) // 2)


def _fit_top(y: np.ndarray, i: int, half: int) -> tuple[float, float]:
    """Centre (fractional index) and height of a peak: vertex of the least-squares parabola
    through the points within +-half of the maximum; the window is then re-centred on that
    vertex and the fit repeated once.
    Falls back to the 3-point parabola when the fit is not a maximum near i."""
    centre, height = i + _parabola_vertex(y, i)[0], _parabola_vertex(y, i)[1]
    for _ in range(2):
        mid = int(round(centre))
        lo, hi = max(0, mid - half), min(len(y), mid + half + 1)
        if hi - lo < 4:
            break
        t = np.arange(lo, hi) - mid
        c2, c1, c0 = np.polyfit(t, y[lo:hi], 2)
        vertex = -c1 / (2.0 * c2) if c2 < 0 else np.inf
        if abs(vertex) > half:
            break
        centre, height = mid + vertex, c0 - c1 * c1 / (4.0 * c2)
    return float(centre), float(height)


def _local_maxima(net: np.ndarray, candidates, radius: int) -> np.ndarray:
    """Each candidate moved to the maximum of ``net`` within +-radius points; duplicates removed."""
    tops = {lo + int(np.argmax(net[lo:hi]))
            for lo, hi in ((max(0, c - radius), min(len(net), c + radius + 1)) for c in candidates)}
    return np.array(sorted(tops), dtype=np.intp)


def _refine(net: np.ndarray, tops: np.ndarray, max_half: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (fractional indices) and heights of the peaks at ``tops``. The fit half-window is
    the scan's typical half width at half maximum (median over the 5 highest peaks), so that all
    peaks are fitted alike and a neighbouring peak beyond one FWHM is not pulled in."""
    strongest = tops[np.argsort(net[tops])[::-1][:5]]
    half = int(np.median([_half_width(net, i, max_half) for i in strongest]))
    fits = np.array([_fit_top(net, i, half) for i in tops])
    return fits[:, 0], fits[:, 1]


def find_peaks(two_theta, intensity, *, min_rel_height: float = 0.002, min_snr: float = 4.0,
               fwhm_range: tuple[float, float] = FWHM_RANGE,
               background_width: float = BACKGROUND_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions (degrees 2theta) and heights above background of a measured scan.

    1. background: :func:`estimate_background` (SNIP, ``background_width`` degrees);
    2. candidates: ``scipy.signal.find_peaks_cwt`` on the background-subtracted scan with Ricker
       widths from ``0.5 * fwhm_range[0] / step`` to ``0.5 * fwhm_range[1] / step`` points (the
       half widths of the lines looked for, in units of the 2theta step);
    3. refinement: the local maximum of the (Savitzky-Golay smoothed) net scan within
       +-``fwhm_range[0] / step`` points, then the vertex of a least-squares parabola over
       +-HWHM points around it (HWHM: median half width of the 5 highest peaks; a 3-point
       parabola when that fails); the height is the vertex value;
    4. selection: the height and the prominence (rise above the neighbouring minima within
       ``background_width``) must both exceed ``min_snr`` times the local point-to-point noise,
       and the height ``min_rel_height`` times the highest peak (low by default: after LP
       division a weak high-angle peak can matter as much as a strong low-angle one).

    The scan is put on an even 2theta grid first when its steps vary (linear interpolation).
    """
    x, y = _sorted(np.asarray(two_theta, dtype=np.float64), np.asarray(intensity, dtype=np.float64))
    x, y, step = _uniform(x, y)
    net = _smooth(y, round(fwhm_range[0] / step)) - estimate_background(x, y, background_width)
    candidates = _cwt_candidates(net, _wavelet_widths(step, fwhm_range))
    index = _local_maxima(net, candidates, max(2, round(fwhm_range[0] / step)))
    if len(index) == 0:
        return np.zeros(0), np.zeros(0)
    centre, height = _refine(net, index, max(2, round(0.5 * fwhm_range[1] / step)))
    positions = x[0] + centre * step
    sigma = _local_noise(y, round(2.0 * background_width / step))[index]
    prominence = _prominences(net, index, round(background_width / step))
    keep = (np.minimum(height, prominence) > min_snr * sigma) & (height >= min_rel_height * height.max())
    return positions[keep], height[keep]


# --------------------------------------------------------------------------- conversion


def inv_d_from_two_theta(two_theta_deg, wavelength: float) -> np.ndarray:
    """Bragg's law: 1/d = 2 sin(theta) / lambda (1/Angstrom)."""
    return 2.0 * np.sin(np.radians(np.asarray(two_theta_deg, dtype=np.float64)) / 2.0) / wavelength


def two_theta_from_inv_d(inv_d, wavelength: float) -> np.ndarray:
    """Inverse of :func:`inv_d_from_two_theta`; nan where 1/d > 2/lambda (unreachable)."""
    sin_theta = np.asarray(inv_d, dtype=np.float64) * wavelength / 2.0
    with np.errstate(invalid="ignore"):
        return np.degrees(2.0 * np.arcsin(np.where(sin_theta <= 1.0, sin_theta, np.nan)))


def bin_index(inv_d) -> np.ndarray:
    """The model's bin of each 1/d (floor, as in :func:`xtalspec.spectra.xrd.bin_profile`); -1 outside."""
    inv_d = np.asarray(inv_d, dtype=np.float64)
    inside = (inv_d > INV_D_MIN) & (inv_d < INV_D_MAX)
    index = np.floor((inv_d - INV_D_MIN) / BIN_WIDTH)
    return np.where(inside, np.clip(index, 0, N_BINS - 1), -1).astype(np.int64)


def _model_range_text(wavelength: float) -> str:
    lo, hi = two_theta_from_inv_d([INV_D_MIN, INV_D_MAX], wavelength)
    high = f"{hi:.2f}" if np.isfinite(hi) else "beyond 180 (unreachable)"
    return (f"the model's 1/d range {INV_D_MIN}-{INV_D_MAX} 1/Angstrom "
            f"(2theta {lo:.2f}-{high} degrees at {wavelength:g} Angstrom)")


def peak_table(two_theta, heights, wavelength, *, monochromator_two_theta: float | None = None) -> pd.DataFrame:
    """One row per peak: ``two_theta``, ``inv_d``, ``height``, ``lp``, ``intensity`` (height / LP,
    scaled so the strongest peak inside the model's range is 1), ``bin`` (-1 outside the range)."""
    lam = parse_wavelength(wavelength)
    two_theta = np.asarray(two_theta, dtype=np.float64)
    heights = np.asarray(heights, dtype=np.float64)
    lp = lorentz_polarisation(two_theta, monochromator_two_theta)
    inv_d = inv_d_from_two_theta(two_theta, lam)
    corrected = heights / lp
    bins = bin_index(inv_d)
    inside = (bins >= 0) & (corrected > 0)
    top = corrected[inside].max() if inside.any() else 1.0
    return pd.DataFrame({"two_theta": two_theta, "inv_d": inv_d, "height": heights, "lp": lp,
                         "intensity": corrected / top, "bin": bins})


def _profile(table: pd.DataFrame, source, wavelength: float) -> np.ndarray:
    inside = (table["bin"] >= 0) & (table["intensity"] > 0)
    if not inside.any():
        covered = f"{table['inv_d'].min():.4f}-{table['inv_d'].max():.4f}" if len(table) else "nothing"
        raise PatternError(source, f"none of the {len(table)} peaks falls inside {_model_range_text(wavelength)}; "
                                   f"the peaks cover 1/d {covered} 1/Angstrom")
    return bin_profile(table["inv_d"].to_numpy()[inside], table["intensity"].to_numpy()[inside])


def profile_from_peaks(two_theta, heights, wavelength, *, monochromator_two_theta: float | None = None,
                       source: str = "<peak list>") -> np.ndarray:
    """The model input (N_BINS floats, maximum 1) from peaks at ``two_theta`` with ``heights``.

    Heights are divided by the LP factor, 2theta converted to 1/d for ``wavelength`` (a name or
    Angstrom), peaks outside 0.1131 < 1/d < 1.0625 dropped, the rest accumulated into the bins.
    Raises :class:`PatternError` (about ``source``) when no peak falls inside the range.
    """
    lam = parse_wavelength(wavelength)
    table = peak_table(two_theta, heights, lam, monochromator_two_theta=monochromator_two_theta)
    return _profile(table, source, lam)


# --------------------------------------------------------------------------- whole pipeline


@dataclass
class MeasuredProfile:
    """A measured pattern converted to the model's input.

    ``inv_d_range`` is the 1/d span of the data (the scan, or the peaks of a peak list);
    ``coverage`` the fraction of the model's 1/d range (0.1131-1.0625) that span covers.
    ``wavelength`` is the one used; ``file_wavelength`` the one the file states (None if none),
    ``format`` the file's format (a key of :data:`FORMATS`).
    """

    source: str
    wavelength: float
    profile: np.ndarray
    peaks: pd.DataFrame
    two_theta_range: tuple[float, float]
    inv_d_range: tuple[float, float]
    coverage: float
    from_peak_list: bool
    file_wavelength: float | None = None
    format: str = "columns"


def _coverage(inv_d_range: tuple[float, float]) -> float:
    overlap = min(inv_d_range[1], INV_D_MAX) - max(inv_d_range[0], INV_D_MIN)
    return float(max(0.0, overlap) / (INV_D_MAX - INV_D_MIN))


#: ``wavelength`` values that mean "the wavelength the file states"
FROM_FILE = (None, "file", "auto")


def _from_file(wavelength) -> bool:
    return wavelength is None or (isinstance(wavelength, str) and wavelength.strip().lower() in FROM_FILE)


def _wavelength_for(path, wavelength) -> float | None:
    """The caller's wavelength in Angstrom, or None when it is to come from the file."""
    if _from_file(wavelength):
        return None
    try:
        return parse_wavelength(wavelength)
    except WavelengthError as exc:
        raise PatternError(path, str(exc)) from None


def _resolve_wavelength(path, given: float | None, parsed: ParsedPattern) -> float:
    """The given wavelength wins over the file's; without one, the file's; else an error."""
    if given is not None:
        return given
    if parsed.wavelength is None:
        raise PatternError(path, f"no wavelength given and the file ({parsed.format} format) states none; "
                                 "give one (CuKa, MoKa, ... or a value in Angstrom)")
    return parsed.wavelength


def profile_from_pattern(path, wavelength=None, peak_list: bool | None = None, *,
                         monochromator_two_theta: float | None = None, **peak_options) -> MeasuredProfile:
    """Read ``path``, find its peaks and build the model input for ``wavelength``.

    ``wavelength``: a name ("CuKa") or Angstrom; None (or "file") takes the wavelength the file
    states (XRDML, UXD, DASH .xye, Fox XML). A given wavelength wins over the file's; both are
    kept in the result (``wavelength``, ``file_wavelength``).
    ``peak_list``: True reads the file as a peak list, False as a scan, None decides by
    :func:`is_peak_list`. ``peak_options`` go to :func:`find_peaks`. Raises
    :class:`PatternError` naming the file when the wavelength is unknown (or neither given nor
    stated by the file), the file unreadable, the 2theta range does not overlap the model's 1/d
    range, or no peak is found inside it.
    """
    given = _wavelength_for(path, wavelength)
    parsed = _read_parsed(path)
    lam = _resolve_wavelength(path, given, parsed)
    raw = parsed.two_theta, parsed.intensity
    as_peaks = is_peak_list(raw[0]) if peak_list is None else bool(peak_list)
    two_theta, intensity = (_as_peak_list if as_peaks else _as_pattern)(path, *raw)
    tt_range = (float(two_theta[0]), float(two_theta[-1]))
    inv_d_range = tuple(float(v) for v in inv_d_from_two_theta(tt_range, lam))
    coverage = _coverage(inv_d_range)
    if inv_d_range[1] <= INV_D_MIN or inv_d_range[0] >= INV_D_MAX:
        raise PatternError(path, f"2theta {tt_range[0]:.2f}-{tt_range[1]:.2f} degrees covers 1/d "
                                 f"{inv_d_range[0]:.4f}-{inv_d_range[1]:.4f} 1/Angstrom, "
                                 f"outside {_model_range_text(lam)}")
    positions, heights = (two_theta, intensity) if as_peaks else find_peaks(two_theta, intensity, **peak_options)
    if len(positions) == 0:
        raise PatternError(path, "no peaks found in the scan (if it lists peaks, pass peak_list=True)")
    table = peak_table(positions, heights, lam, monochromator_two_theta=monochromator_two_theta)
    profile = _profile(table, path, lam)
    return MeasuredProfile(str(path), lam, profile, table, tt_range, inv_d_range, coverage, as_peaks,
                           parsed.wavelength, parsed.format)


def raw_profile_from_pattern(path, wavelength=None, *,
                             monochromator_two_theta: float | None = None) -> MeasuredProfile:
    """A whole scan, without peak picking or background removal, on the model's 1/d grid: for
    models that read raw laboratory patterns (PADNet, trained on δ-profiles rendered with line
    broadening, counting noise and backgrounds). Intensities are divided by the LP factor (the
    δ-profiles carry none), interpolated linearly at the bin centres inside the scanned 1/d
    span (0 outside it), shifted so the smallest value inside is 0 and scaled to a maximum of 1.
    ``wavelength`` as in :func:`profile_from_pattern` (None: the file's).
    Raises :class:`PatternError` naming the file for peak lists, no overlap with the model's
    range, or a scan that is flat once resampled.
    """
    given = _wavelength_for(path, wavelength)
    parsed = _read_parsed(path)
    lam = _resolve_wavelength(path, given, parsed)
    raw = parsed.two_theta, parsed.intensity
    if is_peak_list(raw[0]):
        raise PatternError(path, "a raw-pattern model needs the whole scan, not a peak list")
    two_theta, intensity = _as_pattern(path, *raw)
    tt_range = (float(two_theta[0]), float(two_theta[-1]))
    if not np.ptp(intensity) > 0:
        raise PatternError(path, "the scan is flat: every intensity is the same")
    inv_d = inv_d_from_two_theta(two_theta, lam)
    inv_d_range = (float(inv_d[0]), float(inv_d[-1]))
    if inv_d_range[1] <= INV_D_MIN or inv_d_range[0] >= INV_D_MAX:
        raise PatternError(path, f"2theta {tt_range[0]:.2f}-{tt_range[1]:.2f} degrees covers 1/d "
                                 f"{inv_d_range[0]:.4f}-{inv_d_range[1]:.4f} 1/Angstrom, "
                                 f"outside {_model_range_text(lam)}")
    corrected = intensity / lorentz_polarisation(two_theta, monochromator_two_theta)
    centres = INV_D_MIN + (np.arange(N_BINS) + 0.5) * BIN_WIDTH
    inside = (centres >= inv_d_range[0]) & (centres <= inv_d_range[1])
    profile = np.zeros(N_BINS, dtype=np.float64)
    profile[inside] = np.interp(centres[inside], inv_d, corrected)
    profile[inside] -= profile[inside].min()
    top = profile.max()
    if not np.isfinite(top) or top <= 0:
        raise PatternError(path, "the scan is flat on the model's 1/d grid")
    empty = pd.DataFrame(columns=["two_theta", "inv_d", "height", "lp", "intensity", "bin"])
    return MeasuredProfile(str(path), lam, (profile / top).astype(np.float32), empty, tt_range, inv_d_range,
                           _coverage(inv_d_range), False, parsed.wavelength, parsed.format)
