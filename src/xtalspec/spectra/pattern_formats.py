"""File formats of measured powder patterns: detection on content, one parser per format.

:func:`read_pattern_file` reads a file (at most :func:`xtalspec.utils.textfiles.max_input_bytes`,
also after decompression), unpacks bzip2/gzip (found by their magic bytes, not the extension),
recognises the format from the text (:func:`detect_format`) and calls its parser. Every parser
takes ``(path, text)`` and returns a :class:`ParsedPattern`: 2theta in degrees and intensity in
file order, the wavelength in Angstrom when the file states one, the format's name and notes on
what was read. Checks that apply to every format (finite values, 2theta inside (0, 180), enough
points, an increasing axis) are left to :mod:`xtalspec.spectra.measured`.

Formats (:data:`FORMATS`):

=================  ============================================================================
``columns``        2 or 3 columns (2theta, intensity[, esd]): .xy, .xye, .csv, .txt, .dat;
                   separators space, tab, comma or semicolon (then a comma is a decimal comma);
                   comments '#'/'!', one header line; any line ending (LF, CRLF, CR-only)
``xy-pairs``       several (2theta, intensity) pairs on one line, e.g. MAUD .PRN exports
``dash-xye``       DASH .xye: first line the wavelength alone, then 2theta intensity esd
``fullprof``       FullProf INSTRM=0 free format: ``start step end [title]``, then counts,
                   any number per line
``uxd``            Bruker/Siemens UXD text: ``_KEY=value`` header (``_WL1``, ``_WL2``,
                   ``_WLRATIO``, ``_ANODE``), ranges of ``_START``/``_STEPSIZE`` +
                   ``_COUNTS`` (or ``_CPS``), or ``_2THETACOUNTS``/``_2THETACPS`` pairs
``rietan-general`` RIETAN ``GENERAL``: the word GENERAL, the number of points, 2theta intensity rows
``igor``           IGOR text wave (RIETAN .int): ``IGOR``, ``WAVES wave0 wave1``, ``BEGIN``,
                   rows, ``END``; the first two waves are 2theta and intensity
``xrdml``          PANalytical XRDML (XML): the first ``<scan>``'s ``<positions axis="2Theta">``
                   (start/end or ``<listPositions>``) and ``<intensities>`` or ``<counts>``
``fox-xml``        Fox/ObjCryst++ project (XML): the first ``<PowderPattern>`` with observed
                   data, ``<XIobsSigmaWeightList>`` or ``<IobsSigmaWeightList TThetaMin TThetaStep>``
=================  ============================================================================

Any of them may be compressed with bzip2 or gzip (format name then ends in ``+bz2``/``+gzip``).

Wavelength stated by a file: a Kalpha1/Kalpha2 doublet with an intensity ratio r (XRDML
``ratioKAlpha2KAlpha1``, UXD ``_WLRATIO``) gives the weighted mean (Ka1 + r Ka2) / (1 + r), as
:data:`xtalspec.spectra.radiation.WAVELENGTHS` does for "CuKa" ((2 Ka1 + Ka2) / 3, r = 0.5):
the doublet is not resolved or stripped before the peaks are found. With r = 0 or no Ka2 it is
Ka1. Fox stores one wavelength (already the mean for an X-ray tube), DASH .xye its first line.

XML is parsed with :mod:`xml.etree.ElementTree` only after the text was checked to hold no
``<!DOCTYPE`` or ``<!ENTITY`` declaration (entity-expansion bombs, external entities).
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils.textfiles import decode_data_text, max_input_bytes, read_data_bytes
from .radiation import WAVELENGTHS, WavelengthError, parse_wavelength

__all__ = ["PatternError", "ParsedPattern", "FORMATS", "read_pattern_file", "detect_format", "decompress",
           "parse_columns", "parse_xy_pairs", "parse_dash_xye", "parse_fullprof", "parse_uxd",
           "parse_rietan_general", "parse_igor", "parse_xrdml", "parse_fox_xml", "numeric_rows", "split_fields"]


class PatternError(ValueError):
    """A measured pattern (or peak list) cannot be turned into a model input.

    ``str(err)`` is ``"<file>: <problem>"``; the parts are ``err.path`` and ``err.problem``.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class ParsedPattern:
    """What a format parser read: 2theta (degrees) and intensity in file order, the wavelength
    (Angstrom) when the file states one, the format's name and notes on choices made."""

    two_theta: np.ndarray
    intensity: np.ndarray
    format: str
    wavelength: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def meta(self) -> dict:
        return {"format": self.format, "wavelength": self.wavelength, "notes": list(self.notes)}


