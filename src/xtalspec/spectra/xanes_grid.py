"""XANES spectra on a model's energy grid: edge energy, per-element grid, spline, scaling.

Conventions (shared by the FEFF data set and measured spectra):

* **Edge energy E0** — the largest slope dμ/dE *of the main edge*: on a 0.1 eV resampling
  lightly smoothed (3-point running mean), the half-step level is halfway between the pre-edge
  baseline (median of the first 5 % of the range) and the post-edge level (mean of the last
  30 %); the main edge is the last upward crossing of that level (a pre-edge peak of a
  tetrahedral site may reach the level too, but always earlier; after the edge μ stays well
  above half the step), and E0 is
  the point of largest slope within ``HALF_STEP_WINDOW_EV`` (3 eV) of that crossing. With a
  ``guess``, only crossings within ``window`` eV of it count. FEFF and measured spectra use the
  same rule, so the model's reference E0 and a measured E0 mean the same thing.
* **Grid** — per absorbing element, ``n_points`` (100) absolute energies ``step`` (0.5 eV)
  apart, starting at the 95th percentile of the first energies of that element's spectra, so
  that nearly every spectrum covers the start; the grid spans 49.5 eV (the paper's ~50 eV
  above the onset, ~0.5 eV resolution). If the spectra end earlier the step shrinks to fit.
* **Spline** — a cubic (Akima, no overshoot at kinks) interpolant of μ(E); grid points outside
  a spectrum's range take its first / last value (``coverage`` tells how much of the grid was
  covered).
* **Scaling** — each spectrum on the grid is divided by its maximum (paper Fig. 2), before
  the per-point standardisation that the models apply.
* **Pre-edge region** — the grid points below the element's median E0 plus an offset
  (``pre_edge_offset``, default 0 eV): the pre-edge peaks and the foot of the edge.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 100
STEP_EV = 0.5
HALF_STEP_WINDOW_EV = 3.0


def edge_energy(energy, mu, guess: float | None = None, window: float = 30.0) -> float:
    """E0: the maximum slope of the main edge (rules in the module docstring)."""
    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    if energy.size < 5:
        raise ValueError("too few points to find an edge")
    order = np.argsort(energy)
    energy, mu = energy[order], mu[order]
    fine = np.arange(energy[0], energy[-1], 0.1)
    if fine.size < 10:
        raise ValueError("energy range too short to find an edge")
    smooth = np.convolve(np.interp(fine, energy, mu), np.ones(3) / 3, mode="same")
    smooth[0], smooth[-1] = smooth[1], smooth[-2]  # the running mean's ends
    n = fine.size
    lo = float(np.median(smooth[: max(3, n // 20)]))  # pre-edge baseline
    hi = float(np.mean(smooth[int(0.7 * n):]))  # post-edge level
    if not hi > lo:
        raise ValueError("no rising edge: the spectrum does not end above its start")
    half = lo + 0.5 * (hi - lo)
    above = smooth >= half
    ups = np.flatnonzero(~above[:-1] & above[1:]) + 1  # upward crossings of the half step
    if guess is not None:
        ups = ups[np.abs(fine[ups] - guess) <= window]
    if ups.size == 0:
        raise ValueError("no edge within the search window")
    crossing = ups[-1]  # the last one: a pre-edge peak that reaches half the step comes earlier
    near = np.abs(fine - fine[crossing]) <= HALF_STEP_WINDOW_EV
    slope = np.gradient(smooth, fine)
    slope[~near] = -np.inf
    return float(fine[int(np.argmax(slope))])


def element_grid(starts, ends, n_points: int = N_POINTS, step: float = STEP_EV) -> np.ndarray:
    """The absolute energy grid of one element from its spectra's first/last energies."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    if starts.size == 0:
        raise ValueError("no spectra to build a grid from")
    lo = float(np.quantile(starts, 0.95))
    hi = float(np.quantile(ends, 0.05))
    span = min(step * (n_points - 1), hi - lo)
    if span <= 0:
        raise ValueError("the spectra share no common energy range")
    return lo + np.linspace(0.0, span, n_points)


def on_grid(energy, mu, grid) -> tuple[np.ndarray, float]:
    """(μ on ``grid``, fraction of the grid inside the spectrum's energy range)."""
    from scipy.interpolate import Akima1DInterpolator

    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    order = np.argsort(energy)
    energy, mu = energy[order], mu[order]
    keep = np.concatenate([[True], np.diff(energy) > 0])
    energy, mu = energy[keep], mu[keep]
    grid = np.asarray(grid, dtype=np.float64)
    inside = (grid >= energy[0]) & (grid <= energy[-1])
    out = np.empty_like(grid)
    out[grid < energy[0]] = mu[0]
    out[grid > energy[-1]] = mu[-1]
    if inside.any():
        out[inside] = Akima1DInterpolator(energy, mu)(grid[inside])
    return out, float(inside.mean())


def scale_to_max(spectra: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (rows with a non-positive maximum are left as they are)."""
    spectra = np.asarray(spectra, dtype=np.float64)
    peak = spectra.max(axis=-1, keepdims=True)
    return np.where(peak > 0, spectra / np.where(peak > 0, peak, 1.0), spectra)


def pre_edge_index(grid, e0_median: float, offset: float = 0.0) -> int:
    """Number of grid points in the pre-edge region (energies below ``e0_median + offset``)."""
    return int(np.searchsorted(np.asarray(grid), e0_median + offset))


def shift_on_grid(spectra: np.ndarray, shift_ev: float, step: float) -> np.ndarray:
    """Spectra moved by ``shift_ev`` along the grid (positive: to higher energy), by linear
    interpolation between grid points, the end values extended. Shifts that are multiples of
    the step are exact moves of whole points."""
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    n = spectra.shape[-1]
    x = np.arange(n) - shift_ev / step
    x = np.clip(x, 0, n - 1)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = x - i0
    return spectra[:, i0] * (1 - w) + spectra[:, i1] * w
