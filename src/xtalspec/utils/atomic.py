"""Atomic file writes: write to a temporary name in the same folder, then rename.

An interrupted run leaves at most a ``*.tmp`` file behind, never a half-written output,
so rerunning resumes cleanly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an output gets the mode open() would give it
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output path that names a folder or lies in a missing one
    that cannot be made."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name for the output")
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"{path}: {path.parent} is not a folder")
    return path


def atomic_write_texts(texts: dict) -> list[Path]:
    """Write several text files as one: every temporary file is written first, then all are
    renamed; if any write fails, none of the outputs is touched."""
    paths = [check_output_path(p) for p in texts]
    temps = []
    try:
        for path, text in zip(paths, texts.values()):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append(Path(tmp))
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        for path, tmp in zip(paths, temps):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return paths


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