FORMATS = {
    "columns": "2 or 3 columns 2theta intensity [esd] (.xy, .xye, .csv, .txt, .dat)",
    "xy-pairs": "several 2theta intensity pairs per line (MAUD .PRN)",
    "dash-xye": "DASH .xye: wavelength on the first line, then 2theta intensity esd",
    "fullprof": "FullProf INSTRM=0 free format: start step end [title], then counts",
    "uxd": "Bruker/Siemens UXD text (_START, _STEPSIZE, _COUNTS or _2THETACOUNTS)",
    "rietan-general": "RIETAN GENERAL: GENERAL, number of points, 2theta intensity rows",
    "igor": "IGOR text wave (IGOR, WAVES, BEGIN, rows, END)",
    "xrdml": "PANalytical XRDML (XML)",
    "fox-xml": "Fox/ObjCryst++ XML project (PowderPattern observed data)",
}

_HEAD_CHARS = 65536  # format detection looks at the start of the text only

# --------------------------------------------------------------------------- reading, compression

_COMPRESSION_MAGIC = {"bz2": b"BZh", "gzip": b"\x1f\x8b"}


def _compression(data: bytes) -> str | None:
    if data[:3] == b"BZh" and data[3:4].isdigit():
        return "bz2"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _new_decompressor(kind: str):
    return bz2.BZ2Decompressor() if kind == "bz2" else zlib.decompressobj(wbits=31)


def decompress(path, data: bytes) -> tuple[bytes, str | None]:
    """``(data unpacked, "bz2" | "gzip")`` for bzip2/gzip data (several concatenated streams
    too), ``(data, None)`` for anything else. Never unpacks more than the size limit of a
    measured-data file: more output is refused, as are corrupt, truncated or doubly compressed data."""
    kind = _compression(data)
    if kind is None:
        return data, None
    limit = max_input_bytes()
    out = bytearray()
    rest = data
    while rest:
        engine = _new_decompressor(kind)
        try:
            chunk = engine.decompress(rest, limit + 1 - len(out))
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise PatternError(path, f"corrupt {kind} data ({exc})") from None
        out += chunk
        if len(out) > limit:
            raise PatternError(path, f"unpacks to more than the {limit:,}-byte limit for a measured-data file "
                                     "(XTALSPEC_MAX_INPUT_BYTES sets another)")
        if not engine.eof:
            raise PatternError(path, f"truncated {kind} data (the compressed stream ends early)")
        rest = engine.unused_data
        if rest and not rest.startswith(_COMPRESSION_MAGIC[kind]):
            if rest.strip(b"\x00"):
                raise PatternError(path, f"{len(rest):,} bytes of unknown data after the {kind} stream")
            rest = b""
    if _compression(bytes(out[:4])):
        raise PatternError(path, f"compressed twice ({kind} around {_compression(bytes(out[:4]))}); unpack it first")
    return bytes(out), kind


def read_pattern_file(path) -> ParsedPattern:
    """Read ``path`` in whichever supported format it is (see :data:`FORMATS`).

    Raises :class:`PatternError` naming the file when it is missing, too large (before or after
    decompression), binary, empty, of an unknown XML kind, or malformed for its format."""
    path = Path(path)
    data, compression = decompress(path, read_data_bytes(path, PatternError))
    text = decode_data_text(data, path, PatternError)
    kind = detect_format(text)
    parsed = _PARSERS[kind](path, text)
    if compression:
        parsed.format += f"+{compression}"
    return parsed


# --------------------------------------------------------------------------- detection

