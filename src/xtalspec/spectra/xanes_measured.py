"""Measured K-edge XANES → the input of a trained XANES bundle (:mod:`xtalspec.models.xanes`).

Four steps, each a function:

1. :func:`read_xanes` — read the file (plain columns or XDI) into energy (eV) and μ(E);
2. :func:`check_edge_in_range` — make sure the file holds the asked element's K edge;
3. :func:`normalise` — Athena-style normalisation: pre-edge line subtracted, edge step 1;
4. :func:`align_to_model` — move the measured edge onto the training spectra's median edge
   energy, spline onto the bundle's grid and divide by the maximum, as the FEFF training
   spectra were (the models then standardise per point).

Reading rules
-------------
* Lines starting with ``#`` are comments; other non-numeric lines before the data are a header;
  a non-numeric line after the data began is an error. Values are separated by commas and/or
  whitespace; every data row must have the same number of columns.
* **Column labels** come from XDI ``# Column.N: name [units]`` lines; otherwise from the last
  header line (commented or not) with one name per column, when one of the names is known.
  Names are compared lower-cased with non-alphanumerics removed (``mu_trans`` = ``mutrans``).
* **Energy** is the column labelled ``energy`` (else the first column). It is taken as keV and
  multiplied by 1000 when its label's units say keV or its values are all below 100.
* **μ**, first rule that applies: a column labelled ``mutrans``, ``mufluor``, ``mu``, ``xmu``,
  ``normmu``, ``norm`` or ``flat`` (in that order; the last three are Larch / Athena exports);
  ``i0`` and ``itrans`` (or ``it``, ``i1``) → ln(i0/itrans) (transmission); ``i0`` and
  ``ifluor`` (or ``if``) → ifluor/i0 (fluorescence); with two columns, the second; with three
  or more columns and no labels, columns 2 and 3 are I0 and It → ln(I0/It). Three or more
  columns whose labels fit none of these rules are an error (rather than a guess).
* Rows are sorted by energy; rows with a non-finite energy or μ (e.g. ln of a non-positive
  intensity) and repeated energies (the first is kept) are dropped. At least
  :data:`MIN_POINTS` points must remain, and the energy column must run mostly one way (at
  most 10 % of steps against the scan direction: joined scans pass, a column that is not an
  energy does not).
* XDI ``Element.symbol`` / ``Element.edge`` are reported in ``info`` (``element``, ``edge``).

Every problem with a file is a :class:`XanesFileError` whose message starts with the file;
problems found in the arrays alone are :class:`XanesError` (``predict_xanes`` prefixes the file).

Edge energy
-----------
E0 is the convention of the training data (:func:`xtalspec.spectra.xanes_grid.edge_energy`,
maximum of dμ/dE), found on a copy of the measured spectrum smoothed with a Gaussian of
``EDGE_SMOOTH_EV`` (1 eV) on a 0.1 eV resampling: FEFF spectra are smooth, measured ones are
noisy, and the slope of noise would otherwise compete with the edge. Smoothing a symmetric
edge does not move its maximum slope.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..utils.textfiles import check_axis, read_data_text
from .xanes_grid import edge_energy, on_grid, scale_to_max

__all__ = [
    "XanesError", "XanesFileError", "K_EDGES", "MIN_POINTS", "EDGE_TOLERANCE_EV", "MIN_COVERAGE",
    "canonical_element", "read_xanes", "measured_edge_energy", "check_edge_in_range", "normalise",
    "grid_coverage", "align_to_model",
]

MIN_POINTS = 20
EDGE_TOLERANCE_EV = 25.0  # calibration offsets allowed between a file and the tabulated edge
EDGE_RANGE_EV = (-20.0, 30.0)  # the file must cover this range around the edge
MIN_COVERAGE = 0.8  # fraction of the model grid the aligned spectrum must cover
REFINE_EV = 8.0  # search range of the template refinement of the alignment shift
EDGE_SMOOTH_EV = 1.0
MIN_STEP_EV = 1e-3  # a finer energy step is not a measured scan
ENERGY_EXTENT_EV = (100.0, 200_000.0)  # where a K-edge file's energies can lie

# K-edge energies (eV), X-ray data booklet (Bearden & Burr 1967).
K_EDGES = {"Sc": 4492.0, "Ti": 4966.0, "V": 5465.0, "Cr": 5989.0, "Mn": 6539.0, "Fe": 7112.0,
           "Co": 7709.0, "Ni": 8333.0, "Cu": 8979.0, "Zn": 9659.0}

_MU_NAMES = ("mutrans", "mufluor", "mu", "xmu", "normmu", "norm", "flat")
_ALIASES = {"it": "itrans", "i1": "itrans", "if": "ifluor"}
_KNOWN = {"energy", "i0", "itrans", "ifluor", *_MU_NAMES, *_ALIASES}
_XDI_COLUMN = re.compile(r"^#\s*column\.(\d+)\s*:\s*(\S+)\s*(.*)$", re.IGNORECASE)
_XDI_FIELD = re.compile(r"^#\s*element\.(symbol|edge)\s*:\s*(\S+)", re.IGNORECASE)


class XanesError(ValueError):
    """A spectrum that cannot be turned into a model input (no file named)."""


class XanesFileError(XanesError):
    """A measured XANES file that cannot be used; ``str(err)`` is ``"<file>: <problem>"``."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def canonical_element(element: str) -> str:
    """The element symbol as in :data:`K_EDGES` ("fe" → "Fe"); ValueError for other elements."""
    symbol = str(element).strip().capitalize()
    if symbol not in K_EDGES:
        raise ValueError(f"no K edge tabulated for element {element!r}; known: {', '.join(K_EDGES)}")
    return symbol


