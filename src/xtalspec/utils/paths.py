"""Turn names that come from outside (servers, archives, users) into safe file names."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, max_len: int = 120) -> str:
    """Return a file name made from ``name`` that cannot escape a folder.

    Separators, ``..``, control and other unusual characters are replaced; leading dots
    are removed (no hidden files, no ``..``); an empty result or one that had to be changed
    gets a short hash of the original so that distinct ids stay distinct.
    """
    cleaned = _UNSAFE.sub("_", str(name)).lstrip(".")
    cleaned = cleaned.replace("..", "_")
    changed = cleaned != str(name)
    if not cleaned or changed or len(cleaned) > max_len:
        digest = hashlib.sha1(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"{cleaned[: max_len - 11] or 'id'}_{digest}"
    return cleaned


def path_inside(root: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """Path for ``name`` under ``root``, guaranteed to stay inside ``root``."""
    root = Path(root).resolve()
    candidate = (root / (safe_filename(name) + suffix)).resolve()
    if root != candidate.parent:
        raise ValueError(f"refusing path outside {root}: {name!r}")
    return candidate