_SPLIT = re.compile(r"[\s,;]+")
_SPLIT_SEMICOLON = re.compile(r"[\s;]+")
_UXD_KEY = re.compile(r"^[ \t]*_[A-Za-z0-9]+[ \t]*(=|$)", re.MULTILINE)
_XML_ELEMENT = re.compile(r"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_XML_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def split_fields(line: str) -> list[str]:
    """Fields of one data line. With a ';' in the line, ',' is a decimal comma (European CSV)."""
    if ";" in line:
        return [f.replace(",", ".") for f in _SPLIT_SEMICOLON.split(line) if f]
    return [f for f in _SPLIT.split(line) if f]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _leading_numbers(fields: list[str]) -> int:
    count = 0
    for f in fields:
        if not _is_number(f):
            break
        count += 1
    return count


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of every line that is neither blank nor a '#'/'!' comment."""
    return [(n, s) for n, s in ((n, raw.strip()) for n, raw in enumerate(text.splitlines(), start=1))
            if s and s[0] not in "#!"]


def _even_steps(x: list[float]) -> bool:
    steps = np.diff(x)
    return len(steps) > 0 and bool((steps > 0).all()) and float(np.ptp(steps)) <= 0.1 * float(np.median(steps))


def detect_format(text: str) -> str:
    """The name (a key of :data:`FORMATS`) of the format of ``text``, from its content alone.

    XML goes by its root element; otherwise the first data lines decide: ``GENERAL`` or ``IGOR``
    alone on the first line, UXD ``_KEY=value`` lines, a lone number (DASH wavelength) before
    2-3 columns, a ``start step end`` line followed by rows of counts or by a title (FullProf),
    an even number (>= 4) of fields whose odd ones step evenly upwards (pairs); else columns."""
    head = text[:_HEAD_CHARS]
    if head.lstrip().startswith("<"):
        return _xml_kind(head)
    lines = [line for _, line in _data_lines(head)[:2]]
    if not lines:
        return "columns"
    first = split_fields(lines[0])
    second = split_fields(lines[1]) if len(lines) > 1 else []
    word = lines[0].split()[0].upper()
    if word == "GENERAL" and len(lines[0].split()) == 1:
        return "rietan-general"
    if word == "IGOR":
        return "igor"
    if _UXD_KEY.search(head):
        return "uxd"
    lead = _leading_numbers(first)
    second_numeric = bool(second) and _leading_numbers(second) == len(second)
    if len(first) == 1 and lead == 1 and second_numeric and len(second) in (2, 3):
        return "dash-xye"
    if lead >= 3 and (len(first) > lead or (len(first) == 3 and second_numeric and len(second) not in (2, 3))):
        return "fullprof"
    if lead == len(first) >= 4 and len(first) % 2 == 0:
        x = [float(v) for v in first[0::2]]
        if second_numeric and len(second) % 2 == 0:
            x += [float(v) for v in second[0::2]]
        if _even_steps(x):
            return "xy-pairs"
    return "columns"


def _xml_kind(head: str) -> str:
    for match in _XML_ELEMENT.finditer(head):
        start = match.start()
        if head[start + 1 : start + 2] in "?!":
            continue
        root = match.group(2)
        return {"xrdMeasurements": "xrdml", "ObjCryst": "fox-xml"}.get(root, "xml:" + root[:40])
    return "xml:?"


# --------------------------------------------------------------------------- helpers


def _floats(path, tokens: list[str], what: str) -> np.ndarray:
    """``tokens`` as float64 (nan/inf pass; they are refused later with the other checks)."""
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next((t for t in tokens if not _is_number(t)), "?")
        raise PatternError(path, f"{what}: {bad[:40]!r} is not a number") from None


def _wavelength(path, value, what: str) -> float:
    try:
        return parse_wavelength(value)
    except WavelengthError as exc:
        raise PatternError(path, f"{what}: {exc}") from None


def _doublet(path, ka1, ka2, ratio, what: str) -> tuple[float, str]:
    """Wavelength of a Ka1/Ka2 doublet with intensity ratio Ka2/Ka1: the weighted mean
    (Ka1 + r Ka2) / (1 + r), or Ka1 alone when there is no Ka2 or r = 0."""
    lam1 = _wavelength(path, ka1, f"{what} Kalpha1")
    if ka2 is None or ratio is None:
        return lam1, f"wavelength Kalpha1 {lam1:g} A (no Kalpha2 ratio stated)"
    lam2 = _wavelength(path, ka2, f"{what} Kalpha2")
    try:
        r = float(ratio)
    except ValueError:
        raise PatternError(path, f"{what}: Kalpha2/Kalpha1 ratio {str(ratio)[:40]!r} is not a number") from None
    if not (np.isfinite(r) and 0.0 <= r <= 1.0):
        raise PatternError(path, f"{what}: Kalpha2/Kalpha1 ratio {r:g} is outside 0-1")
    if r == 0.0:
        return lam1, f"wavelength Kalpha1 {lam1:g} A (Kalpha2 ratio 0)"
    mean = (lam1 + r * lam2) / (1.0 + r)
    return mean, f"wavelength {mean:.6f} A: mean of Kalpha1 {lam1:g} and Kalpha2 {lam2:g} weighted 1:{r:g}"


def _blank_lines(text: str, upto: int) -> str:
    """``text`` with lines 1..upto emptied, so that a column reader's line numbers stay right."""
    lines = text.splitlines()
    return "\n" * upto + "\n".join(lines[upto:])


# --------------------------------------------------------------------------- plain text formats


def numeric_rows(path: Path, text: str) -> list[list[float]]:
    """(2theta, intensity) rows of 2- or 3-column text; at most one non-numeric line (a header)
    before the first row; '#'/'!' comments and blank lines skipped; the third column dropped."""
    rows: list[list[float]] = []
    header_seen = False
    n_columns = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        fields = split_fields(line)
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if not rows and not header_seen:
                header_seen = True
                continue
            raise PatternError(path, f"line {lineno} is not numeric: {line[:60]!r}") from None
        if len(values) not in (2, 3):
            raise PatternError(path, f"line {lineno} has {len(values)} columns; expected 2 (2theta, intensity) "
                                     "or 3 (2theta, intensity, esd)")
        if n_columns is not None and len(values) != n_columns:
            raise PatternError(path, f"line {lineno} has {len(values)} columns, earlier lines {n_columns}")
        n_columns = len(values)
        rows.append(values[:2])
    return rows


def _from_rows(path, rows: list[list[float]], kind: str, **extra) -> ParsedPattern:
    if not rows:
        raise PatternError(path, "no numeric data rows (only comments or a header)")
    data = np.asarray(rows, dtype=np.float64)
    return ParsedPattern(data[:, 0], data[:, 1], kind, **extra)


def parse_columns(path, text: str) -> ParsedPattern:
    """2 or 3 columns: 2theta, intensity[, esd] (see :func:`numeric_rows`)."""
    return _from_rows(path, numeric_rows(path, text), "columns")


def parse_xy_pairs(path, text: str) -> ParsedPattern:
    """Several (2theta, intensity) pairs on each line (MAUD .PRN): every data line holds an even
    number of numbers, read left to right, line after line."""
    values: list[str] = []
    for lineno, line in _data_lines(text):
        fields = split_fields(line)
        if len(fields) % 2:
            raise PatternError(path, f"line {lineno} has {len(fields)} numbers; a line of (2theta, intensity) "
                                     "pairs needs an even number")
        values += fields
    data = _floats(path, values, "2theta-intensity pairs")
    return ParsedPattern(data[0::2], data[1::2], "xy-pairs")


def parse_dash_xye(path, text: str) -> ParsedPattern:
    """DASH .xye: the first line holds the wavelength alone (Angstrom), the rows after it
    2theta, intensity and esd (or 2 columns)."""
    lineno, first = _data_lines(text[:_HEAD_CHARS])[0]
    lam = _wavelength(path, float(first.split()[0]), f"line {lineno} (a DASH .xye wavelength)")
    return _from_rows(path, numeric_rows(path, _blank_lines(text, lineno)), "dash-xye", wavelength=lam,
                      notes=[f"wavelength {lam:g} A from line {lineno}"])


def parse_fullprof(path, text: str) -> ParsedPattern:
    """FullProf free format (INSTRM=0): a first line ``start step end [title]`` (degrees 2theta),
    then the counts, any number per line; their number must be ``round((end - start)/step) + 1``."""
    lines = _data_lines(text)
    lineno, first = lines[0]
    start, step, end = (float(v) for v in split_fields(first)[:3])
    where = f"FullProf free format: line {lineno} ('start step end')"
    if not all(np.isfinite(v) for v in (start, step, end)):
        raise PatternError(path, f"{where} holds a non-finite value")
    if step <= 0:
        raise PatternError(path, f"{where} gives a 2theta step of {step:g}; it must be positive")
    if end <= start:
        raise PatternError(path, f"{where} ends at {end:g}, not after its start {start:g}")
    counts = _floats(path, [t for _, line in lines[1:] for t in line.split()], "FullProf free format counts")
    expected = (end - start) / step + 1.0
    if abs(expected - len(counts)) > 0.5:
        raise PatternError(path, f"{where}: {start:g} to {end:g} in steps of {step:g} means "
                                 f"{expected:.0f} points, but {len(counts):,} counts follow")
    two_theta = start + step * np.arange(len(counts))
    title = " ".join(first.split()[3:])
    return ParsedPattern(two_theta, counts, "fullprof", notes=[f"title {title[:60]!r}"] if title else [])


def parse_rietan_general(path, text: str) -> ParsedPattern:
    """RIETAN ``GENERAL`` format: the word GENERAL, the number of points, then one
    ``2theta intensity`` (or 3-column) row per point."""
    lines = _data_lines(text[:_HEAD_CHARS])
    if len(lines) < 2:
        raise PatternError(path, "RIETAN GENERAL format: no line with the number of points after GENERAL")
    lineno, count_line = lines[1]
    try:
        n = int(count_line.split()[0])
    except ValueError:
        raise PatternError(path, f"RIETAN GENERAL format: line {lineno} must give the number of points, "
                                 f"not {count_line[:40]!r}") from None
    parsed = _from_rows(path, numeric_rows(path, _blank_lines(text, lineno)), "rietan-general")
    if len(parsed.two_theta) != n:
        raise PatternError(path, f"RIETAN GENERAL format: line {lineno} announces {n:,} points, "
                                 f"the file holds {len(parsed.two_theta):,}")
    return parsed


def parse_igor(path, text: str) -> ParsedPattern:
    """IGOR text wave: ``IGOR``, ``WAVES[/flags] name1 name2 ...``, ``BEGIN``, one row per point,
    ``END``. The first block is read; its first two waves are 2theta and intensity."""
    waves: list[str] | None = None
    rows: list[str] = []
    state, blocks = "head", 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key = line.split()[0].upper()
        if state == "head":
            if key.startswith("WAVES"):
                waves = line.split()[1:]
            elif key == "BEGIN":
                if waves is None:
                    raise PatternError(path, f"IGOR text: BEGIN on line {lineno} without a WAVES line before it")
                if len(waves) < 2:
                    raise PatternError(path, f"IGOR text: {len(waves)} wave(s) ({' '.join(waves)}); need 2theta "
                                             "and intensity waves")
                state = "data"
        elif state == "data":
            if key == "END":
                state, blocks = "done", 1
                continue
            fields = line.split()
            if len(fields) != len(waves):
                raise PatternError(path, f"IGOR text: line {lineno} has {len(fields)} values for "
                                         f"{len(waves)} waves")
            rows.append(fields[0] + " " + fields[1])
        elif key == "BEGIN":
            blocks += 1
    if state == "head":
        raise PatternError(path, "IGOR text: no WAVES/BEGIN block")
    if state == "data":
        raise PatternError(path, "IGOR text: the data block has no END (truncated file?)")
    data = _floats(path, " ".join(rows).split(), "IGOR text wave").reshape(-1, 2)
    notes = [f"waves {waves[0]} (2theta) and {waves[1]} (intensity)"]
    if blocks > 1:
        notes.append(f"{blocks} data blocks; the first is read")
    return ParsedPattern(data[:, 0], data[:, 1], "igor", notes=notes)


_UXD_COUNT_BLOCKS = {"COUNTS", "CPS"}
_UXD_PAIR_BLOCKS = {"2THETACOUNTS", "2THETACPS", "2THETACOUNTSTIME"}


def parse_uxd(path, text: str) -> ParsedPattern:
    """Bruker/Siemens UXD text. ``;`` starts a comment; ``_KEY=value`` lines set the header
    (``_WL1``, ``_WL2``, ``_WLRATIO``, ``_ANODE``; per range ``_START``, ``_STEPSIZE``); a bare
    ``_COUNTS`` (or ``_CPS``) line starts a block of counts, any number per line, on the grid
    ``_START + i * _STEPSIZE``; a bare ``_2THETACOUNTS`` (``_2THETACPS``) line a block of
    ``2theta intensity`` rows. Several ranges are joined when they do not overlap."""
    header: dict[str, str] = {}
    ranges: list[tuple[np.ndarray, np.ndarray]] = []
    block: str | None = None
    tokens: list[str] = []

    def close() -> None:
        if block is None:
            return
        values = _floats(path, tokens, f"UXD _{block} block")
        if block in _UXD_COUNT_BLOCKS:
            try:
                start, step = float(header["START"]), float(header["STEPSIZE"])
            except KeyError as missing:
                raise PatternError(path, f"UXD: a _{block} block without _{missing.args[0]} before it") from None
            except ValueError:
                raise PatternError(path, "UXD: _START or _STEPSIZE is not a number") from None
            if not (np.isfinite(start) and np.isfinite(step) and step > 0):
                raise PatternError(path, f"UXD: _STEPSIZE {step:g} must be positive (and _START finite)")
            ranges.append((start + step * np.arange(len(values)), values))
        else:
            columns = 3 if block == "2THETACOUNTSTIME" else 2
            if len(values) % columns:
                raise PatternError(path, f"UXD _{block} block: {len(values)} numbers do not make rows of {columns}")
            rows = values.reshape(-1, columns)
            ranges.append((rows[:, 0], rows[:, 1]))

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("_"):
            key, sep, value = line[1:].partition("=")
            key = key.strip().upper()
            if sep:
                close()
                block, tokens = None, []
                header[key] = value.strip().strip("'\"")
            elif key in _UXD_COUNT_BLOCKS | _UXD_PAIR_BLOCKS:
                close()
                block, tokens = key, []
            else:
                raise PatternError(path, f"UXD: line {lineno} ({line[:40]!r}) is neither _KEY=value nor a data block")
            continue
        if block is None:
            raise PatternError(path, f"UXD: line {lineno} holds data outside a _COUNTS or _2THETACOUNTS block")
        tokens += line.split()
    close()
    if not ranges:
        raise PatternError(path, "UXD: no _COUNTS or _2THETACOUNTS data block")
    ranges.sort(key=lambda r: float(r[0][0]) if len(r[0]) else 0.0)
    for (a, _), (b, _) in zip(ranges, ranges[1:]):
        if len(a) and len(b) and b[0] <= a[-1]:
            raise PatternError(path, f"UXD: ranges {a[0]:g}-{a[-1]:g} and {b[0]:g}-{b[-1]:g} degrees overlap; "
                                     "export one range")
    two_theta = np.concatenate([r[0] for r in ranges])
    intensity = np.concatenate([r[1] for r in ranges])
    notes = [f"{len(ranges)} ranges joined"] if len(ranges) > 1 else []
    lam = None
    if "WL1" in header:
        lam, note = _doublet(path, header["WL1"], header.get("WL2"), header.get("WLRATIO"), "UXD _WL1/_WL2")
        notes.append(note)
    elif header.get("ANODE", "").capitalize() + "Ka" in WAVELENGTHS:
        name = header["ANODE"].capitalize() + "Ka"
        lam = WAVELENGTHS[name]
        notes.append(f"wavelength {lam:g} A: {name} from _ANODE (no _WL1)")
    return ParsedPattern(two_theta, intensity, "uxd", wavelength=lam, notes=notes)


# --------------------------------------------------------------------------- XML formats


def _xml_root(path, text: str, what: str) -> ET.Element:
    if _XML_DECLARATION.search(text):
        raise PatternError(path, f"{what}: a <!DOCTYPE or <!ENTITY declaration; refused (entity expansion)")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise PatternError(path, f"{what}: not well-formed XML ({exc}; truncated file?)") from None


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _descendant(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element.iter() if _local(c.tag) == name), None)


