"""Measured K-edge XANES → the input of a trained XANES bundle (:mod:`xtalspec.models.xanes`).

Four steps, each a function:

1. :func:`read_xanes` — read the file (plain columns, beamline scans, Demeter / Athena / XDI
   exports) into energy (eV) and μ(E); with ``element`` it also finds E0 (:func:`find_edge`);
2. :func:`find_edge` — E0 within a window around the element's tabulated K edge, after the
   pre-edge line is subtracted (:func:`check_edge_in_range` first makes sure the file reaches it);
3. :func:`normalise` — Athena-style normalisation: pre-edge line subtracted, edge step 1;
4. :func:`align_to_model` — move the measured edge onto the training spectra's median edge
   energy, spline onto the bundle's grid and divide by the maximum, as the FEFF training
   spectra were (the models then standardise per point).

Reading rules
-------------
* **Lines.** Lines starting with ``#`` are comments; blank lines are skipped. A line is numeric
  when all its fields are numbers. Fields are separated by whitespace (tabs included) and/or
  commas or semicolons — unless the file writes **decimal commas** (``6863,933 0,0039``:
  numeric-looking lines whose whitespace-separated fields hold commas and no dots outnumber
  those with dots), then a comma is the decimal mark.
* **Data block.** The data have the column count that most numeric lines have; they begin at
  the first numeric line with that count. Lines before it are the header (text lines, comments,
  and numeric lines with another column count, which are skipped and counted:
  ``n_skipped_lines``). After the data began, a text line or a numeric line with another column
  count is an error.
* **Column labels**, first source that applies (``labels_from`` in the info):
  1. XDI ``# Column.N: name [units]`` lines (XDI files, Athena ``.nor`` exports);
  2. a Demeter ``#%cols: 348 E XMU I0`` line (an optional point count, then one name per column);
  3. an uncommented header line (e.g. the ``Energy I0 It Ir`` line of NSLS/APS beamline files);
  4. the last comment line right before the data (only blank lines between).
  A line of 3 or 4 counts as labels only when it has exactly one token per data column, every
  token is name-like (starts with a letter: ``Energy(eV)``, ``mu_norm``, ``I0``) and one of them
  names the energy (``energy``, ``enc_energy`` or ``e``). Any other comment line — a title, a
  sample description — is never taken as labels. Names are compared lower-cased without
  non-alphanumerics (``mu_norm`` = ``munorm``); a unit in brackets (``Energy(eV)``,
  ``E [keV]``) is the column's unit.
* **Energy** is the column labelled ``energy`` (else ``enc_energy``, else ``e``; else the first
  column). It is taken as keV and multiplied by 1000 when its unit says keV or its values are
  all below 100 (``energy_unit`` in the info).
* **μ**, first rule that applies (``mu_source``: normalised | mu | transmission | fluorescence,
  and ``mu_from`` says which columns):
  1. an explicitly normalised column: ``mu_norm`` / ``normmu``, ``norm``, ``flat`` (Athena /
     Larch exports; ``norm`` before ``flat``) → normalised;
  2. ``mutrans``, ``mufluor``, ``mu``, ``xmu`` → mu;
  3. I0 and It → ln(I0/It), transmission. I0 is ``i0``; It is ``it``, ``i1``, ``itrans`` or ``i``
     (NSLS ``Energy I0 I Ir``); ``ir``/``iref``/``i2`` are the reference and never used;
  4. I0 and If (``if``, ``ifluor``) → If/I0, fluorescence;
  5. beamline counter names (``mcs3``, ``VFC01``) mean something only through a mapping in
     :data:`BEAMLINE_COUNTERS`, applied when the header names the beamline (MRCAT APS 10-ID:
     mcs3 = I0, mcs4 = It, mcs5 = I after the reference foil; PETRA III P65: VFC01 = I0,
     VFC02 = It, VFC03 = It2 (reference), VFC04 = If); then rules 3–4 apply. Without a mapping,
     the documented heuristic for raw counter columns (names like ``mcs3``, ``vfc2``, ``ch1``,
     ``sca1``): the first counter column is I0, the next It, μ = ln(I0/It), transmission;
  6. two columns: the second → mu (``mu_from`` "column 2");
  7. no labels at all and three or more columns: columns 2 and 3 are I0 and It → ln(I0/It),
     transmission (the same heuristic: the first columns after the energy are counters).
  Three or more labelled columns that fit none of these rules are an error (rather than a guess).
* Rows are sorted by energy; rows with a non-finite energy or μ (e.g. ln of a non-positive
  intensity) and repeated energies (the first is kept) are dropped. At least
  :data:`MIN_POINTS` points must remain, and the energy column must run mostly one way (at
  most 10 % of steps against the scan direction: joined scans pass, a column that is not an
  energy does not).
* XDI ``Element.symbol`` / ``Element.edge`` are reported in ``info`` (``element``, ``edge``);
  with ``element`` given to :func:`read_xanes`, a file whose XDI header names another element
  or edge is refused.

Every problem with a file is a :class:`XanesFileError` whose message starts with the file;
problems found in the arrays alone are :class:`XanesError` (``predict_xanes`` prefixes the file).

Edge energy
-----------
:func:`find_edge` (E0 of a measured K edge of a given element):

1. the pre-edge line is fitted over the tabulated edge −150…−30 eV (:data:`PRE_EDGE_FIT_EV`);
   when fewer than 3 points spanning 10 eV lie there, over the points below the search window
   (a line if they span ≥ 20 eV, else their mean); with fewer than 3 such points nothing is
   subtracted. The line is subtracted (a raw transmission scan falls by tens of percent over the
   pre-edge) before anything else;
2. μ is resampled on a 0.1 eV grid and smoothed with a Gaussian of σ = max(``EDGE_SMOOTH_EV``
   (1 eV), the median data step in the window) — measured spectra are noisy, and the slope of
   noise would otherwise compete with the edge; smoothing a symmetric edge does not move its
   maximum slope;
3. **E0 is the maximum of the smoothed first derivative dμ/dE of the main edge within the
   tabulated K edge −20…+40 eV** (:data:`EDGE_WINDOW_EV`; oxides sit a few eV above the
   metal's tabulated edge). The main edge is the last rise of μ through the half-step level
   (halfway between μ just below and just above the window) inside the window, and the maximum
   is taken on that rise (within 10 eV of the crossing, from the local minimum of μ before it):
   a pre-edge peak can be steeper than the edge — the 4970 eV peak of tetrahedral Ti in TS-1
   reaches 0.8 of the edge step within 2 eV — and would otherwise be taken for the edge
   (4968.7 eV instead of 4983 eV there; V2O5's pre-edge peak likewise). The same rule holds for
   normalised data. The maximum counts when the slope there is positive and it is not on the
   window's border (a border maximum means the edge lies outside); otherwise the window is
   widened to ±100 eV (:data:`WIDE_WINDOW_EV`, files with calibration offsets) and ``widened``
   is set in the info. Nothing there either is an error.

This is the training data's convention (:func:`xtalspec.spectra.xanes_grid.edge_energy`, the
maximum slope of the main edge) confined to where the element's edge can be: on normalised data
the two agree; on raw transmission data the search window keeps a falling background, a glitch
or a detector step elsewhere in the scan from being taken for the edge. Without an element,
:func:`measured_edge_energy` applies :func:`~xtalspec.spectra.xanes_grid.edge_energy` to the
smoothed spectrum (no window).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..utils.textfiles import check_axis, read_data_text
from .xanes_grid import edge_energy, on_grid, scale_to_max

__all__ = [
    "XanesError", "XanesFileError", "K_EDGES", "MIN_POINTS", "EDGE_TOLERANCE_EV", "MIN_COVERAGE",
    "EDGE_WINDOW_EV", "WIDE_WINDOW_EV", "PRE_EDGE_FIT_EV", "BEAMLINE_COUNTERS",
    "canonical_element", "read_xanes", "find_edge", "measured_edge_energy", "check_edge_in_range", "normalise",
    "grid_coverage", "align_to_model",
]

MIN_POINTS = 20
EDGE_TOLERANCE_EV = 25.0  # calibration offsets allowed between a file and the tabulated edge
EDGE_RANGE_EV = (-20.0, 30.0)  # the file must cover this range around the edge
EDGE_WINDOW_EV = (-20.0, 40.0)  # E0 search window around the tabulated K edge
WIDE_WINDOW_EV = (-100.0, 100.0)  # … widened to this when the first holds no edge
PRE_EDGE_FIT_EV = (-150.0, -30.0)  # pre-edge line subtracted before the E0 search (from the tabulated edge)
MIN_COVERAGE = 0.8  # fraction of the model grid the aligned spectrum must cover
REFINE_EV = 8.0  # search range of the template refinement of the alignment shift
EDGE_SMOOTH_EV = 1.0
FINE_STEP_EV = 0.1
MIN_STEP_EV = 1e-3  # a finer energy step is not a measured scan
ENERGY_EXTENT_EV = (100.0, 200_000.0)  # where a K-edge file's energies can lie

# K-edge energies (eV), X-ray data booklet (Bearden & Burr 1967).
K_EDGES = {"Sc": 4492.0, "Ti": 4966.0, "V": 5465.0, "Cr": 5989.0, "Mn": 6539.0, "Fe": 7112.0,
           "Co": 7709.0, "Ni": 8333.0, "Cu": 8979.0, "Zn": 9659.0}

#: Beamline counter maps: (beamline, pattern the file's header must match, counter → role).
#: MRCAT: checked on demeter_lepidocrocite.stan (ln(mcs3/mcs4) has the sample's Fe edge step,
#: ln(mcs4/mcs5) the Fe foil's); P65: the beamline's VFC channel order (I0, It, It2, If).
BEAMLINE_COUNTERS = (
    ("MRCAT (APS 10-ID)", re.compile(r"MRCAT"), {"mcs3": "i0", "mcs4": "itrans", "mcs5": "iref"}),
    ("PETRA III P65", re.compile(r"\bP65\b"), {"vfc01": "i0", "vfc02": "itrans", "vfc03": "iref", "vfc04": "ifluor"}),
)

ENERGY_NAMES = ("energy", "encenergy", "e")
NORM_NAMES = ("munorm", "normmu", "norm", "flat")
MU_NAMES = ("mutrans", "mufluor", "mu", "xmu")
_ALIASES = {"it": "itrans", "i1": "itrans", "i": "itrans", "if": "ifluor", "ifl": "ifluor",
            "ir": "iref", "i2": "iref", "normalized": "norm", "normalised": "norm"}
_ROLES = ("i0", "itrans", "ifluor", "iref")
_COUNTER = re.compile(r"^(mcs|vfc|sca|scaler|ch|chan|cnt|ctr|counter|adc|v2f)\d+$")
_XDI_COLUMN = re.compile(r"^#\s*column\.(\d+)\s*:\s*(\S+)\s*(.*)$", re.IGNORECASE)
_XDI_FIELD = re.compile(r"^#\s*element\.(symbol|edge)\s*:\s*(\S+)", re.IGNORECASE)
_COLS_LINE = re.compile(r"^#\s*%\s*cols\s*:\s*(?:\d+\s+)?(.*)$", re.IGNORECASE)
_COMMA_NUMBER = re.compile(r"^[+-]?(\d+(,\d+)?|,\d+)([eE][+-]?\d+)?$")
_NAME = re.compile(r"^[A-Za-z][\w.:/+\-]*([(\[][^)\]]*[)\]])?$")
_UNIT = re.compile(r"^(.*?)\s*[(\[]([^)\]]*)[)\]]$")


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


def _name_and_unit(name: str) -> tuple[str, str]:
    """(key, unit) of a column name: ``"Energy(eV)"`` → ("energy", "ev"), ``"I_t"`` → ("itrans", "")."""
    unit = ""
    if match := _UNIT.match(name.strip()):
        name, unit = match.group(1), match.group(2).strip().lower()
    key = re.sub(r"[^0-9a-z]", "", name.lower())
    if not unit and (match := re.fullmatch(r"(energy|e)(k?ev)", key)):  # energy_eV, E_keV
        key, unit = match.groups()
        key = "energy"
    return _ALIASES.get(key, key), unit


def _key(name: str) -> str:
    return _name_and_unit(name)[0]


def _floats(line: str, decimal_comma: bool = False) -> list[float] | None:
    text = line.replace(",", ".") if decimal_comma else line.replace(",", " ")
    text = text.replace(";", " ")
    try:
        values = [float(p) for p in text.split()]
    except ValueError:
        return None
    return values or None


def _uses_decimal_comma(lines: list[str]) -> bool:
    """Whether numeric lines write decimal commas (``6863,933 0,0039``, ``6863,933;0,0039``) more
    often than dots."""
    comma = dot = 0
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = [t for t in re.split(r"[\s;]+", stripped) if t]
        if "," in stripped and len(tokens) >= 2 and all(_COMMA_NUMBER.match(t) for t in tokens):
            comma += 1
        elif "." in stripped and _floats(stripped) is not None:
            dot += 1
    return comma > dot


class _Parsed:
    """The parts of a file's text: data, XDI fields and the header lines that may hold labels."""

    def __init__(self):
        self.data = None
        self.xdi_columns: dict[int, tuple[str, str]] = {}
        self.xdi_fields: dict[str, str] = {}
        self.cols_line: str | None = None
        self.header_lines: list[str] = []  # uncommented text lines before the data
        self.last_comment: str | None = None  # the comment line right before the data
        self.header_text = ""
        self.skipped = 0
        self.decimal_comma = False


