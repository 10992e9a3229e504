"""Reading a user's measured-data file (pattern, G(r), XANES) as text, with the same checks."""

from __future__ import annotations

from pathlib import Path


def read_data_text(path, error) -> str:
    """The text of ``path`` (UTF-8, a BOM dropped, undecodable bytes replaced).

    Raises ``error(path, problem)`` — the caller's file-naming error class — when the file is
    missing or holds nothing but whitespace."""
    path = Path(path)
    if not path.is_file():
        raise error(path, "file not found")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise error(path, "the file is empty")
    return text
