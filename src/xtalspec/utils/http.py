"""GET with retries, shared by the download clients (COD, OQMD, Materials Project).

Network failures, timeouts, short bodies, HTTP 429 and 5xx are retried with exponential backoff
(at least what a ``Retry-After`` header asks for, at most ``max_wait_s``: 60 s unless a client
says otherwise, so a server asking for 100,000 s cannot park the run); any other answer is
returned for the caller to judge, so each client raises its own errors for 4xx.

No server can hold a download for long or fill the memory: the body is read in pieces as they
arrive, against a **deadline for the whole answer** (``deadline_s``, not only the socket's
per-read timeout, which a server trickling one byte every few seconds never trips) and a **size
cap** (``max_bytes``). A body is accepted only when it is provably complete: its
``Content-Length`` was met, or its chunked transfer ended with the final chunk. A body that
simply stops when the server closes the connection (neither header) cannot be told from a
connection cut short, so it counts as truncated (retried, then given up).
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Any, Callable, Mapping

import requests
import urllib3

log = logging.getLogger("xtalspec.http")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: defaults for every client: seconds for one whole answer, bytes of one body, longest wait
DEFAULT_DEADLINE_S = 300.0
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_MAX_WAIT_S = 60.0
_PIECE = 64 * 1024


class Truncated(Exception):
    """The body ended before the length the server announced."""


class TooSlow(Exception):
    """The whole answer did not arrive within the deadline."""


class TooLarge(Exception):
    """The body is larger than the size cap."""


class RetriesExhausted(RuntimeError):
    def __init__(self, url: str, attempts: int, problem: str):
        super().__init__(f"{url}: gave up after {attempts} attempts, last: {problem}")
        self.url, self.attempts, self.problem = url, attempts, problem


# Network failures, timeouts and short bodies (requests reports urllib3's IncompleteRead as
# ChunkedEncodingError; check_complete covers the rest) are all worth another try.
RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError, Truncated, TooSlow, TooLarge)


def check_complete(response: requests.Response) -> None:
    """Raise :class:`Truncated` if fewer bytes arrived than ``Content-Length`` announced.
    (urllib3 usually notices first and raises, which requests turns into
    ``ChunkedEncodingError``; this covers the rest.)"""
    announced = response.headers.get("Content-Length")
    if announced is None or response.headers.get("Content-Encoding", "identity") != "identity":
        return
    received = len(response.content)
    if announced.isdigit() and received < int(announced):
        raise Truncated(f"got {received} of {announced} bytes")


def retry_after_s(response: requests.Response) -> float:
    """Seconds asked for by a ``Retry-After`` header (seconds or HTTP date), else 0."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def read_body(response: requests.Response, deadline: float, max_bytes: int) -> bytes:
    """The body of a streamed ``response``, read piece by piece as it arrives (``read1``), so
    that the deadline (a ``time.monotonic()`` value) and the size cap are checked between
    pieces; sets ``response._content`` so ``.text``/``.json()`` work as usual."""
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > max_bytes:
        response.close()
        raise TooLarge(f"announces {announced} bytes, more than the cap of {max_bytes}")
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    pieces, size = [], 0
    raw = response.raw
    while True:
        if time.monotonic() > deadline:
            response.close()
            raise TooSlow(f"not complete after the deadline ({size} bytes so far)")
        piece = raw.read1(_PIECE, decode_content=True)
        if not piece:
            break
        size += len(piece)
        if size > max_bytes:
            response.close()
            raise TooLarge(f"more than the cap of {max_bytes} bytes")
        pieces.append(piece)
    response._content = b"".join(pieces)
    response._content_consumed = True
    if response.ok and not announced.isdigit() and not chunked:
        raise Truncated(f"{size} bytes with neither Content-Length nor chunked transfer: "
                        "completeness cannot be proven")
    return response._content


def get_with_retries(session: requests.Session, url: str, params: Mapping[str, Any] | None = None, *,
                     retries: int, backoff_s: float, timeout_s: float, wait_turn: Callable[[], None],
                     max_wait_s: float = DEFAULT_MAX_WAIT_S, deadline_s: float = DEFAULT_DEADLINE_S,
                     max_bytes: int = DEFAULT_MAX_BYTES, shown: str | None = None) -> requests.Response:
    """The first complete answer whose status is not 429/5xx (``retries`` + 1 attempts, each
    after ``wait_turn()``, the client's rate limit); :class:`RetriesExhausted` otherwise.
    ``timeout_s`` bounds each socket read, ``deadline_s`` each whole answer, ``max_bytes`` its
    body, and ``max_wait_s`` every pause between attempts (``Retry-After`` included)."""
    shown = shown or url
    problem, retry_after = "", 0.0
    for attempt in range(retries + 1):
        if attempt:
            wait = min(max(backoff_s * 2 ** (attempt - 1), retry_after), max_wait_s)
            log.info("%s (%s); retry %d/%d in %.1f s", shown, problem, attempt, retries, wait)
            time.sleep(wait)
            retry_after = 0.0
        wait_turn()
        try:
            deadline = time.monotonic() + deadline_s
            response = session.get(url, params=params, timeout=timeout_s, stream=True)
            with response:
                read_body(response, deadline, max_bytes)
            check_complete(response)
        except RETRY_ERRORS as exc:
            problem = f"{type(exc).__name__}: {exc}"
            continue
        if response.status_code in RETRY_STATUS:
            problem, retry_after = f"HTTP {response.status_code}", retry_after_s(response)
            continue
        return response
    raise RetriesExhausted(shown, retries + 1, problem)