def _parse(path: Path, text: str) -> _Parsed:
    parsed = _Parsed()
    lines = text.splitlines()
    parsed.decimal_comma = _uses_decimal_comma(lines)
    entries = []  # (line number, kind, content): kind is comment | text | numbers
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if match := _XDI_COLUMN.match(stripped):
                parsed.xdi_columns[int(match.group(1))] = (match.group(2), match.group(3).strip("[]() "))
            elif match := _XDI_FIELD.match(stripped):
                parsed.xdi_fields[match.group(1).lower()] = match.group(2)
            elif match := _COLS_LINE.match(stripped):
                parsed.cols_line = match.group(1)
            entries.append((number, "comment", stripped))
            continue
        values = _floats(stripped, parsed.decimal_comma)
        entries.append((number, "numbers", values) if values is not None else (number, "text", stripped))
    counts = Counter(len(content) for _, kind, content in entries if kind == "numbers")
    if not counts:
        raise XanesFileError(path, "no numeric data rows found")
    n_columns = max(counts, key=lambda c: (counts[c], c))
    first = next(i for i, (_, kind, content) in enumerate(entries) if kind == "numbers" and len(content) == n_columns)
    rows = []
    for number, kind, content in entries[first:]:
        if kind == "comment":
            continue
        if kind == "text":
            raise XanesFileError(path, f"line {number}: non-numeric data after the data began: {content[:60]!r}")
        if len(content) != n_columns:
            raise XanesFileError(path, f"line {number}: {len(content)} columns, the data have {n_columns}")
        rows.append(content)
    if n_columns < 2:
        raise XanesFileError(path, "one column only: need energy and μ (or energy, I0, It)")
    before = entries[:first]
    parsed.skipped = sum(kind == "numbers" for _, kind, _ in before)
    parsed.header_lines = [content for _, kind, content in before if kind == "text"]
    if before and before[-1][1] == "comment":
        parsed.last_comment = before[-1][2].lstrip("#").strip()
    parsed.header_text = "\n".join(str(content) for _, kind, content in before if kind != "numbers")
    parsed.data = np.array(rows, dtype=np.float64)
    return parsed