# --------------------------------------------------------------------------- reading


def _key(name: str) -> str:
    key = re.sub(r"[^0-9a-z]", "", name.lower())
    return _ALIASES.get(key, key)


def _floats(line: str) -> list[float] | None:
    try:
        return [float(p) for p in line.replace(",", " ").split()]
    except ValueError:
        return None


def _parse(path: Path, text: str) -> tuple[np.ndarray, dict, list[str]]:
    """(data rows × columns, XDI fields, candidate header lines) of a file's text."""
    rows, xdi, headers = [], {"columns": {}}, []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if match := _XDI_COLUMN.match(stripped):
                xdi["columns"][int(match.group(1))] = (match.group(2), match.group(3).strip("[]() "))
            elif match := _XDI_FIELD.match(stripped):
                xdi[match.group(1).lower()] = match.group(2)
            elif not rows:
                headers.append(stripped.lstrip("#").strip())
            continue
        values = _floats(stripped)
        if values is None or not values:
            if rows:
                raise XanesFileError(path, f"line {number}: non-numeric data after the data began: {stripped[:60]!r}")
            headers.append(stripped)
            continue
        if rows and len(values) != len(rows[0]):
            raise XanesFileError(path, f"line {number}: {len(values)} columns, the data began with {len(rows[0])}")
        rows.append(values)
    if not rows:
        raise XanesFileError(path, "no numeric data rows found")
    if len(rows[0]) < 2:
        raise XanesFileError(path, "one column only: need energy and μ (or energy, I0, It)")
    return np.array(rows, dtype=np.float64), xdi, headers


def _labels(n_columns: int, xdi: dict, headers: list[str]) -> tuple[list[str] | None, list[str]]:
    """(column keys or None, column units) from XDI Column.N lines or a matching header line."""
    units = [""] * n_columns
    if xdi["columns"]:
        keys = [""] * n_columns
        for i, (name, unit) in xdi["columns"].items():
            if 1 <= i <= n_columns:
                keys[i - 1], units[i - 1] = _key(name), unit.lower()
        return keys, units
    for line in reversed(headers):
        names = line.replace(",", " ").split()
        if len(names) == n_columns and _KNOWN & {_key(n) for n in names}:
            return [_key(n) for n in names], units
    return None, units


def _mu_column(path: Path, data: np.ndarray, keys: list[str] | None) -> tuple[np.ndarray, str]:
    """(μ, how it was obtained) following the module's reading rules."""
    keys = keys or []
    col = {k: i for i, k in reversed(list(enumerate(keys))) if k}
    for name in _MU_NAMES:
        if name in col:
            return data[:, col[name]], f"column {col[name] + 1} ({name})"
    with np.errstate(divide="ignore", invalid="ignore"):
        if "i0" in col and "itrans" in col:
            i0, it = col["i0"], col["itrans"]
            return np.log(data[:, i0] / data[:, it]), f"ln(i0/itrans) (columns {i0 + 1}, {it + 1})"
        if "i0" in col and "ifluor" in col:
            i0, fl = col["i0"], col["ifluor"]
            return data[:, fl] / data[:, i0], f"ifluor/i0 (columns {fl + 1}, {i0 + 1})"
        if data.shape[1] == 2:
            return data[:, 1], "column 2"
        if keys:
            raise XanesFileError(path, f"the column labels {keys} name no μ column, no i0 + itrans and no "
                                       "i0 + ifluor pair: relabel the columns or pass energy, μ only")
        return np.log(data[:, 1] / data[:, 2]), "ln(I0/It) (columns 2, 3: no μ column labelled)"


