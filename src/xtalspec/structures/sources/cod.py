"""Client for the Crystallography Open Database (COD), https://www.crystallography.net/cod.

The COD interface used here (https://wiki.crystallography.net/RESTful_API/):

* Search: ``GET <base>/result?format=json&...`` answers a JSON array, one object per entry,
  holding the columns of COD's SQL ``data`` table as strings: ``file`` (the 7-digit COD id),
  ``a`` ``b`` ``c`` ``alpha`` ``beta`` ``gamma`` ``vol``, ``sg``, ``sgHall``, ``nel``, ``Z``,
  ``formula`` (``_chemical_formula_sum`` wrapped as ``"- Fe2 O3 -"``), ``calcformula``,
  ``cellformula`` (the contents of the whole cell, same wrapping), ``mineral``, ``title``,
  ``journal``, ``year``, ``doi``, ``flags``, ... ``format=count`` answers only the number of
  matches. Filters: ``el1``..``el8`` elements that must appear, ``nel1``..``nel4`` elements
  that must not, ``strictmin``/``strictmax`` the number of distinct elements, cell ranges, and
  ``id``: ids separated by commas, where ``%`` is a wild card (``id=100%`` is every id from
  1000000 to 1009999).
* CIF download: ``GET <base>/<id>.cif``.

Paging. COD's search has no limit or offset: one query answers every match at once. This
client pages on its own side by id prefix, with the documented ``id`` wild card. It walks the
id space depth-first in ascending order, starting from the prefixes ``1``..``9``. For each
prefix it first asks for ``format=count``. It skips a prefix with no match and splits one with
more than ``page_size`` matches into its ten children (``10``..``19``). For any other prefix it
fetches the rows with ``format=json``. Pages therefore arrive in ascending id order and hold at
most ``page_size`` rows, and the same query against the same database gives the same pages.
``max_results`` stops the walk once enough rows have passed the filters, so the result is the
``max_results`` smallest matching ids.

Filters. Required elements go to the server (``el1``..``el8``) and are checked again on the
client. Excluded elements go to the server as ``nel1``..``nel4`` (COD takes at most four) and
are all checked on the client. ``inorganic_only`` rejects an entry whose formula contains
carbon together with hydrogen or deuterium. This drops hydrogen carbonates and organic-cation
salts as well, but keeps carbonates, carbides and hydrides. ``max_atoms`` limits the atoms in
the unit cell, which COD cannot filter on. It is counted from ``cellformula`` when present, or
else as the formula's atom count times ``Z``. When a limit is set, an entry with neither is
dropped. An entry whose formula cannot be parsed is always dropped. Each drop is logged at
debug level.

Downloads go to ``<cache>/cif/<safe id>.cif``, indexed in ``<cache>/index.jsonl`` (the layout
of :mod:`.cache`). Every write is atomic. Every CIF is verified before it is stored, and every
failure ends up as a reject row with a reason. A search result list is cached in
``<cache>/search/<query hash>.json``. It reflects COD on the day it was made: pass
``refresh=True`` to search again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

import requests
from pymatgen.io.cif import CifFile

from ...utils.atomic import atomic_write_bytes, atomic_write_text
from ...utils.http import (DEFAULT_DEADLINE_S, DEFAULT_MAX_BYTES, DEFAULT_MAX_WAIT_S, RetriesExhausted,
                           get_with_retries)
from ...utils.paths import path_inside
from .cache import CachedCIFSource, read_index, write_index

log = logging.getLogger("xtalspec.cod")

DEFAULT_BASE_URL = "https://www.crystallography.net/cod"
DEFAULT_USER_AGENT = "xtalspec (+https://pypi.org/project/xtalspec)"
LICENCE = "CC0 (COD)"

_MAX_REQUIRED = 8  # el1..el8
_MAX_EXCLUDED_ON_SERVER = 4  # nel1..nel4
_ID_DIGITS = 7
_COD_ID = re.compile(r"[1-9]\d{6}")
_ELEMENT = re.compile(r"[A-Z][a-z]{0,2}")
_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]{0,2})(\d+(?:\.\d+)?|\.\d+)?")
_INDEX_FLUSH_EVERY = 100
_PROGRESS_EVERY_S = 10.0

_DATA_BLOCK = re.compile(r"^[ \t]*data_\S", re.MULTILINE | re.IGNORECASE)
_CELL_LENGTH = re.compile(r"^[ \t]*_cell_length_([abc])[ \t]+['\"]?(?:\d|\.\d)", re.MULTILINE | re.IGNORECASE)
_ATOM_SITE_XYZ = re.compile(r"^[ \t]*_atom_site_(?:fract|cartn)_x\b", re.MULTILINE | re.IGNORECASE)


class CODError(RuntimeError):
    """COD could not be reached, or answered something unusable."""


class CODTruncated(CODError):
    """Every attempt delivered a body that was not provably complete."""


class CODHTTPError(CODError):
    """COD answered with an error status that is not worth retrying (4xx other than 429)."""

    def __init__(self, status: int, url: str):
        super().__init__(f"HTTP {status} for {url}")
        self.status = status


class CIFRejected(Exception):
    """A CIF that cannot be used; ``reason`` is a short key, ``detail`` says more."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class FetchReport:
    downloaded: list[str] = dataclasses.field(default_factory=list)
    cached: list[str] = dataclasses.field(default_factory=list)
    rejected: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # id, reason, detail

    def as_dict(self) -> dict:
        return {
            "downloaded": list(self.downloaded),
            "cached": list(self.cached),
            "rejected": [{"id": i, "reason": r, "detail": d} for i, r, d in self.rejected],
        }

    def summary(self) -> str:
        return f"downloaded {len(self.downloaded)}, cached {len(self.cached)}, rejected {len(self.rejected)}"