def _label_tokens(line: str) -> list[str]:
    """Whitespace/comma-separated names, a bracketed unit (``Energy (eV)``) joined to its name."""
    tokens: list[str] = []
    for token in re.split(r"[\s,;]+", line.strip()):
        if not token:
            continue
        if tokens and re.fullmatch(r"[(\[][^)\]]*[)\]]", token):
            tokens[-1] += token
        else:
            tokens.append(token)
    return tokens


def _as_labels(line: str | None, n_columns: int, need_energy: bool = True) -> list[str] | None:
    if not line:
        return None
    tokens = _label_tokens(line)
    if len(tokens) != n_columns or not all(_NAME.match(t) for t in tokens):
        return None
    if need_energy and not any(_key(t) in ENERGY_NAMES for t in tokens):
        return None
    return tokens


def _labels(parsed: _Parsed) -> tuple[list[str] | None, list[str], str | None]:
    """(column keys or None, column units, where the labels came from) — rules in the docstring."""
    n_columns = parsed.data.shape[1]
    units = [""] * n_columns
    if parsed.xdi_columns:
        keys = [""] * n_columns
        for i, (name, unit) in parsed.xdi_columns.items():
            if 1 <= i <= n_columns:
                keys[i - 1], name_unit = _name_and_unit(name)
                units[i - 1] = unit.lower() or name_unit
        return keys, units, "xdi"
    candidates = [("cols line", _as_labels(parsed.cols_line, n_columns, need_energy=False))]
    candidates += [("header line", _as_labels(line, n_columns)) for line in reversed(parsed.header_lines)]
    candidates.append(("comment line", _as_labels(parsed.last_comment, n_columns)))
    for source, tokens in candidates:
        if tokens:
            pairs = [_name_and_unit(t) for t in tokens]
            return [k for k, _ in pairs], [u for _, u in pairs], source
    return None, units, None


