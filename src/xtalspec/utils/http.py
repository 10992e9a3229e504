"""GET with retries, shared by the download clients (COD, OQMD, Materials Project).

Network failures, timeouts, short bodies, HTTP 429 and 5xx are retried with exponential backoff
(at least what a ``Retry-After`` header asks for, at most ``max_wait_s``); any other answer is
returned for the caller to judge, so each client raises its own errors for 4xx.
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Any, Callable, Mapping

import requests

log = logging.getLogger("xtalspec.http")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class Truncated(Exception):
    """The body ended before the length the server announced."""


class RetriesExhausted(RuntimeError):
    def __init__(self, url: str, attempts: int, problem: str):
        super().__init__(f"{url}: gave up after {attempts} attempts, last: {problem}")
        self.url, self.attempts, self.problem = url, attempts, problem


# Network failures, timeouts and short bodies (requests reports urllib3's IncompleteRead as
# ChunkedEncodingError; check_complete covers the rest) are all worth another try.
RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, Truncated)


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


def get_with_retries(session: requests.Session, url: str, params: Mapping[str, Any] | None = None, *,
                     retries: int, backoff_s: float, timeout_s: float, wait_turn: Callable[[], None],
                     max_wait_s: float = float("inf"), shown: str | None = None) -> requests.Response:
    """The first complete answer whose status is not 429/5xx (``retries`` + 1 attempts, each
    after ``wait_turn()``, the client's rate limit); :class:`RetriesExhausted` otherwise."""
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
            response = session.get(url, params=params, timeout=timeout_s)
            check_complete(response)
        except RETRY_ERRORS as exc:
            problem = f"{type(exc).__name__}: {exc}"
            continue
        if response.status_code in RETRY_STATUS:
            problem, retry_after = f"HTTP {response.status_code}", retry_after_s(response)
            continue
        return response
    raise RetriesExhausted(shown, retries + 1, problem)
