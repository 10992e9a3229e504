"""δ-function profiles rendered as laboratory patterns on the same 1/d grid, and background removal.

For training and testing models that read raw patterns (PADNet) or background-subtracted ones.
Everything stays on the 10,001-bin 1/d grid of :mod:`xtalspec.spectra.xrd` (one bin ≈ 9.5e-5
1/A), so a rendered pattern lines up bin for bin with the δ-profile it came from.

Physics and choices
-------------------
* Line shape: unit-area pseudo-Voigt (:func:`xtalspec.spectra.xrd.peak_shape`) of constant FWHM
  in bins, truncated at ±10 FWHM and renormalised to unit *sum* on the grid, so every stick's
  integral is kept exactly. Constant width in 1/d is a simplification: a constant 0.1° 2θ
  (Cu Kα) is ≈ 11.5 bins at 2θ = 30° and ≈ 7.7 bins at 100° (d(1/d) = cos θ / λ · d(2θ)).
  Default FWHM range (6, 20) bins ≈ 0.05–0.17° 2θ at 30°: good to mediocre laboratory
  resolution.
* Background (:func:`random_background`): low-angle/air-scatter decay exp(-(x - x0)/τ), τ
  log-uniform in 0.03–0.3 1/A; one or two amorphous humps (Gaussians of FWHM 0.05–0.2 1/A,
  centres 0.15–0.6 1/A, where glass, polymer and sample-holder halos lie, d ≈ 1.7–7 Å); a
  positive quadratic tilt in Bernstein form (non-negative coefficients, so positive by
  construction). Strength is relative to the strongest peak = 1.
* Counting noise: Poisson, the strongest peak at C counts, C log-uniform in ``counts``
  (2e3–2e4 by default: a quick to a careful laboratory scan). ``counts=None``: noise-free.
* Random draws are made in a fixed order (FWHM, η, C, background, noise) whatever the options,
  so two calls with the same seed differ only in what their options change.
* Background removal (:func:`subtract_background`): the rolling minimum ("min", the thesis's
  MF baseline) or the rolling minimum smoothed by a moving mean ("min_mean", our reading of its
  CS baseline). Default window 100 bins (≈ 0.0095 1/A, ≈ 0.9° 2θ at 30°) for both: 5 × the
  widest default FWHM, so at a peak's top the window reaches out to ±2.5 FWHM where a η = 0.5
  pseudo-Voigt has fallen to ~2 % of its height, while staying short against the background's
  curvature (decay lengths from ~316 bins, hump FWHM from ~527 bins). On 60 AMCSD profiles
  rendered with the defaults and background strength 1, windows of 50–100 bins gave the
  smallest errors (mean |error| on and off peaks ≈ 0.012 / 0.016–0.020 of the maximum, against
  0.13 / 0.24 unsubtracted); 200 bins and more left more of the curved background. With
  ``smooth <= size`` the smoothed estimate stays under the pattern (every rolling minimum it
  averages covers the point itself, up to one bin of alignment for even windows). The min
  filter sits on the noise floor (biased low by ~2-3 σ of the counting noise) and, on a slope
  s per bin, ~s × size / 2 below the background; smoothing removes neither bias.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import fftconvolve

from .xrd import INV_D_MAX, INV_D_MIN, N_BINS, PROFILE_CUTOFF, from_sparse, peak_shape

FWHM_BINS = (6.0, 20.0)
COUNTS = (2e3, 2e4)
TAU = (0.03, 0.3)  # 1/A, decay length of the low-angle background (log-uniform)
HUMP_FWHM = (0.05, 0.2)  # 1/A
HUMP_CENTRE = (0.15, 0.6)  # 1/A
BACKGROUND_KINDS = ("mixed", "decay", "amorphous", "polynomial")
BACKGROUND_SIZE = 100  # bins, min-filter window
BACKGROUND_SMOOTH = 100  # bins, mean-filter window applied to the min-filter background

Range = float | tuple[float, float]


def _draw(rng: np.random.Generator, spec: Range, log: bool = False) -> float:
    """A value from a (low, high) range (uniform, or log-uniform), or the number itself.
    Always consumes one draw, so later draws do not depend on whether ``spec`` is a range."""
    u = rng.random()
    if np.ndim(spec) == 0:
        return float(spec)
    low, high = (float(v) for v in spec)
    if log:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def _max_normalise(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=-1, keepdims=True)
    return x / np.where(top > 0, top, 1.0)


def peak_kernel(fwhm_bins: float, shape: str = "pseudo-voigt", eta: float = 0.5) -> np.ndarray:
    """The line shape sampled at integer bin offsets within ±10 FWHM, normalised to sum 1 (odd length)."""
    half = int(math.ceil(PROFILE_CUTOFF * fwhm_bins))
    kernel = peak_shape(np.arange(-half, half + 1, dtype=np.float64), fwhm_bins, shape, eta)
    return kernel / kernel.sum()


def broaden_profile(profile_dense: np.ndarray, fwhm_bins: float, shape: str = "pseudo-voigt",
                    eta: float = 0.5, normalise: bool = True) -> np.ndarray:
    """Every δ bin becomes a peak of unit-sum shape centred on that bin (FFT convolution).

    Works on (N,) or (n, N). Integrals are kept (``normalise=False``) except for tails beyond
    the grid's ends; with ``normalise`` the result is scaled to maximum 1 per row.
    """
    profile = np.asarray(profile_dense, dtype=np.float64)
    kernel = peak_kernel(fwhm_bins, shape, eta).reshape((1,) * (profile.ndim - 1) + (-1,))
    out = np.maximum(fftconvolve(profile, kernel, mode="same", axes=-1), 0.0)  # FFT round-off
    return _max_normalise(out) if normalise else out


def random_background(rng: np.random.Generator, n_bins: int = N_BINS, kind: str = "mixed") -> np.ndarray:
    """A smooth random background on the 1/d grid, maximum 1 (components: see the module docstring).

    ``kind="mixed"`` (default) is the weighted sum of all three and strictly positive; "decay",
    "amorphous" (humps, >= 0, may underflow to 0 far from a narrow hump) and "polynomial" return
    one component. The same draws are made for every kind."""
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUND_KINDS}")
    width = (INV_D_MAX - INV_D_MIN) / n_bins
    x = INV_D_MIN + (np.arange(n_bins) + 0.5) * width
    t = (x - x[0]) / (x[-1] - x[0])
    decay = np.exp(-(x - INV_D_MIN) / _draw(rng, TAU, log=True))
    humps = np.zeros(n_bins)
    for _ in range(1 + int(rng.integers(2))):
        sigma = _draw(rng, HUMP_FWHM) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        centre = _draw(rng, HUMP_CENTRE)
        humps += _draw(rng, (0.2, 1.0)) * np.exp(-0.5 * ((x - centre) / sigma) ** 2)
    b0, b1, b2 = rng.uniform(0.1, 1.0, 3)
    tilt = b0 * (1 - t) ** 2 + 2 * b1 * t * (1 - t) + b2 * t**2
    weights = rng.uniform(0.2, 1.0, 3) * np.array([1.0, 1.0, 0.5])  # decay, humps, tilt (tilt weaker)
    parts = {"decay": decay, "amorphous": humps, "polynomial": tilt}
    if kind == "mixed":
        return _max_normalise(weights @ np.stack([decay, humps / humps.max(), tilt]))
    return _max_normalise(parts[kind])


def render_lab_pattern(bins, values, rng: np.random.Generator, *, fwhm_bins: Range = FWHM_BINS,
                       background_strength: float = 0.0, counts: Range | None = COUNTS,
                       shape: str = "pseudo-voigt", eta: Range = 0.5, background_kind: str = "mixed",
                       n_bins: int = N_BINS) -> np.ndarray:
    """One sparse δ-profile as a laboratory pattern: float32 (n_bins,), maximum 1.

    peaks (max 1) + background_strength × background (max 1), scaled so the strongest peak has C
    counts, Poisson noise, renormalised. Ranges are drawn per call; numbers are used as given.
    """
    fwhm = _draw(rng, fwhm_bins)
    eta_value = _draw(rng, eta)
    level = _draw(rng, counts, log=True) if counts is not None else _draw(rng, 1.0)
    background = random_background(rng, n_bins, background_kind)
    expected = broaden_profile(from_sparse(bins, values, n_bins), fwhm, shape, eta_value)
    expected += background_strength * background
    if counts is not None:
        expected = rng.poisson(expected * level).astype(np.float64)
    return _max_normalise(expected).astype(np.float32)


def render_batch(bins_list: Sequence, values_list: Sequence, rng: np.random.Generator,
                 strengths: float | Sequence[float] = 0.0, **options) -> np.ndarray:
    """:func:`render_lab_pattern` for each profile in turn on one generator: (n, N) float32.

    ``strengths``: one background strength for all, or one per pattern."""
    n = len(bins_list)
    strengths = np.broadcast_to(np.asarray(strengths, dtype=np.float64), (n,))
    out = np.empty((n, options.get("n_bins", N_BINS)), dtype=np.float32)
    for i in range(n):
        out[i] = render_lab_pattern(bins_list[i], values_list[i], rng, background_strength=strengths[i], **options)
    return out


def filter_background(pattern: np.ndarray, method: str = "min_mean", size: int = BACKGROUND_SIZE,
                      smooth: int = BACKGROUND_SMOOTH) -> np.ndarray:
    """Background estimate along the last axis: rolling minimum ("min"), then a moving mean ("min_mean")."""
    if method not in ("min", "min_mean"):
        raise ValueError(f"unknown background method {method!r}; use 'min' or 'min_mean'")
    pattern = np.asarray(pattern, dtype=np.float64)
    background = minimum_filter1d(pattern, size, axis=-1, mode="nearest")
    if method == "min_mean":
        background = uniform_filter1d(background, smooth, axis=-1, mode="nearest")
    return background


def subtract_background(pattern: np.ndarray, method: str = "min_mean", size: int = BACKGROUND_SIZE,
                        smooth: int = BACKGROUND_SMOOTH) -> np.ndarray:
    """pattern − :func:`filter_background`, clipped at 0 and scaled to maximum 1 per row; (N,) or (n, N)."""
    pattern = np.asarray(pattern, dtype=np.float64)
    cleaned = np.clip(pattern - filter_background(pattern, method, size, smooth), 0.0, None)
    return _max_normalise(cleaned)