def _energy_column(data: np.ndarray, keys: list[str] | None, units: list[str]) -> tuple[np.ndarray, str]:
    """(energy in eV, the unit the file used)."""
    i = keys.index("energy") if keys and "energy" in keys else 0
    energy = data[:, i]
    finite = energy[np.isfinite(energy)]
    if units[i] == "kev" or (finite.size and np.abs(finite).max() < 100):
        return energy * 1000.0, "keV"
    return energy, "eV"


def _clean(path: Path, energy: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sorted, finite, distinct-energy (energy, μ) and the number of rows dropped."""
    steps = np.diff(energy[np.isfinite(energy)])
    steps = steps[steps != 0]
    if steps.size and min((steps > 0).mean(), (steps < 0).mean()) > 0.1:
        raise XanesFileError(path, "the energy column goes back and forth (is the first column the energy?)")
    ok = np.isfinite(energy) & np.isfinite(mu)
    order = np.argsort(energy[ok], kind="stable")
    e, m = energy[ok][order], mu[ok][order]
    keep = np.concatenate([[True], np.diff(e) > 0]) if e.size else np.zeros(0, bool)
    e, m = e[keep], m[keep]
    if e.size and e[-1] == e[0]:
        raise XanesFileError(path, f"the energy is constant ({e[0]:g} eV)")
    if e.size < MIN_POINTS:
        raise XanesFileError(path, f"{e.size} usable points (distinct energies with finite μ); "
                                   f"need at least {MIN_POINTS}")
    if e[0] <= 0:
        raise XanesFileError(path, f"energies must be positive (first is {e[0]:g})")
    return e, m, int(len(energy) - e.size)


def read_xanes(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(energy in eV, μ, info) of a measured spectrum; rules in the module docstring.

    ``info``: ``format`` ("xdi" | "columns"), ``columns`` (labels or None), ``mu_from``,
    ``energy_unit`` (as in the file), ``n_points``, ``n_dropped``, and, from XDI headers,
    ``element`` and ``edge`` when given.
    """
    path = Path(path)
    text = read_data_text(path, XanesFileError)
    is_xdi = text.lstrip().upper().startswith("# XDI/") or text.lstrip().upper().startswith("#XDI/")
    data, xdi, headers = _parse(path, text)
    keys, units = _labels(data.shape[1], xdi, headers)
    energy, unit = _energy_column(data, keys, units)
    mu, mu_from = _mu_column(path, data, keys)
    energy, mu, dropped = _clean(path, energy, mu)
    check_axis(energy, path, XanesFileError, "energy", "eV", MIN_STEP_EV, ENERGY_EXTENT_EV)
    info = {"format": "xdi" if is_xdi else "columns", "columns": keys, "mu_from": mu_from,
            "energy_unit": unit, "n_points": int(energy.size), "n_dropped": dropped}
    if "symbol" in xdi:
        info["element"] = xdi["symbol"].capitalize()
    if "edge" in xdi:
        info["edge"] = xdi["edge"].upper()
    return energy, mu, info


# --------------------------------------------------------------------------- edge and normalisation


def measured_edge_energy(energy, mu, smooth: float = EDGE_SMOOTH_EV) -> float:
    """E0 of a measured spectrum: :func:`edge_energy` of a Gaussian-smoothed (σ = ``smooth`` eV) copy."""
    from scipy.ndimage import gaussian_filter1d

    energy = np.asarray(energy, dtype=np.float64)
    fine = np.arange(energy[0], energy[-1], 0.1)
    if fine.size < 5:
        raise XanesError("energy range too short to find an edge")
    mu_fine = np.interp(fine, energy, np.asarray(mu, dtype=np.float64))
    if smooth > 0:
        mu_fine = gaussian_filter1d(mu_fine, smooth / 0.1, mode="nearest")
    try:
        return edge_energy(fine, mu_fine)
    except ValueError as exc:
        raise XanesError(str(exc)) from None


def check_edge_in_range(energy, element: str, e0: float | None = None) -> None:
    """XanesError unless the data can hold ``element``'s K edge.

    The energies must cover the tabulated edge −20…+30 eV, allowing the edge to sit up to
    ``EDGE_TOLERANCE_EV`` (25 eV) off (calibration): first ≤ edge + 5 eV, last ≥ edge + 5 eV and
    a span of at least 50 eV. When ``e0`` (the edge found) is given it must lie within 25 eV of
    the tabulated edge.
    """
    symbol = canonical_element(element)
    edge = K_EDGES[symbol]
    lo_need, hi_need = edge + EDGE_RANGE_EV[0] + EDGE_TOLERANCE_EV, edge + EDGE_RANGE_EV[1] - EDGE_TOLERANCE_EV
    first, last = float(np.min(energy)), float(np.max(energy))
    span_need = EDGE_RANGE_EV[1] - EDGE_RANGE_EV[0]
    if first > lo_need or last < hi_need or last - first < span_need:
        raise XanesError(f"energies {first:.1f}–{last:.1f} eV do not hold the {symbol} K edge ({edge:.0f} eV; "
                         f"need {span_need:.0f} eV around it, ±{EDGE_TOLERANCE_EV:.0f} eV allowed for calibration)")
    if e0 is not None and abs(e0 - edge) > EDGE_TOLERANCE_EV:
        raise XanesError(f"the steepest edge is at {e0:.1f} eV, {e0 - edge:+.1f} eV from the {symbol} K edge "
                         f"({edge:.0f} eV; ±{EDGE_TOLERANCE_EV:.0f} eV allowed): wrong element or energy calibration?")


def _pre_points(energy: np.ndarray, e0: float, pre: tuple[float, float]) -> np.ndarray:
    sel = (energy >= e0 + pre[0]) & (energy <= e0 + pre[1])
    if sel.sum() >= 3:
        return sel
    below = np.flatnonzero(energy < e0 - 10.0)
    if below.size < 2:  # short scans (FEFF-like): the points at least 5 eV below the edge
        below = np.flatnonzero(energy < e0 - 5.0)
    if below.size < 2:
        raise XanesError(f"too few pre-edge points: {below.size} below E0 − 5 eV = {e0 - 5:.1f} eV")
    n = max(3, int(round(0.05 * energy.size)))
    sel = np.zeros(energy.size, bool)
    sel[below[:n]] = True
    return sel


def _post_points(energy: np.ndarray, e0: float, post: tuple[float, float]) -> np.ndarray:
    sel = (energy >= e0 + post[0]) & (energy <= e0 + post[1])
    if sel.sum() >= 3:
        return sel
    above = np.flatnonzero(energy > e0 + 15.0)
    if above.size < 2:
        raise XanesError(f"too few post-edge points: {above.size} above E0 + 15 eV = {e0 + 15:.1f} eV")
    sel = np.zeros(energy.size, bool)
    sel[above[-max(2, int(np.ceil(0.3 * above.size))):]] = True
    return sel


def _post_degree(energy: np.ndarray) -> int:
    """Quadratic over ≥ 100 eV and ≥ 10 points, linear over ≥ 30 eV and ≥ 4 points, else constant."""
    span = float(energy.max() - energy.min())
    if span >= 100.0 and energy.size >= 10:
        return 2
    return 1 if span >= 30.0 and energy.size >= 4 else 0


def normalise(energy, mu, e0: float | None = None, pre=(-150.0, -30.0),
              post=(50.0, 300.0)) -> tuple[np.ndarray, dict]:
    """(normalised μ, info): Athena-style pre-edge subtraction and edge-step normalisation.

    * E0: ``e0`` or :func:`measured_edge_energy`.
    * Pre-edge line: fitted over [E0 + pre[0], E0 + pre[1]] ∩ data; with fewer than 3 points
      there, over the first max(3, 5 % of all) points below E0 − 10 eV. A line when those
      points span ≥ 20 eV, else their mean (a line through a few eV of the edge's foot would
      extrapolate its rise to E0).
    * Post-edge polynomial over [E0 + post[0], E0 + post[1]] ∩ data; with fewer than 3 points
      there (short, FEFF-like data), over the last 30 % of the points above E0 + 15 eV.
      Quadratic when that range spans ≥ 100 eV with ≥ 10 points, linear when ≥ 30 eV with ≥ 4,
      else a constant.
    * Edge step = post(E0) − pre(E0); normalised μ = (μ − pre(E)) / step.

    ``info``: e0, edge_step, pre_range / post_range (eV actually used), pre_degree, post_degree.
    """
    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    e0 = measured_edge_energy(energy, mu) if e0 is None else float(e0)
    pre_sel, post_sel = _pre_points(energy, e0, pre), _post_points(energy, e0, post)
    pre_degree = 1 if np.ptp(energy[pre_sel]) >= 20.0 else 0
    pre_fit = np.polynomial.Polynomial.fit(energy[pre_sel], mu[pre_sel], pre_degree)
    degree = _post_degree(energy[post_sel])
    post_fit = np.polynomial.Polynomial.fit(energy[post_sel], mu[post_sel], degree)
    step = float(post_fit(e0) - pre_fit(e0))
    if not np.isfinite(step) or step <= 0:
        raise XanesError(f"edge step {step:.3g} at E0 = {e0:.1f} eV is not positive: no absorption edge "
                         "(is μ inverted, e.g. ln(It/I0)?)")
    info = {"e0": e0, "edge_step": step, "pre_degree": pre_degree, "post_degree": degree,
            "pre_range": [float(energy[pre_sel].min()), float(energy[pre_sel].max())],
            "post_range": [float(energy[post_sel].min()), float(energy[post_sel].max())]}
    return (mu - pre_fit(energy)) / step, info


# --------------------------------------------------------------------------- onto the model's grid


def grid_coverage(energy, shift: float, grid) -> float:
    """Fraction of ``grid`` inside the energy range of the spectrum moved by ``shift`` eV."""
    grid = np.asarray(grid, dtype=np.float64)
    lo, hi = float(np.min(energy)) + shift, float(np.max(energy)) + shift
    return float(((grid >= lo) & (grid <= hi)).mean())


def align_to_model(energy, norm_mu, meta: dict, e0: float | None = None) -> tuple[np.ndarray, float]:
    """(model input on ``meta["grid"]``, shift in eV) of a normalised measured spectrum.

    Two steps. (1) Edge energy: the measured energies are moved by
    ``meta["e0"] − E0_measured`` so the measured edge sits on the median edge of the bundle's
    FEFF training spectra (FEFF's absolute edge energies differ from experiment by several eV).
    (2) When the bundle holds its training spectra (``templates``), the shift is refined within
    ±``REFINE_EV`` (8 eV, 0.1 eV steps) to the value at which the spectrum is closest (mean
    |Δμ| on the grid) to its nearest training spectrum: the median E0 of step 1 ignores the
    site's own chemical shift (a tetrahedral V5+ edge lies ~5 eV above the median of all V
    sites), which the nearest similar training spectrum restores. The models also saw their
    training spectra shifted by ±1 and ±2 eV. The moved spectrum is splined onto the grid
    (:func:`on_grid`) and divided by its maximum (:func:`scale_to_max`), as the training
    spectra were. ``e0`` defaults to :func:`measured_edge_energy`.

    XanesError when the moved spectrum covers less than ``MIN_COVERAGE`` (80 %) of the grid.
    """
    energy = np.asarray(energy, dtype=np.float64)
    e0 = measured_edge_energy(energy, norm_mu) if e0 is None else float(e0)
    shift = float(meta["e0"]) - e0
    grid = np.asarray(meta["grid"], dtype=np.float64)
    templates = meta.get("templates")
    if templates is not None and len(templates):
        templates = np.asarray(templates, dtype=np.float64)
        best = (np.inf, shift)
        for extra in np.arange(-REFINE_EV, REFINE_EV + 1e-9, 0.1):
            if grid_coverage(energy, shift + extra, grid) < MIN_COVERAGE:
                continue
            x, _ = on_grid(energy + shift + extra, norm_mu, grid)
            distance = float(np.abs(templates - scale_to_max(x)).mean(axis=1).min())
            if distance < best[0]:
                best = (distance, shift + float(extra))
        shift = best[1]
    coverage = grid_coverage(energy, shift, grid)
    if coverage < MIN_COVERAGE:
        raise XanesError(f"after aligning the edge (shift {shift:+.1f} eV) the data cover {coverage:.0%} of the "
                         f"model grid {grid[0] - shift:.1f}–{grid[-1] - shift:.1f} eV (in the file's energies); "
                         f"need {MIN_COVERAGE:.0%}")
    x, _ = on_grid(energy + shift, norm_mu, grid)
    return scale_to_max(x), shift
