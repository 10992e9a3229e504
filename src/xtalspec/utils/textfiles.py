"""Reading a user's measured-data file (pattern, G(r), XANES) as text, with the same checks.

A measured-data file is small (a few MB at most). So that no file can exhaust the memory, a
file larger than :data:`MAX_INPUT_BYTES` (64 MiB; the environment variable
``XTALSPEC_MAX_INPUT_BYTES`` sets another limit) or that is not a regular file is refused
before it is read, and :func:`check_axis` refuses an abscissa (2θ, r, energy) that is not
finite, repeats values, or whose step or length makes no sense — before any resampling.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

MAX_INPUT_BYTES = 64 * 2**20
#: at most this many data points in one measured file
MAX_POINTS = 2_000_000


def max_input_bytes() -> int:
    value = os.environ.get("XTALSPEC_MAX_INPUT_BYTES", "")
    return int(value) if value.isdigit() else MAX_INPUT_BYTES


def read_data_bytes(path, error) -> bytes:
    """The bytes of ``path``, refused (``error(path, problem)``) when the file is missing, not a
    regular file or larger than the limit (checked before reading, and again on what was read)."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise error(path, "file not found") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(path, "not a regular file" if not path.is_dir() else "is a folder, not a file")
    limit = max_input_bytes()
    if info.st_size > limit:
        raise error(path, f"{info.st_size:,} bytes: larger than the {limit:,}-byte limit for a measured-data file "
                          "(XTALSPEC_MAX_INPUT_BYTES sets another)")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(path, f"larger than the {limit:,}-byte limit for a measured-data file")
    return data


def decode_data_text(data: bytes, path, error) -> str:
    """``data`` as text (UTF-8, a BOM dropped, undecodable bytes replaced); refused when it holds
    nothing but whitespace or holds NUL bytes (binary content)."""
    text = data.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise error(path, "the file is empty")
    if "\x00" in text:
        raise error(path, "binary content (NUL bytes), not a text data file")
    return text


def read_data_text(path, error) -> str:
    """The text of ``path`` (UTF-8, a BOM dropped, undecodable bytes replaced).

    Raises ``error(path, problem)`` — the caller's file-naming error class — when the file is
    missing, not a regular file, larger than the limit, or holds nothing but whitespace."""
    return decode_data_text(read_data_bytes(path, error), path, error)


def check_axis(x: np.ndarray, path, error, name: str, unit: str, min_step: float, extent: tuple[float, float]) -> None:
    """Refuse an abscissa that cannot be resampled sensibly: fewer than 3 points, more than
    :data:`MAX_POINTS`, non-finite, not increasing (after sorting: repeated values), a median
    step below ``min_step`` or values outside ``extent`` (physically possible range)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 3:
        raise error(path, f"only {len(x)} data point(s)")
    if len(x) > MAX_POINTS:
        raise error(path, f"{len(x):,} data points: more than {MAX_POINTS:,}")
    if not np.isfinite(x).all():
        raise error(path, f"non-finite {name} values")
    steps = np.diff(np.sort(x))
    if (steps <= 0).any():
        raise error(path, f"repeated {name} values ({int((steps <= 0).sum())} of them)")
    step = float(np.median(steps))
    if step < min_step:
        raise error(path, f"{name} step {step:.3g} {unit} is below {min_step:g} {unit}: not a measured grid")
    lo, hi = extent
    if x.min() < lo or x.max() > hi:
        raise error(path, f"{name} runs from {x.min():.6g} to {x.max():.6g} {unit}, outside {lo:g}–{hi:g} {unit}")