def _number(path, element: ET.Element | None, what: str) -> float:
    if element is None or not (element.text or "").strip():
        raise PatternError(path, f"{what} is missing")
    return float(_floats(path, [element.text.strip()], what)[0])


def parse_xrdml(path, text: str) -> ParsedPattern:
    """PANalytical XRDML: the first ``<scan>`` with ``<dataPoints>``; 2theta from its
    ``<positions axis="2Theta">`` (``<startPosition>``/``<endPosition>``: an even grid over the
    points; or ``<listPositions>``), intensity from ``<intensities>`` (or ``<counts>``), in counts
    (not divided by the counting time). Wavelength from ``<usedWavelength>``: see the module notes."""
    root = _xml_root(path, text, "XRDML")
    scans = [s for s in root.iter() if _local(s.tag) == "scan" and _descendant(s, "dataPoints") is not None]
    if not scans:
        raise PatternError(path, "XRDML: no <scan> with <dataPoints>")
    points = _descendant(scans[0], "dataPoints")
    values = _child(points, "intensities")
    if values is None:
        values = _child(points, "counts")
    if values is None or not (values.text or "").strip():
        raise PatternError(path, "XRDML: the scan has no <intensities> or <counts>")
    intensity = _floats(path, values.text.split(), "XRDML <intensities>")
    axis = next((p for p in points if _local(p.tag) == "positions"
                 and p.get("axis", "").replace("-", "").lower() in ("2theta", "2thetaomega")), None)
    if axis is None:
        raise PatternError(path, "XRDML: the scan has no <positions axis=\"2Theta\">")
    if axis.get("unit", "deg") != "deg":
        raise PatternError(path, f"XRDML: 2Theta positions in {axis.get('unit')!r}, not degrees")
    listed = _child(axis, "listPositions")
    if listed is not None:
        two_theta = _floats(path, (listed.text or "").split(), "XRDML <listPositions>")
        if len(two_theta) != len(intensity):
            raise PatternError(path, f"XRDML: {len(two_theta):,} 2Theta positions for {len(intensity):,} intensities")
    else:
        start = _number(path, _child(axis, "startPosition"), "XRDML 2Theta <startPosition>")
        end = _number(path, _child(axis, "endPosition"), "XRDML 2Theta <endPosition>")
        if len(intensity) < 2 or not end > start:
            raise PatternError(path, f"XRDML: 2Theta from {start:g} to {end:g} over {len(intensity)} point(s) "
                                     "is not a scan")
        two_theta = np.linspace(start, end, len(intensity))
    notes = [f"{len(scans)} scans; the first is read"] if len(scans) > 1 else []
    lam = None
    used = _descendant(root, "usedWavelength")
    if used is not None and _child(used, "kAlpha1") is not None:
        def text_of(name):
            element = _child(used, name)
            return element.text.strip() if element is not None and element.text else None

        lam, note = _doublet(path, text_of("kAlpha1"), text_of("kAlpha2"), text_of("ratioKAlpha2KAlpha1"),
                             "XRDML <usedWavelength>")
        notes.append(note)
    return ParsedPattern(two_theta, intensity, "xrdml", wavelength=lam, notes=notes)


