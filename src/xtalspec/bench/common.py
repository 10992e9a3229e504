"""What every benchmark section shares: thread limits, the machine record, JSON-safe values."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from pathlib import Path


class NotAvailable(Exception):
    """A section whose code or input is not in this installation (recorded as "not available")."""


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def jsonable(value):
    """numpy scalars/arrays, tuples and paths to plain JSON; NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


@contextlib.contextmanager
def limited_threads(n: int):
    """numpy/BLAS (threadpoolctl, where installed) and torch limited to ``n`` threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def machine_info(threads: int) -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "threads": threads}
    with contextlib.suppress(AttributeError, OSError):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("numpy", "torch", "pymatgen", "diffpy.pdffit2", "snakemake"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    info["versions"] = versions
    return info


def blas_threads() -> list[dict]:
    """threadpoolctl's record of the BLAS libraries loaded now, with their current thread counts;
    ``threadpool_limits(limits=<this list>)`` sets them back."""
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