def _roles(keys: list[str] | None, header_text: str) -> tuple[dict[str, int], str | None]:
    """(role → column index, the beamline whose counter map was applied or None)."""
    roles: dict[str, int] = {}
    if not keys:
        return roles, None
    for i, key in enumerate(keys):
        if key in _ROLES:
            roles.setdefault(key, i)
    for beamline, signature, mapping in BEAMLINE_COUNTERS:
        if signature.search(header_text) and any(k in mapping for k in keys):
            for i, key in enumerate(keys):
                if key in mapping:
                    roles.setdefault(mapping[key], i)
            return roles, beamline
    return roles, None


def _mu_column(path: Path, data: np.ndarray, keys: list[str] | None, roles: dict[str, int],
               beamline: str | None) -> tuple[np.ndarray, str, str]:
    """(μ, how it was obtained, source: normalised | mu | transmission | fluorescence)."""
    col = {k: i for i, k in reversed(list(enumerate(keys or []))) if k}
    for names, source in ((NORM_NAMES, "normalised"), (MU_NAMES, "mu")):
        for name in names:
            if name in col:
                return data[:, col[name]], f"column {col[name] + 1} ({name})", source
    label = (lambda i: keys[i]) if keys else (lambda i: f"column {i + 1}")
    mapped = f"; {beamline} counter map" if beamline else ""
    with np.errstate(divide="ignore", invalid="ignore"):
        if "i0" in roles and "itrans" in roles:
            i0, it = roles["i0"], roles["itrans"]
            return (np.log(data[:, i0] / data[:, it]),
                    f"ln({label(i0)}/{label(it)}) (columns {i0 + 1}, {it + 1}{mapped})", "transmission")
        if "i0" in roles and "ifluor" in roles:
            i0, fl = roles["i0"], roles["ifluor"]
            return (data[:, fl] / data[:, i0],
                    f"{label(fl)}/{label(i0)} (columns {fl + 1}, {i0 + 1}{mapped})", "fluorescence")
        counters = [i for i, k in enumerate(keys or []) if _COUNTER.match(k)]
        if len(counters) >= 2:
            i0, it = counters[:2]
            return (np.log(data[:, i0] / data[:, it]),
                    f"ln({keys[i0]}/{keys[it]}) (columns {i0 + 1}, {it + 1}: the first two counter columns "
                    "taken as I0 and It, no counter map for this file)", "transmission")
        if data.shape[1] == 2:
            return data[:, 1], "column 2", "mu"
        if keys:
            raise XanesFileError(path, f"the column labels {keys} name no μ column, no i0 + itrans and no "
                                       "i0 + ifluor pair: relabel the columns or pass energy, μ only")
        return (np.log(data[:, 1] / data[:, 2]), "ln(I0/It) (columns 2, 3: no μ column labelled)",
                "transmission")