def parse_fox_xml(path, text: str) -> ParsedPattern:
    """Fox/ObjCryst++ XML project: the first ``<PowderPattern>`` holding observed data, either
    ``<XIobsSigmaWeightList>`` (rows ``2theta Iobs sigma weight``) or ``<IobsSigmaWeightList
    TThetaMin=.. TThetaStep=..>`` (rows ``Iobs sigma weight`` on that grid); the crystal is
    ignored. The wavelength is the PowderPattern's ``<Radiation>`` ``Wavelength`` parameter.
    2theta that never exceeds pi is taken as radians (some ObjCryst versions) and converted.
    Neutron, electron and time-of-flight patterns are refused (the model is X-ray)."""
    root = _xml_root(path, text, "Fox XML")
    patterns = [p for p in root if _local(p.tag) == "PowderPattern"]
    for pattern in patterns:
        listed = _child(pattern, "XIobsSigmaWeightList")
        grid = _child(pattern, "IobsSigmaWeightList")
        if listed is not None or grid is not None:
            break
    else:
        raise PatternError(path, f"Fox XML: {len(patterns)} <PowderPattern>(s), none with observed data "
                                 "(<XIobsSigmaWeightList> or <IobsSigmaWeightList>)")
    name = pattern.get("Name", "")
    notes = [f"PowderPattern {name[:60]!r}"]
    if listed is not None:
        values = _floats(path, (listed.text or "").split(), "Fox <XIobsSigmaWeightList>")
        if len(values) % 4:
            raise PatternError(path, f"Fox <XIobsSigmaWeightList>: {len(values):,} numbers do not make rows "
                                     "of 4 (2theta Iobs sigma weight)")
        rows = values.reshape(-1, 4)
        two_theta, intensity = rows[:, 0], rows[:, 1]
    else:
        values = _floats(path, (grid.text or "").split(), "Fox <IobsSigmaWeightList>")
        if len(values) % 3:
            raise PatternError(path, f"Fox <IobsSigmaWeightList>: {len(values):,} numbers do not make rows "
                                     "of 3 (Iobs sigma weight)")
        start, step = (_floats(path, [grid.get(k, "")], f"Fox IobsSigmaWeightList {k}")[0]
                       for k in ("TThetaMin", "TThetaStep"))
        if not (np.isfinite(start) and np.isfinite(step) and step > 0):
            raise PatternError(path, f"Fox <IobsSigmaWeightList>: TThetaStep {step:g} must be positive")
        intensity = values.reshape(-1, 3)[:, 0]
        two_theta = start + step * np.arange(len(intensity))
    if len(two_theta) and np.nanmax(two_theta) <= np.pi:
        two_theta = np.degrees(two_theta)
        notes.append("2theta stored in radians, converted to degrees")
    radiation = _child(pattern, "Radiation")
    lam = None
    if radiation is not None:
        options = {o.get("Name"): o.get("ChoiceName", "") for o in radiation if _local(o.tag) == "Option"}
        kind, spectrum = options.get("Radiation", "X-Ray"), options.get("Spectrum", "")
        if kind.replace("-", "").lower() != "xray" or "flight" in spectrum.lower():
            raise PatternError(path, f"Fox XML: {kind} {spectrum} pattern; only X-ray angle-dispersive patterns "
                                     "can be read")
        parameter = next((p for p in radiation if _local(p.tag) == "Par" and p.get("Name") == "Wavelength"), None)
        if parameter is not None:
            lam = _wavelength(path, _number(path, parameter, "Fox Radiation Wavelength"), "Fox Radiation Wavelength")
            tube = radiation.get("XRayTube")
            notes.append(f"wavelength {lam:g} A" + (f" (X-ray tube {tube})" if tube else ""))
    return ParsedPattern(two_theta, intensity, "fox-xml", wavelength=lam, notes=notes)


def _unknown_xml(kind: str):
    def parse(path, text: str) -> ParsedPattern:
        raise PatternError(path, f"an XML file with root <{kind[4:]}>: neither XRDML (<xrdMeasurements>) nor a "
                                 "Fox/ObjCryst project (<ObjCryst>)")
    return parse


class _Parsers(dict):
    def __missing__(self, kind: str):
        return _unknown_xml(kind)


_PARSERS = _Parsers({
    "columns": parse_columns,
    "xy-pairs": parse_xy_pairs,
    "dash-xye": parse_dash_xye,
    "fullprof": parse_fullprof,
    "uxd": parse_uxd,
    "rietan-general": parse_rietan_general,
    "igor": parse_igor,
    "xrdml": parse_xrdml,
    "fox-xml": parse_fox_xml,
})