# --------------------------------------------------------------------------- CIF checks


def verify_cif(data: bytes) -> str:
    """Return the text of ``data`` if it is a usable CIF, else raise :class:`CIFRejected`.

    Usable: text (UTF-8, else latin-1, no NUL bytes), a ``data_`` block, the three cell lengths,
    an atom-site coordinate loop (fractional or Cartesian), and pymatgen can parse it.
    """
    if not data.strip():
        raise CIFRejected("empty", "the file has no content")
    if b"\x00" in data:
        raise CIFRejected("not_text", "the file contains NUL bytes (binary, not a CIF)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if not _DATA_BLOCK.search(text):
        raise CIFRejected("no_data_block", "no 'data_' block header (not a CIF, or an error page)")
    missing = sorted(set("abc") - {m.group(1).lower() for m in _CELL_LENGTH.finditer(text)})
    if missing:
        raise CIFRejected("no_cell", "missing or non-numeric " + ", ".join(f"_cell_length_{x}" for x in missing))
    if not _ATOM_SITE_XYZ.search(text):
        raise CIFRejected("no_atom_sites", "no _atom_site_fract_x or _atom_site_Cartn_x loop")
    try:
        parsed = CifFile.from_str(text)
    except Exception as exc:  # pymatgen's parser raises many kinds of errors on bad input
        raise CIFRejected("cif_parse_error", f"pymatgen: {type(exc).__name__}: {exc}") from exc
    if not parsed.data:
        raise CIFRejected("cif_parse_error", "pymatgen found no data block")
    return text


def search_disagreement(text: str, entry: dict) -> str | None:
    """Why the CIF's atoms cannot be the search entry's compound, or None when they agree.

    The cell's composition (occupancy-weighted, hydrogen left out: X-ray structures often do
    not locate it) divided by Z must give the entry's formula within 5 % per element (0.05
    atoms at least); without Z, the element ratios must. A body cut short loses its last
    atom-site rows, so its formula comes out wrong (NaCl cut at 70 % parsed as "Na2").
    """
    formula = parse_formula(entry.get("formula"))
    if not formula:
        return None
    want = {el: n for el, n in formula.items() if el not in ("H", "D")}
    try:
        from pymatgen.io.cif import CifParser

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = CifParser.from_str(text, occupancy_tolerance=1.02).parse_structures(primitive=False)[0]
        got = {el.symbol: float(n) for el, n in structure.composition.element_composition.items()
               if el.symbol not in ("H", "D")}
    except Exception as exc:  # cannot build a structure: the CIF is unusable as it stands
        return f"no structure from the CIF ({type(exc).__name__}: {str(exc)[:80]})"
    if set(got) != set(want):
        return f"elements {sorted(got)} in the CIF, {sorted(want)} in the search entry"
    z = entry.get("Z")
    if z:
        scaled = {el: n / z for el, n in got.items()}
    else:  # compare ratios: scale so that the first element matches
        first = sorted(want)[0]
        scaled = {el: n * want[first] / got[first] for el, n in got.items()}
    off = [el for el in want if abs(scaled[el] - want[el]) > max(0.05, 0.05 * want[el])]
    if off:
        shown = " ".join(f"{el}{scaled[el]:.3g}" for el in sorted(scaled))
        return f"the CIF's atoms give {shown} per formula unit, the search entry says {entry.get('formula')!r}"
    return None


# --------------------------------------------------------------------------- search rows


def parse_formula(formula: str | None) -> dict[str, float] | None:
    """``"- Fe2 O3 -"`` (COD's wrapping) or ``"Fe2 O3"`` -> ``{"Fe": 2.0, "O": 3.0}``;
    None when missing or not a plain space-separated sum formula."""
    if not formula:
        return None
    tokens = formula.strip().strip("-").split()
    if not tokens:
        return None
    counts: dict[str, float] = {}
    for token in tokens:
        match = _FORMULA_TOKEN.fullmatch(token)
        if not match:
            return None
        counts[match.group(1)] = counts.get(match.group(1), 0.0) + float(match.group(2) or 1)
    return counts


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN -> None


def _atoms_in_cell(row: dict, composition: dict[str, float] | None) -> float | None:
    cell = parse_formula(row.get("cellformula"))
    if cell:
        return sum(cell.values())
    z = _number(row.get("Z"))
    if composition and z:
        return sum(composition.values()) * z
    return None


@dataclasses.dataclass(frozen=True)
class SearchQuery:
    """A normalised, validated COD search; also decides which rows to keep."""

    elements: tuple[str, ...] = ()
    exclude_elements: tuple[str, ...] = ()
    max_atoms: int | None = None
    inorganic_only: bool = True
    max_results: int | None = None

    def __post_init__(self):
        for symbol in self.elements + self.exclude_elements:
            if not _ELEMENT.fullmatch(symbol):
                raise ValueError(f"not an element symbol: {symbol!r}")
        if len(self.elements) > _MAX_REQUIRED:
            raise ValueError(f"COD accepts at most {_MAX_REQUIRED} required elements, got {len(self.elements)}")
        if set(self.elements) & set(self.exclude_elements):
            raise ValueError("an element is both required and excluded")
        if self.max_atoms is not None and self.max_atoms < 1:
            raise ValueError("max_atoms must be at least 1")
        if self.max_results is not None and self.max_results < 1:
            raise ValueError("max_results must be at least 1")

    @classmethod
    def build(cls, elements=None, exclude_elements=None, max_atoms=None, inorganic_only=True, max_results=None):
        return cls(
            elements=tuple(sorted(set(elements or ()))),
            exclude_elements=tuple(sorted(set(exclude_elements or ()))),
            max_atoms=None if max_atoms is None else int(max_atoms),
            inorganic_only=bool(inorganic_only),
            max_results=None if max_results is None else int(max_results),
        )

    def server_params(self) -> dict[str, str]:
        params = {f"el{i}": el for i, el in enumerate(self.elements, 1)}
        excluded = self.exclude_elements[:_MAX_EXCLUDED_ON_SERVER]
        params.update({f"nel{i}": el for i, el in enumerate(excluded, 1)})
        return params

    def drop_reason(self, entry: dict) -> str | None:
        """Why ``entry`` (a :meth:`CODClient.summarise` dict) fails this query, or None."""
        elements = entry["elements"]
        if elements is None:
            return f"formula not parseable: {entry['formula']!r}"
        if missing := set(self.elements) - set(elements):
            return f"lacks required {sorted(missing)}"
        if present := set(self.exclude_elements) & set(elements):
            return f"contains excluded {sorted(present)}"
        if self.inorganic_only and "C" in elements and {"H", "D"} & set(elements):
            return "organic (contains C and H)"
        if self.max_atoms is not None:
            if entry["n_atoms"] is None:
                return "atoms per cell unknown (no cellformula, no Z)"
            if entry["n_atoms"] > self.max_atoms:
                return f"{entry['n_atoms']:g} atoms per cell > {self.max_atoms}"
        return None


# --------------------------------------------------------------------------- client


class CODClient:
    """A polite COD client: one request at a time, ``min_interval_s`` apart, retried with
    exponential back-off on 5xx / 429 / network errors / timeouts / truncated bodies."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        cache_dir: str | Path = "cod_cache",
        min_interval_s: float = 1.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 30,
        user_agent: str = DEFAULT_USER_AGENT,
        page_size: int = 2000,
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ):
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.min_interval_s = min_interval_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.page_size = page_size
        self.deadline_s, self.max_bytes, self.max_wait_s = float(deadline_s), int(max_bytes), float(max_wait_s)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self._last_request = float("-inf")

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> CODClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cif_url(self, cod_id: str) -> str:
        return f"{self.base_url}/{quote(cod_id, safe='')}.cif"

    # ----------------------------------------------------------------- HTTP

    def _wait_turn(self) -> None:
        pause = self._last_request + self.min_interval_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._last_request = time.monotonic()

    def _get(self, url: str, params: dict | None = None) -> requests.Response:
        """GET ``url`` until a complete 2xx answer arrives. Raises :class:`CODHTTPError`
        at once for 4xx other than 429, :class:`CODError` when the retries run out."""
        try:
            response = get_with_retries(self.session, url, params, retries=self.max_retries, backoff_s=self.backoff_s,
                                        timeout_s=self.timeout_s, wait_turn=self._wait_turn,
                                        max_wait_s=self.max_wait_s, deadline_s=self.deadline_s,
                                        max_bytes=self.max_bytes, shown=f"COD: {url}")
        except RetriesExhausted as exc:
            kind = CODTruncated if exc.problem.startswith("Truncated") else CODError
            raise kind(f"{url}: gave up after {exc.attempts} attempts, last: {exc.problem}") from None
        if response.status_code >= 400:
            raise CODHTTPError(response.status_code, response.url)
        return response

    # ----------------------------------------------------------------- search

    def search(
        self,
        elements: Iterable[str] | None = None,
        exclude_elements: Iterable[str] | None = None,
        max_atoms: int | None = None,
        inorganic_only: bool = True,
        max_results: int | None = None,
        refresh: bool = False,
    ) -> list[dict]:
        """COD entries matching the filters, sorted by id (see the module docstring).

        Each entry: ``id``, ``formula``, ``elements``, ``n_atoms`` (atoms per cell or None),
        ``Z``, ``sg``, ``a`` ``b`` ``c`` ``alpha`` ``beta`` ``gamma`` ``vol``, ``url`` (the CIF).
        The list is cached on disk per query; ``refresh=True`` asks COD again.
        """
        query = SearchQuery.build(elements, exclude_elements, max_atoms, inorganic_only, max_results)
        cache_path = self._search_cache_path(query)
        if cache_path.is_file() and not refresh:
            results = json.loads(cache_path.read_text(encoding="utf-8"))["results"]
            log.info("COD search: %d entries from cache %s", len(results), cache_path)
            return results
        results = list(itertools.islice(self._matching_entries(query), query.max_results))
        record = {"base_url": self.base_url, "query": dataclasses.asdict(query), "results": results}
        atomic_write_text(cache_path, json.dumps(record, indent=1, sort_keys=True))
        log.info("COD search: %d entries kept", len(results))
        return results

    def _search_cache_path(self, query: SearchQuery) -> Path:
        key = json.dumps({"base_url": self.base_url, **dataclasses.asdict(query)}, sort_keys=True)
        return self.cache_dir / "search" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"

    def _matching_entries(self, query: SearchQuery) -> Iterator[dict]:
        for row in self._iter_rows(query.server_params()):
            entry = self.summarise(row)
            reason = query.drop_reason(entry)
            if reason:
                log.debug("COD search: drop %s: %s", entry["id"], reason)
            else:
                yield entry

    def _iter_rows(self, params: dict[str, str]) -> Iterator[dict]:
        """Every row matching ``params``, in ascending id order, page by page."""
        pending = [str(d) for d in range(9, 0, -1)]  # a stack: "1" is on top
        while pending:
            prefix = pending.pop()
            count = self._count(params, prefix)
            if count == 0:
                continue
            if count > self.page_size and len(prefix) < _ID_DIGITS:
                pending.extend(prefix + str(d) for d in range(9, -1, -1))
                continue
            rows = self._page(params, prefix)
            log.info("COD search: page id=%s%% holds %d rows", prefix, len(rows))
            yield from rows

    def _count(self, params: dict[str, str], prefix: str) -> int:
        response = self._get(f"{self.base_url}/result", {**params, "id": f"{prefix}%", "format": "count"})
        try:
            return int(response.text.strip())
        except ValueError as exc:
            raise CODError(f"COD count for id={prefix}% is not a number: {response.text[:100]!r}") from exc

    def _page(self, params: dict[str, str], prefix: str) -> list[dict]:
        response = self._get(f"{self.base_url}/result", {**params, "id": f"{prefix}%", "format": "json"})
        try:
            rows = response.json()
        except ValueError as exc:
            raise CODError(f"COD page id={prefix}% is not JSON: {response.text[:100]!r}") from exc
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "file" in r for r in rows):
            raise CODError(f"COD page id={prefix}% is not a list of entries")
        stray = [str(r["file"]) for r in rows if not str(r["file"]).startswith(prefix)]
        if stray:
            raise CODError(f"COD ignored the id filter {prefix}%: got ids {stray[:5]}")
        return sorted(rows, key=lambda r: str(r["file"]))

    def summarise(self, row: dict) -> dict:
        """The fields of a COD search row this project uses, parsed."""
        cod_id = str(row["file"])
        if not _COD_ID.fullmatch(cod_id):
            log.warning("COD search: suspicious id %r (not a 7-digit number)", cod_id)
        composition = parse_formula(row.get("formula"))
        return {
            "id": cod_id,
            "formula": (row.get("formula") or "").strip().strip("-").strip(),
            "elements": sorted(composition) if composition else None,
            "n_atoms": _atoms_in_cell(row, composition),
            "Z": _number(row.get("Z")),
            "sg": row.get("sg"),
            **{key: _number(row.get(key)) for key in ("a", "b", "c", "alpha", "beta", "gamma", "vol")},
            "url": self.cif_url(cod_id),
        }

    # ----------------------------------------------------------------- download

    def download(self, ids: Iterable[str], expected: dict[str, dict] | None = None) -> FetchReport:
        """Fetch the CIFs of ``ids`` (deduplicated, in sorted order) into the cache.

        Ids whose verified file is already cached cost no request. Every id ends up in exactly
        one of ``downloaded``, ``cached`` or ``rejected``. ``expected`` maps ids to their search
        entries: a CIF whose atoms disagree with its entry's formula (:func:`search_disagreement`,
        the mark of a body cut short) is fetched again and finally rejected ``download_truncated``.
        """
        self._expected = expected or {}
        todo = sorted({str(i) for i in ids})
        report = FetchReport()
        index = read_index(self.cache_dir)
        unflushed = 0
        last_log = time.monotonic()
        log.info("COD download: %d ids into %s", len(todo), self.cache_dir)
        try:
            for done, cod_id in enumerate(todo, 1):
                try:
                    outcome = self._download_one(cod_id, index)
                except CIFRejected as rej:
                    log.warning("COD download: reject %r: %s: %s", cod_id, rej.reason, rej.detail)
                    report.rejected.append((cod_id, rej.reason, rej.detail))
                    continue
                getattr(report, outcome).append(cod_id)
                unflushed += 1
                if unflushed >= _INDEX_FLUSH_EVERY:
                    write_index(self.cache_dir, index)
                    unflushed = 0
                if time.monotonic() - last_log >= _PROGRESS_EVERY_S:
                    log.info("COD download: %d/%d ids: %s", done, len(todo), report.summary())
                    last_log = time.monotonic()
        finally:
            write_index(self.cache_dir, index)
        log.info("COD download finished: %s", report.summary())
        return report

    def _download_one(self, cod_id: str, index: dict[str, dict]) -> str:
        """``"cached"`` or ``"downloaded"``; raises :class:`CIFRejected`."""
        if not _COD_ID.fullmatch(cod_id):
            log.warning("COD download: suspicious id %r (not a 7-digit number); stored under a safe name", cod_id)
        try:
            path = path_inside(self.cache_dir / "cif", cod_id, ".cif")
        except ValueError as exc:
            raise CIFRejected("unsafe_id", str(exc)) from exc
        if self._in_cache(cod_id, path, index):
            return "cached"
        url = self.cif_url(cod_id)
        entry = getattr(self, "_expected", {}).get(cod_id)
        for attempt in range(self.max_retries + 1):
            try:
                data = self._get(url).content
            except CODHTTPError as exc:
                raise CIFRejected(f"http_{exc.status}", str(exc)) from exc
            except CODTruncated as exc:
                raise CIFRejected("download_truncated", str(exc)) from exc
            except CODError as exc:
                raise CIFRejected("retries_exhausted", str(exc)) from exc
            text = verify_cif(data)
            problem = search_disagreement(text, entry) if entry else None
            if problem is None:
                break
            log.warning("COD download: %s disagrees with its search entry (%s); attempt %d/%d", cod_id, problem,
                        attempt + 1, self.max_retries + 1)
        else:
            raise CIFRejected("download_truncated", f"after {self.max_retries + 1} downloads: {problem}")
        atomic_write_bytes(path, data)
        index[cod_id] = _index_row(cod_id, path, url, data)
        return "downloaded"

    def _in_cache(self, cod_id: str, path: Path, index: dict[str, dict]) -> bool:
        """True when ``path`` holds a verified CIF. A file the index does not vouch for
        (say, a run stopped before the index was written) is verified again and indexed."""
        if not path.is_file():
            return False
        data = path.read_bytes()
        row = index.get(cod_id)
        if row and row.get("sha256") == hashlib.sha256(data).hexdigest():
            return True
        try:
            verify_cif(data)
        except CIFRejected:
            return False
        index[cod_id] = _index_row(cod_id, path, self.cif_url(cod_id), data)
        return True


def _index_row(cod_id: str, path: Path, url: str, data: bytes) -> dict:
    return {"id": cod_id, "file": path.name, "url": url, "sha256": hashlib.sha256(data).hexdigest()}


# --------------------------------------------------------------------------- pipeline glue

_CLIENT_OPTIONS = ("base_url", "min_interval_s", "max_retries", "backoff_s", "timeout_s", "deadline_s", "max_bytes",
                   "max_wait_s")
_SEARCH_OPTIONS = ("elements", "exclude_elements", "max_atoms", "inorganic_only", "max_results")


def fetch_cod(options: dict, cache_dir: str | Path) -> FetchReport:
    """Search COD with ``options`` and download the hits into ``cache_dir``; also writes
    ``cache_dir/fetch_report.json``. Unknown option keys are an error (typos fail loudly)."""
    unknown = set(options) - set(_CLIENT_OPTIONS) - set(_SEARCH_OPTIONS)
    if unknown:
        raise ValueError(f"unknown COD options: {sorted(unknown)}")
    client_args = {k: options[k] for k in _CLIENT_OPTIONS if options.get(k) is not None}
    search_args = {k: options[k] for k in _SEARCH_OPTIONS if k in options}
    with CODClient(cache_dir=cache_dir, **client_args) as client:
        entries = client.search(**search_args)
        report = client.download((entry["id"] for entry in entries), {entry["id"]: entry for entry in entries})
    record = {"options": options, "n_search_results": len(entries), **report.as_dict()}
    text = json.dumps(record, indent=1, sort_keys=True, default=list)  # default: sets of elements
    atomic_write_text(Path(cache_dir) / "fetch_report.json", text)
    return report


class CODSource(CachedCIFSource):
    """The COD download cache read back as a :class:`~.base.Source`, offline.

    The provenance origin is the base URL the entries were fetched from, read from the
    index (the URL of ``<base>/<id>.cif`` minus its last part).
    """

    def __init__(self, cache_dir: str | Path):
        super().__init__("cod", cache_dir, origin="", licence=LICENCE)
        bases = sorted({row["url"].rsplit("/", 1)[0] for row in self._index.values() if row.get("url")})
        self.origin = " ".join(bases) or DEFAULT_BASE_URL
