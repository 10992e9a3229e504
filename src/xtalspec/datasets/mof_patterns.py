"""Powder-pattern data for one-to-one MOF identification (paper 001): noise augmentation of
theoretical patterns, baseline-noise pools, perturbed held-out test patterns and the paper's FFT
denoising of measured patterns.

Conventions
-----------
* **Axis** — every pattern is a row of :data:`N_POINTS` = 2,251 intensities on
  :data:`TWO_THETA` = ``np.linspace(5, 50, 2251)`` (Cu Kα, 0.02° steps).
* **Scaling** — every pattern is *max-normalised* (divided by its own maximum, so the strongest
  point is 1) before anything else is done to it; noise values are taken from max-normalised
  patterns too, so a noise value of 0.05 means "5 % of the strongest peak of the pattern it came
  from", whatever the count level of that measurement.
* **Augmentation** (:func:`augment_with_noise`) — the paper's scheme: a variant keeps the
  :data:`N_KEEP` = 401 strongest points of the max-normalised theoretical pattern unchanged (the
  "peaks") and *replaces* each of the other 1,850 points by a value drawn from a pool of baseline
  noise values; :data:`N_VARIANTS` = 72 variants per MOF, split 4:1 into training and validation
  (:func:`augmented_split`).
* **Noise pools** — :func:`baseline_noise_from_measured` takes the values of measured patterns
  away from their peaks (the points outside the strongest ``n_keep`` points dilated by ``guard``
  points on each side). Without measured patterns :func:`synthetic_noise_pool` is the documented
  fallback (smooth background + Poisson counting noise, see :data:`SYNTHETIC_NOISE_MODEL`); every
  output derived from it must say so — :func:`noise_pool` returns the ``noise_source`` string
  (:data:`SYNTHETIC_NOISE` or :data:`MEASURED_NOISE`) that callers write into their tables.
* **Held-out tests** (:func:`perturbed_test_patterns`) — peak shift, intensity scaling against
  the background, extra Gaussian broadening, background and Poisson noise; drawn from a generator
  the caller seeds separately from the training augmentation (e.g. ``default_rng([seed, 2])``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..spectra.xrd import POWDER_N_POINTS, POWDER_TWO_THETA

TWO_THETA_RANGE = POWDER_TWO_THETA  # 5-50 degrees: the powder-pattern engine's default axis
N_POINTS = POWDER_N_POINTS  # 2251
TWO_THETA = np.linspace(*TWO_THETA_RANGE, N_POINTS)
STEP = float(TWO_THETA[1] - TWO_THETA[0])  # 0.02°
N_KEEP = 401
N_VARIANTS = 72
VAL_FRACTION = 0.2  # 4:1 train/validation
NOISE_POOL_SIZE = 200_000  # synthetic noise values drawn when no measured patterns are given
# held-out test perturbations (:func:`perturbed_test_patterns`)
TEST_PER_MOF = 3  # perturbed test patterns per MOF
SHIFT_DEG = 0.1  # peak shift, uniform in +-SHIFT_DEG degrees
SCALE = (0.7, 1.3)  # peak-to-background scaling
BROADENING = (0.0, 0.1)  # extra Gaussian FWHM, degrees
# the paper's FFT rule (:func:`fft_denoise`)
KEEP_BINS = 150
FFT_THRESHOLD = 1.0
CHECK_FROM = 200

MEASURED_NOISE = "measured baseline noise"
SYNTHETIC_NOISE = "synthetic noise"

#: the synthetic background/noise model of :func:`synthetic_noise_pool` (and of the test
#: perturbations); ranges are drawn uniformly per synthetic pattern, ``peak_counts``
#: log-uniformly. Intensities are fractions of the strongest peak (max-normalised patterns);
#: ``t = (2θ − 5°) / 45°`` runs from 0 to 1 over the axis.
SYNTHETIC_NOISE_MODEL = {
    "exp_amplitude": (0.02, 0.15),  # A in A·exp(−(2θ − 5°)/τ): low-angle air / amorphous scatter
    "exp_decay_deg": (3.0, 15.0),  # τ (degrees 2θ)
    "poly_c0": (0.01, 0.06),  # c0 + c1·t + c2·t²: slowly varying background
    "poly_c1": (-0.02, 0.02),
    "poly_c2": (-0.02, 0.02),
    "floor": 0.002,  # the background never drops below this fraction
    "peak_counts": (500.0, 20000.0),  # counts at the strongest peak: sets the Poisson noise level
}


class NoisePool(NamedTuple):
    values: np.ndarray  # 1-D pool of max-normalised noise values
    model: dict  # how the pool was made (for the outputs' metadata)
    noise_source: str  # MEASURED_NOISE | SYNTHETIC_NOISE: write it into every output


def _rng(rng) -> np.random.Generator:
    return np.random.default_rng(rng)


def normalise_max(patterns: np.ndarray) -> np.ndarray:
    """Each pattern (row) divided by its maximum (float64); an all-zero row stays zero."""
    x = np.asarray(patterns, dtype=np.float64)
    peak = x.max(axis=-1, keepdims=True)
    return np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)


def strongest_points_mask(pattern: np.ndarray, n_keep: int = N_KEEP) -> np.ndarray:
    """Boolean mask of the ``n_keep`` highest points of a 1-D pattern (ties broken by position,
    lower 2θ first, so exactly ``n_keep`` points are kept)."""
    pattern = np.asarray(pattern)
    if pattern.ndim != 1:
        raise ValueError("strongest_points_mask takes one 1-D pattern")
    n_keep = min(int(n_keep), pattern.size)
    mask = np.zeros(pattern.size, dtype=bool)
    mask[np.argsort(-pattern, kind="stable")[:n_keep]] = True
    return mask


def augment_with_noise(pattern: np.ndarray, noise_pool: np.ndarray, n_variants: int = N_VARIANTS,
                       n_keep: int = N_KEEP, rng=None) -> np.ndarray:
    """``n_variants`` noisy copies (float32, (n_variants, n_points)) of one theoretical pattern.

    The pattern is max-normalised; each variant keeps its ``n_keep`` strongest points and fills
    every other point with a value of ``noise_pool`` (max-normalised baseline values, see
    :func:`noise_pool`): a random sample *without replacement* — a random permutation of a random
    subset of the pool — when the pool holds at least as many values as there are points to
    fill, otherwise with replacement. Each variant draws its own sample.
    """
    rng = _rng(rng)
    x = normalise_max(pattern)
    pool = np.asarray(noise_pool, dtype=np.float64).ravel()
    if pool.size == 0:
        raise ValueError("the noise pool is empty")
    keep = strongest_points_mask(x, n_keep)
    fill = np.flatnonzero(~keep)
    replace = pool.size < fill.size
    out = np.repeat(x[None, :], n_variants, axis=0)
    for row in out:
        row[fill] = rng.choice(pool, fill.size, replace=replace)
    return out.astype(np.float32)


def augmented_split(patterns: np.ndarray, noise_pool: np.ndarray, n_variants: int = N_VARIANTS,
                    n_keep: int = N_KEEP, val_fraction: float = VAL_FRACTION, rng=None):
    """(x_train, y_train, x_val, y_val): :func:`augment_with_noise` for every MOF (row of
    ``patterns``, class index = row number), its variants split at random ``1 − val_fraction``
    : ``val_fraction`` (4:1; 58 / 14 of 72) per MOF."""
    rng = _rng(rng)
    n_val = int(round(val_fraction * n_variants))
    xs_tr, ys_tr, xs_val, ys_val = [], [], [], []
    for cls, pattern in enumerate(np.asarray(patterns)):
        variants = augment_with_noise(pattern, noise_pool, n_variants, n_keep, rng)
        order = rng.permutation(n_variants)
        xs_val.append(variants[order[:n_val]])
        xs_tr.append(variants[order[n_val:]])
        ys_val.append(np.full(n_val, cls, dtype=np.int64))
        ys_tr.append(np.full(n_variants - n_val, cls, dtype=np.int64))
    return np.concatenate(xs_tr), np.concatenate(ys_tr), np.concatenate(xs_val), np.concatenate(ys_val)


def baseline_noise_from_measured(patterns: np.ndarray, n_keep: int = N_KEEP, guard: int = 5) -> np.ndarray:
    """1-D pool of baseline values of measured patterns (rows, or one 1-D pattern).

    Each pattern is max-normalised; its peak regions — the ``n_keep`` strongest points, widened
    by ``guard`` points (0.1° for the default 5) on each side so that peak tails are dropped too —
    are removed, and the remaining values (background plus counting noise, *not* background
    subtracted, as the paper's permuted baselines) are pooled over all patterns.
    """
    x = normalise_max(np.atleast_2d(patterns))
    pool = []
    for row in x:
        peaks = strongest_points_mask(row, n_keep)
        if guard > 0:
            peaks = ndimage.binary_dilation(peaks, structure=np.ones(2 * int(guard) + 1, dtype=bool))
        pool.append(row[~peaks])
    return np.concatenate(pool)


def _draw(rng: np.random.Generator, spec, log: bool = False) -> float:
    if np.isscalar(spec):
        return float(spec)
    lo, hi = float(spec[0]), float(spec[1])
    if log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


def synthetic_background(rng, model: dict | None = None, two_theta: np.ndarray = TWO_THETA) -> tuple[np.ndarray, dict]:
    """(background as a fraction of the strongest peak, drawn parameters) of the synthetic model."""
    rng = _rng(rng)
    m = SYNTHETIC_NOISE_MODEL | (model or {})
    p = {k: _draw(rng, m[k]) for k in ("exp_amplitude", "exp_decay_deg", "poly_c0", "poly_c1", "poly_c2")}
    p["peak_counts"] = _draw(rng, m["peak_counts"], log=True)
    t = (two_theta - two_theta[0]) / (two_theta[-1] - two_theta[0])
    background = (p["exp_amplitude"] * np.exp(-(two_theta - two_theta[0]) / p["exp_decay_deg"])
                  + p["poly_c0"] + p["poly_c1"] * t + p["poly_c2"] * t ** 2)
    return np.maximum(background, float(m["floor"])), p


def synthetic_noise_pool(n: int, rng=None, n_patterns: int | None = None, model: dict | None = None) -> NoisePool:
    """The fallback noise pool when no measured patterns are given: ``n`` values of synthetic
    baselines, labelled :data:`SYNTHETIC_NOISE`.

    Each synthetic baseline is a background ``b(2θ)`` (:func:`synthetic_background`:
    ``A·exp(−(2θ−5°)/τ) + c0 + c1·t + c2·t²``, parameters drawn in the ranges of
    :data:`SYNTHETIC_NOISE_MODEL`) on the 2,251-point axis, in counts ``N·b`` for a pattern
    whose strongest peak has ``N`` counts (``peak_counts``, log-uniform), with Poisson counting
    noise, divided by ``N`` — i.e. max-normalised the way :func:`baseline_noise_from_measured`
    normalises a measured pattern by its strongest peak. ``n_patterns`` baselines (default: as
    many as needed to give ``n`` values) are pooled, shuffled and cut to ``n``.
    """
    rng = _rng(rng)
    n = int(n)
    if n_patterns is None:
        n_patterns = max(1, -(-n // N_POINTS))
    values, drawn = [], []
    for _ in range(int(n_patterns)):
        background, params = synthetic_background(rng, model)
        counts = rng.poisson(params["peak_counts"] * background)
        values.append(counts / params["peak_counts"])
        drawn.append(params)
    pool = rng.permutation(np.concatenate(values))
    if pool.size < n:
        pool = rng.choice(pool, n, replace=True)
    description = {"kind": "synthetic", "ranges": SYNTHETIC_NOISE_MODEL | (model or {}),
                   "n_patterns": int(n_patterns), "drawn": drawn,
                   "formula": "Poisson(N*(A*exp(-(2theta-5)/tau) + c0 + c1*t + c2*t^2))/N, t=(2theta-5)/45"}
    return NoisePool(pool[:n], description, SYNTHETIC_NOISE)


def noise_pool(measured: np.ndarray | None = None, n: int = NOISE_POOL_SIZE, rng=None, n_keep: int = N_KEEP,
               guard: int = 5) -> NoisePool:
    """The measured-baseline pool when ``measured`` patterns are given, else the synthetic
    fallback (with its ``noise_source`` label)."""
    if measured is not None and len(measured):
        values = baseline_noise_from_measured(measured, n_keep=n_keep, guard=guard)
        model = {"kind": "measured", "n_patterns": int(np.atleast_2d(measured).shape[0]),
                 "n_keep": int(n_keep), "guard": int(guard)}
        return NoisePool(values, model, MEASURED_NOISE)
    return synthetic_noise_pool(n, rng)


def shift_pattern(pattern: np.ndarray, offset_deg: float, two_theta: np.ndarray = TWO_THETA) -> np.ndarray:
    """The pattern moved by ``offset_deg`` in 2θ (linear interpolation; edge values held)."""
    return np.interp(two_theta - offset_deg, two_theta, pattern)


def broaden_pattern(pattern: np.ndarray, fwhm_deg: float, step: float = STEP) -> np.ndarray:
    """Convolution with a unit-area Gaussian of FWHM ``fwhm_deg`` (no-op for 0)."""
    if fwhm_deg <= 0:
        return np.asarray(pattern, dtype=np.float64)
    sigma = fwhm_deg / (2.0 * np.sqrt(2.0 * np.log(2.0))) / step
    return ndimage.gaussian_filter1d(np.asarray(pattern, dtype=np.float64), sigma, mode="nearest")


def perturbed_test_patterns(clean_patterns: np.ndarray, n_per_mof: int, rng=None, shift_deg: float = SHIFT_DEG,
                            scale: tuple[float, float] = SCALE, broadening: tuple[float, float] = BROADENING,
                            noise: dict | bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(patterns float32 (n_mofs·n_per_mof, n_points), class indices) of held-out test patterns.

    For each copy of each max-normalised clean pattern, in this order:

    1. peak shift by a 2θ offset drawn uniformly in ``±shift_deg`` (linear interpolation);
    2. extra Gaussian broadening: convolution with a Gaussian of FWHM drawn uniformly in
       ``broadening`` (degrees; area kept, so peaks get lower);
    3. intensity scaling: the peaks are multiplied by ``s`` drawn uniformly in ``scale`` before
       the background is added, i.e. the peak-to-background ratio varies (a plain global factor
       would be undone by the final max-normalisation);
    4. background and Poisson noise from the synthetic model (:func:`synthetic_background`,
       ranges :data:`SYNTHETIC_NOISE_MODEL` updated with the dict ``noise``; ``noise=False``
       leaves steps 4 out): counts ``Poisson(N·(s·peaks + b))``, then max-normalised.

    ``rng`` should be seeded separately from the training augmentation.
    """
    rng = _rng(rng)
    clean = normalise_max(np.atleast_2d(clean_patterns))
    out = np.empty((clean.shape[0] * n_per_mof, clean.shape[1]), dtype=np.float64)
    labels = np.repeat(np.arange(clean.shape[0]), n_per_mof)
    for i, cls in enumerate(labels):
        x = shift_pattern(clean[cls], rng.uniform(-shift_deg, shift_deg))
        x = broaden_pattern(x, rng.uniform(*broadening))
        x = np.maximum(x, 0.0) * rng.uniform(*scale)
        if noise is not False:
            background, params = synthetic_background(rng, noise if isinstance(noise, dict) else None)
            x = rng.poisson(params["peak_counts"] * (x + background)) / params["peak_counts"]
        out[i] = x
    return normalise_max(out).astype(np.float32), labels


def fft_denoise(pattern: np.ndarray, keep_bins: int = KEEP_BINS, threshold: float = FFT_THRESHOLD,
                check_from: int = CHECK_FROM) -> np.ndarray:
    """The paper's FFT rule for measured patterns (1-D, or rows of a 2-D array).

    ``F = numpy.fft.rfft(pattern)`` of the pattern *as given* (numpy's unnormalised forward
    transform, ``F_k = Σ_n x_n e^{−2πikn/N}``; 1,126 bins for 2,251 points). If the mean of
    ``|F_k|`` over ``k ≥ check_from`` exceeds ``threshold``, the bins ``k ≥ keep_bins`` are set
    to zero and the pattern is rebuilt with ``irfft`` (same length); otherwise the pattern is
    returned unchanged (as a float64 copy). The paper's text keeps 200 bins, its code 150 (our
    default).

    The rule depends on the scaling: white noise of standard deviation σ has mean
    ``|F_k| ≈ 0.886·σ·√N`` (Rayleigh mean), so for a max-normalised 2,251-point pattern the
    threshold 1 fires at σ ≈ 0.024 of the strongest peak; a pattern in raw counts almost always
    fires. Very sharp peaks also carry power beyond bin 200 (a Gaussian of FWHM 0.1° keeps about
    half its amplitude there), so a noise-free pattern with many sharp peaks can fire too; the cut
    at bin 150 (period 15 points = 0.3°) then smooths those peaks.
    """
    x = np.asarray(pattern, dtype=np.float64)
    if x.ndim == 2:
        return np.stack([fft_denoise(row, keep_bins, threshold, check_from) for row in x])
    spectrum = np.fft.rfft(x)
    tail = np.abs(spectrum[check_from:])
    if tail.size == 0 or tail.mean() <= threshold:
        return x.copy()
    spectrum[keep_bins:] = 0.0
    return np.fft.irfft(spectrum, n=x.size)


def fft_would_denoise(pattern: np.ndarray, threshold: float = FFT_THRESHOLD, check_from: int = CHECK_FROM) -> bool:
    """Whether :func:`fft_denoise` would filter this 1-D pattern."""
    tail = np.abs(np.fft.rfft(np.asarray(pattern, dtype=np.float64))[check_from:])
    return bool(tail.size and tail.mean() > threshold)
