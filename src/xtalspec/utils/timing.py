"""Helpers for the benchmark scripts: one BLAS thread, and mean milliseconds per item."""

from __future__ import annotations

import contextlib
import time


def one_thread():
    """Limit numpy/BLAS to one thread (threadpoolctl, where installed) so per-core speeds compare."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def ms_per_item(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return 1000.0 * (time.perf_counter() - start) / len(items)
