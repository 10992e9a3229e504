"""Paged JSON GET client with retries and an on-disk page cache, and the record table it
feeds, shared by the online composition sources (:mod:`.oqmd`, :mod:`.mp`).

Requests (:class:`RestClient`). One ``GET`` at a time on a :class:`requests.Session`, at
least ``delay_s`` apart. Connection errors, timeouts, truncated bodies, HTTP 429 and 5xx are
retried ``retries`` times with exponential back-off (``backoff_s``, ``2·backoff_s``, ...); a
``Retry-After`` header is honoured, and every wait is capped at ``max_wait_s``. After the last
try :class:`RestError` names the URL. Any other 4xx fails at once with :class:`RestHTTPError`;
401/403 on a client that sends an API key raise :class:`APIKeyRefused`. A 2xx body that is
not JSON is a :class:`RestError` too.

Secrets. An API key goes in ``secret_headers``: it is sent with every request but never
written to the cache, never logged, never part of an error message, and dropped when a
redirect leaves the host.

Cache. Every successful page is stored as ``<cache_dir>/pages/<sha256>.json``, the hash
taken over the URL and the sorted query parameters (not the headers). The file holds
``{"url", "params", "fetched_at" (ISO time, UTC), "body"}`` and is written atomically. A
rerun with the same query reads the file and makes no request (``refresh=True`` fetches
again). The cache reflects the server on the day it was filled.

Bounds. Each whole answer must arrive within ``deadline_s`` and weigh at most ``max_bytes``
(:mod:`xtalspec.utils.http`), so a trickling or flooding server ends in a :class:`RestError`.

Paging. :func:`fetch_offset_pages` asks for ``limit``/``offset``-style pages until the server
has no more data, a page is empty, or ``max_results`` rows have arrived. A server that always
says "more" cannot page forever: at most ``max_pages`` pages (default :data:`MAX_PAGES`) are
read, and a page identical to the one before it (a server ignoring the offset) is an error.

Records. :func:`build_records` turns the served rows into the record table
(:data:`REST_COLUMNS`) and a rejects table (``id, source, url, reason, detail``). A row is
rejected with the first of these reasons that applies (:data:`REST_REJECT_REASONS`):

``missing_value``        no id, formula or formation energy (or the row is not an object)
``duplicate_id``         the id was served before (the first row with it wins)
``unparseable_formula``  pymatgen cannot parse the formula, it holds an unknown symbol, or
                         it names deuterium (the rules of :func:`.janaf._parse`)
``single_element``       one element only
``non_finite``           the energy is NaN, ±inf or not a number
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlencode

import pandas as pd
import requests

from ..utils.http import DEFAULT_DEADLINE_S, DEFAULT_MAX_BYTES, RetriesExhausted, get_with_retries
from ..utils.atomic import atomic_write_text
from .janaf import REJECT_COLUMNS, _parse

log = logging.getLogger("xtalspec.compositions.rest")

DEFAULT_USER_AGENT = "xtalspec (+https://pypi.org/project/xtalspec)"

RECORD_COLUMNS = ["id", "formula", "reduced_formula", "n_atoms", "formation_enthalpy_eV_per_atom",
                  "source", "url"]
REST_COLUMNS = RECORD_COLUMNS + ["energy_above_hull_eV_per_atom"]
REST_REJECT_REASONS = ("missing_value", "duplicate_id", "unparseable_formula", "single_element", "non_finite")

CLIENT_OPTIONS = ("delay_s", "retries", "backoff_s", "max_wait_s", "timeout_s", "deadline_s", "max_bytes", "refresh")
#: at most this many pages per query unless ``max_pages`` says otherwise
MAX_PAGES = 5000


class RestError(RuntimeError):
    """The server could not be reached, or answered something unusable."""


class RestHTTPError(RestError):
    """An error status not worth retrying (4xx other than 429)."""

    def __init__(self, status: int, url: str, message: str | None = None):
        super().__init__(message or f"HTTP {status} for {url}")
        self.status = status
        self.url = url


class APIKeyRefused(RestHTTPError):
    """HTTP 401/403 on a request that carried an API key."""


class _Session(requests.Session):
    """A session that drops ``secret_headers`` when a redirect leaves the host (requests
    itself only drops ``Authorization``)."""

    secret_headers: frozenset[str] = frozenset()

    def rebuild_auth(self, prepared_request, response):
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in self.secret_headers:
                prepared_request.headers.pop(name, None)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def full_url(url: str, params: Mapping[str, Any] | None = None) -> str:
    """``url`` with ``params`` in sorted order, as used for cache keys and messages."""
    query = urlencode(sorted((str(k), str(v)) for k, v in (params or {}).items()))
    return f"{url}?{query}" if query else url


class RestClient:
    """GET JSON pages politely, with retries and a page cache (see the module docstring).

    Counters for provenance: ``requests`` (HTTP attempts made, retries included), ``pages``
    (pages returned) and ``cached_pages`` (of those, read from the cache).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        *,
        delay_s: float = 0.0,
        retries: int = 4,
        backoff_s: float = 1.0,
        max_wait_s: float = 60.0,
        timeout_s: float = 60.0,
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        refresh: bool = False,
        secret_headers: Mapping[str, str] | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ):
        if retries < 0:
            raise ValueError("retries must be at least 0")
        self.cache_dir = Path(cache_dir) / "pages"
        self.delay_s = float(delay_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_wait_s = float(max_wait_s)
        self.timeout_s = float(timeout_s)
        self.deadline_s, self.max_bytes = float(deadline_s), int(max_bytes)
        self.refresh = bool(refresh)
        self.session = _Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        self.session.headers.update(dict(secret_headers or {}))
        self.session.secret_headers = frozenset(secret_headers or ())
        self.sends_key = bool(secret_headers)
        self.requests = 0
        self.pages = 0
        self.cached_pages = 0
        self.page_times: list[str] = []
        self._last_request = float("-inf")

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cache_path(self, url: str, params: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(full_url(url, params).encode("utf-8")).hexdigest()
        return self.cache_dir / f"{digest}.json"

    def get_json(self, url: str, params: Mapping[str, Any]) -> Any:
        """The JSON body of ``GET url?params``, from the cache when there."""
        params = {str(k): str(v) for k, v in params.items()}
        path = self.cache_path(url, params)
        if not self.refresh and path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                body, fetched_at = cached["body"], cached["fetched_at"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable cache page %s (%s); fetching again", path, exc)
            else:
                self._count_page(fetched_at, cached=True)
                return body
        body = self._get(url, params)
        fetched_at = _now()
        record = {"url": url, "params": params, "fetched_at": fetched_at, "body": body}
        atomic_write_text(path, json.dumps(record, sort_keys=True))
        self._count_page(fetched_at, cached=False)
        return body

    def provenance(self, source: str, base_url: str, params: Mapping[str, Any]) -> dict:
        """What was asked and how it was answered. ``fetched_at`` is when the oldest page was
        downloaded (now, when no page was)."""
        return {
            "source": source, "base_url": base_url, "pages": self.pages, "requests": self.requests,
            "cached_pages": self.cached_pages, "fetched_at": min(self.page_times, default=_now()),
            "params": dict(params),
        }

    def _count_page(self, fetched_at: str, cached: bool) -> None:
        self.pages += 1
        self.cached_pages += int(cached)
        self.page_times.append(fetched_at)

    def _wait_turn(self) -> None:
        """Keep ``delay_s`` between requests; every attempt passes here, so it also counts them."""
        pause = self._last_request + self.delay_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._last_request = time.monotonic()
        self.requests += 1

    def _get(self, url: str, params: dict[str, str]) -> Any:
        shown = full_url(url, params)
        try:
            response = get_with_retries(self.session, url, params, retries=self.retries, backoff_s=self.backoff_s,
                                        timeout_s=self.timeout_s, wait_turn=self._wait_turn,
                                        max_wait_s=self.max_wait_s, deadline_s=self.deadline_s,
                                        max_bytes=self.max_bytes, shown=shown)
        except RetriesExhausted as exc:
            raise RestError(str(exc)) from None
        status = response.status_code
        if status in (401, 403) and self.sends_key:
            raise APIKeyRefused(status, shown, f"HTTP {status} for {shown}: the API key was refused "
                                "(check that it is valid and current)")
        if status >= 400:
            raise RestHTTPError(status, shown, f"HTTP {status} for {shown}: {response.text[:200]!r}")
        try:
            return response.json()
        except ValueError as exc:
            raise RestError(f"{shown}: the answer is not JSON: {response.text[:100]!r}") from exc


# --------------------------------------------------------------------------- options


def check_options(options: Mapping[str, Any] | None, allowed: Iterable[str], source: str) -> dict:
    """``options`` as a dict; unknown keys are an error (typos fail loudly)."""
    options = dict(options or {})
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {source} options: {sorted(unknown)}; known: {sorted(allowed)}")
    for key in ("page_size", "max_results"):
        value = options.get(key)
        if value is not None and int(value) < 1:
            raise ValueError(f"{source} option {key} must be at least 1, got {value!r}")
    return options


def client_from_options(cache_dir: str | Path, options: Mapping[str, Any], *, delay_s: float,
                        secret_headers: Mapping[str, str] | None = None) -> RestClient:
    """A :class:`RestClient` configured by the :data:`CLIENT_OPTIONS` in ``options``."""
    kwargs = {k: options[k] for k in CLIENT_OPTIONS if options.get(k) is not None}
    kwargs.setdefault("delay_s", delay_s)
    return RestClient(cache_dir, secret_headers=secret_headers, **kwargs)


# --------------------------------------------------------------------------- paging

HasMore = Callable[[dict, int, int, int], bool]  # (body, rows in page, limit asked, next offset)


def fetch_offset_pages(client: RestClient, url: str, params: Mapping[str, Any], *, limit_key: str,
                       offset_key: str, page_size: int, max_results: int | None,
                       has_more: HasMore, max_pages: int = MAX_PAGES) -> list:
    """Rows of ``body["data"]`` over ``limit``/``offset`` pages, in the order served, at most
    ``max_results``. Stops on an empty page or when ``has_more`` says so; raises
    :class:`RestError` after ``max_pages`` pages or on a page that repeats the one before."""
    rows: list = []
    offset = 0
    previous = None
    for pages in itertools.count(1):
        if max_results is not None and len(rows) >= max_results:
            break
        if pages > max_pages:
            raise RestError(f"{url}: still more data after {max_pages} pages ({len(rows)} rows); "
                            "set max_results, or max_pages if the source is really that large")
        limit = page_size if max_results is None else min(page_size, max_results - len(rows))
        body = client.get_json(url, {**params, limit_key: limit, offset_key: offset})
        page = body.get("data") if isinstance(body, dict) else None
        if not isinstance(page, list):
            raise RestError(f"{full_url(url, {**params, limit_key: limit, offset_key: offset})}: "
                            "the answer has no 'data' list")
        if page and page == previous:
            raise RestError(f"{url}: the page at {offset_key}={offset} repeats the page before it "
                            "(the server ignores the offset)")
        previous = page
        rows.extend(page)
        offset += len(page)
        log.info("%s: page at %s=%d holds %d rows", url, offset_key, offset - len(page), len(page))
        if not page or not has_more(body, len(page), limit, offset):
            break
    return rows if max_results is None else rows[:max_results]


# --------------------------------------------------------------------------- records

Normalise = Callable[[dict], dict]  # row -> {"id", "url", "formula", "energy", "above_hull"}


def _number(value: Any) -> float | None:
    """``value`` as a float (NaN and inf included), or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def build_records(rows: Iterable[Any], normalise: Normalise, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, rejects) from served rows; every row lands in exactly one of the two.

    ``normalise`` maps a row (a dict) to ``{"id", "url", "formula", "energy", "above_hull"}``,
    ``id`` None when the row has none.
    """
    records, rejects = [], []
    first_seen: dict[str, int] = {}

    def reject(rid, url, reason, detail):
        rejects.append({"id": rid, "source": source, "url": url, "reason": reason, "detail": detail})

    for pos, row in enumerate(rows):
        shown = json.dumps(row, sort_keys=True, default=str)[:200]
        if not isinstance(row, dict):
            reject(None, None, "missing_value", f"row {pos} is not an object: {shown}")
            continue
        item = normalise(row)
        rid, url, formula, energy = item["id"], item["url"], item["formula"], item["energy"]
        absent = [name for name, value in (("id", rid), ("formula", formula), ("energy", energy)) if _missing(value)]
        if absent:
            reject(rid, url, "missing_value", f"row {pos}: no {', '.join(absent)}: {shown}")
            continue
        if rid in first_seen:
            reject(rid, url, "duplicate_id", f"row {pos}: {rid} was served before, at row {first_seen[rid]}")
            continue
        first_seen[rid] = pos
        comp, err = _parse(formula) if isinstance(formula, str) else (None, f"formula {formula!r} is not text")
        if comp is None:
            reject(rid, url, "unparseable_formula", err)
            continue
        if len(comp.elements) == 1:
            reject(rid, url, "single_element", f"{formula!r} is a single element")
            continue
        value = _number(energy)
        if value is None or not math.isfinite(value):
            reject(rid, url, "non_finite", f"formation energy {energy!r} is not a finite number")
            continue
        above_hull = _number(item.get("above_hull"))
        records.append({
            "id": rid, "formula": formula, "reduced_formula": comp.reduced_formula,
            "n_atoms": float(comp.num_atoms), "formation_enthalpy_eV_per_atom": value,
            "source": source, "url": url,
            "energy_above_hull_eV_per_atom": math.nan if above_hull is None else above_hull,
        })
    return pd.DataFrame(records, columns=REST_COLUMNS), pd.DataFrame(rejects, columns=REJECT_COLUMNS)