def _energy_column(data: np.ndarray, keys: list[str] | None, units: list[str]) -> tuple[np.ndarray, str, int]:
    """(energy in eV, the unit the file used, the column index)."""
    i = next((keys.index(name) for name in ENERGY_NAMES if keys and name in keys), 0)
    energy = data[:, i]
    finite = energy[np.isfinite(energy)]
    if units[i] == "kev" or (finite.size and np.abs(finite).max() < 100):
        return energy * 1000.0, "keV", i
    return energy, "eV", i


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


def read_xanes(path: str | Path, element: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(energy in eV, μ, info) of a measured spectrum; rules in the module docstring.

    ``info``: ``format`` ("xdi" | "columns"), ``columns`` (label keys or None), ``labels_from``,
    ``mu_source`` (normalised | mu | transmission | fluorescence), ``mu_from`` (which columns),
    ``energy_unit`` (as in the file), ``n_points``, ``n_dropped``, ``n_skipped_lines``,
    ``decimal_comma``, ``counter_map`` (beamline, when one was applied) and, from XDI headers,
    ``element`` and ``edge`` when given.

    With ``element`` (a symbol of :data:`K_EDGES`), the file must be for that element's K edge
    (XDI header) and reach its edge window; ``info`` then also holds ``e0`` and ``edge_search``
    (:func:`find_edge`). Every problem is a one-line :class:`XanesFileError`.
    """
    path = Path(path)
    symbol = canonical_element(element) if element is not None else None
    text = read_data_text(path, XanesFileError)
    is_xdi = text.lstrip().upper().startswith("# XDI/") or text.lstrip().upper().startswith("#XDI/")
    parsed = _parse(path, text)
    keys, units, labels_from = _labels(parsed)
    roles, beamline = _roles(keys, parsed.header_text)
    energy, unit, _ = _energy_column(parsed.data, keys, units)
    mu, mu_from, mu_source = _mu_column(path, parsed.data, keys, roles, beamline)
    energy, mu, dropped = _clean(path, energy, mu)
    check_axis(energy, path, XanesFileError, "energy", "eV", MIN_STEP_EV, ENERGY_EXTENT_EV)
    info = {"format": "xdi" if is_xdi else "columns", "columns": keys, "labels_from": labels_from,
            "mu_source": mu_source, "mu_from": mu_from, "energy_unit": unit, "n_points": int(energy.size),
            "n_dropped": dropped, "n_skipped_lines": parsed.skipped, "decimal_comma": parsed.decimal_comma}
    if beamline:
        info["counter_map"] = beamline
    if "symbol" in parsed.xdi_fields:
        info["element"] = parsed.xdi_fields["symbol"].capitalize()
    if "edge" in parsed.xdi_fields:
        info["edge"] = parsed.xdi_fields["edge"].upper()
    if symbol is not None:
        if info.get("element") and info["element"] != symbol:
            raise XanesFileError(path, f"the file's XDI header says element {info['element']}, asked for {symbol}")
        if info.get("edge") and info["edge"] != "K":
            raise XanesFileError(path, f"the file's XDI header says the {info['edge']} edge; the models are K-edge")
        try:
            e0, search = find_edge(energy, mu, symbol)
        except XanesError as exc:
            raise XanesFileError(path, str(exc)) from None
        info["e0"] = e0
        info["edge_search"] = search
    return energy, mu, info


# --------------------------------------------------------------------------- edge and normalisation


def _smoothed(energy: np.ndarray, mu: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(0.1 eV grid, μ interpolated onto it and Gaussian-smoothed with σ = ``sigma`` eV)."""
    from scipy.ndimage import gaussian_filter1d

    fine = np.arange(energy[0], energy[-1], FINE_STEP_EV)
    if fine.size < 5:
        raise XanesError("energy range too short to find an edge")
    mu_fine = np.interp(fine, energy, mu)
    if sigma > 0:
        mu_fine = gaussian_filter1d(mu_fine, sigma / FINE_STEP_EV, mode="nearest")
    return fine, mu_fine


def measured_edge_energy(energy, mu, smooth: float = EDGE_SMOOTH_EV, element: str | None = None) -> float:
    """E0 of a measured spectrum.

    With ``element``: :func:`find_edge` (the maximum of the smoothed dμ/dE in a window around the
    element's tabulated K edge, after pre-edge subtraction). Without: :func:`edge_energy` (the
    training data's rule, no window) of a Gaussian-smoothed (σ = ``smooth`` eV) copy.
    """
    if element is not None:
        return find_edge(energy, mu, element, smooth)[0]
    energy = np.asarray(energy, dtype=np.float64)
    fine, mu_fine = _smoothed(energy, np.asarray(mu, dtype=np.float64), smooth)
    try:
        return edge_energy(fine, mu_fine)
    except ValueError as exc:
        raise XanesError(str(exc)) from None


def _pre_edge_line(energy: np.ndarray, mu: np.ndarray, edge: float) -> tuple[np.ndarray, dict]:
    """(the pre-edge line at every energy, what was fitted) — step 1 of :func:`find_edge`."""
    sel = (energy >= edge + PRE_EDGE_FIT_EV[0]) & (energy <= edge + PRE_EDGE_FIT_EV[1])
    if sel.sum() < 3 or np.ptp(energy[sel]) < 10.0:
        sel = energy < edge + EDGE_WINDOW_EV[0]
    if sel.sum() < 3:
        return np.zeros_like(mu), {"pre_edge": "none (fewer than 3 points below the search window)"}
    degree = 1 if np.ptp(energy[sel]) >= 20.0 else 0
    fit = np.polynomial.Polynomial.fit(energy[sel], mu[sel], degree)
    slope = float(fit.deriv()(edge)) if degree else 0.0
    return fit(energy), {"pre_edge": f"{'line' if degree else 'mean'} over {energy[sel].min():.1f}–"
                                     f"{energy[sel].max():.1f} eV ({int(sel.sum())} points)",
                         "pre_edge_slope": slope}


def _main_edge(fine: np.ndarray, mu: np.ndarray, slope: np.ndarray, lo: float, hi: float) -> float | None:
    """E0 in [lo, hi] (step 3 of :func:`find_edge`), or None when the window holds no main edge.

    The half-step level lies halfway between μ just below the window (median over 30 eV, else the
    window's first 5 %) and μ just above it (median over 60 eV, else the window's last 20 %); the
    main edge rises through it for the last time in the window (a pre-edge peak may reach the
    level — tetrahedral Ti — but drops back before the edge). E0 is the largest slope on that
    rise: within 10 eV of the crossing, not before the local minimum of μ that precedes it.
    None when μ does not end above its start, no crossing lies in the window, the slope there is
    not positive or its maximum is on the window's border."""
    idx = np.flatnonzero((fine >= lo) & (fine <= hi))
    if idx.size < 10:
        return None
    below = (fine >= lo - 30.0) & (fine < lo)
    above = (fine > hi) & (fine <= hi + 60.0)
    low = float(np.median(mu[below])) if below.sum() >= 10 else float(np.median(mu[idx[: max(3, idx.size // 20)]]))
    high = float(np.median(mu[above])) if above.sum() >= 10 else float(np.median(mu[idx[-max(3, idx.size // 5):]]))
    if not high > low:
        return None
    level = mu[idx] >= 0.5 * (low + high)
    ups = np.flatnonzero(~level[:-1] & level[1:]) + 1
    if ups.size == 0:
        return None
    crossing = idx[ups[-1]]
    start = crossing
    while start > idx[0] and mu[start - 1] < mu[start]:  # back to the foot of the rise
        start -= 1
    rise = idx[(idx >= start) & (np.abs(fine[idx] - fine[crossing]) <= 10.0)]
    best = rise[int(np.argmax(slope[rise]))]
    if slope[best] <= 0 or best in (idx[0], idx[-1]):
        return None
    return float(fine[best])


def find_edge(energy, mu, element: str, smooth: float = EDGE_SMOOTH_EV,
              check_range: bool = True) -> tuple[float, dict]:
    """(E0, info) of a measured K edge of ``element``: rules in the module docstring (Edge energy).

    ``info``: ``tabulated_edge_ev``, ``window_ev`` (the absolute window searched), ``widened``,
    ``offset_ev`` (E0 − tabulated edge), ``smooth_ev`` (σ), ``pre_edge`` (what was subtracted)
    and ``pre_edge_slope`` (per eV). XanesError (one line) when the energies do not reach the
    edge window or no rising edge lies within ±100 eV. ``check_range=False`` skips the first
    check (:func:`check_edge_in_range`): FEFF spectra start just below their own edge, which
    may lie a few eV above the tabulated one (Cu), and are searched by the same rule
    (:func:`xtalspec.spectra.xanes_matching.edge_e0`).
    """
    symbol = canonical_element(element)
    edge = K_EDGES[symbol]
    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    order = np.argsort(energy, kind="stable")
    energy, mu = energy[order], mu[order]
    if check_range:
        check_edge_in_range(energy, symbol)
    background, info = _pre_edge_line(energy, mu, edge)
    in_window = energy[(energy >= edge + EDGE_WINDOW_EV[0]) & (energy <= edge + EDGE_WINDOW_EV[1])]
    step = float(np.median(np.diff(in_window))) if in_window.size >= 3 else float(np.median(np.diff(energy)))
    sigma = max(float(smooth), step)
    fine, mu_fine = _smoothed(energy, mu - background, sigma)
    slope = np.gradient(mu_fine, fine)
    e0, widened = None, False
    for window in (EDGE_WINDOW_EV, WIDE_WINDOW_EV):
        found = _main_edge(fine, mu_fine, slope, edge + window[0], edge + window[1])
        if found is not None:
            e0, window_ev = found, [edge + window[0], edge + window[1]]
            break
        widened = True
    if e0 is None:
        raise XanesError(f"no rising edge within {edge + WIDE_WINDOW_EV[0]:.0f}–{edge + WIDE_WINDOW_EV[1]:.0f} eV "
                         f"(the {symbol} K edge {edge:.0f} eV ±{WIDE_WINDOW_EV[1]:.0f} eV): is this a {symbol} K-edge "
                         "spectrum?")
    info.update({"tabulated_edge_ev": edge, "window_ev": window_ev, "widened": widened,
                 "offset_ev": e0 - edge, "smooth_ev": sigma})
    return e0, info


def check_edge_in_range(energy, element: str, e0: float | None = None) -> None:
    """XanesError (one line) unless the data can hold ``element``'s K edge.

    The energies must reach the E0 search window (tabulated edge −20…+40 eV) far enough to
    hold the edge: first ≤ edge + 5 eV, last ≥ edge + 5 eV and a span of at least 50 eV
    (the edge may sit up to ``EDGE_TOLERANCE_EV`` off the tabulated value). When ``e0`` (the
    edge found) is given it must lie within 25 eV of the tabulated edge.
    """
    symbol = canonical_element(element)
    edge = K_EDGES[symbol]
    lo_need, hi_need = edge + EDGE_RANGE_EV[0] + EDGE_TOLERANCE_EV, edge + EDGE_RANGE_EV[1] - EDGE_TOLERANCE_EV
    first, last = float(np.min(energy)), float(np.max(energy))
    span_need = EDGE_RANGE_EV[1] - EDGE_RANGE_EV[0]
    if first > lo_need or last < hi_need or last - first < span_need:
        raise XanesError(f"energies {first:.1f}–{last:.1f} eV do not reach the {symbol} K edge ({edge:.0f} eV; E0 "
                         f"search window {edge + EDGE_WINDOW_EV[0]:.0f}–{edge + EDGE_WINDOW_EV[1]:.0f} eV): the data "
                         f"must start below {lo_need:.0f} eV, end above {hi_need:.0f} eV and span "
                         f"≥ {span_need:.0f} eV")
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
