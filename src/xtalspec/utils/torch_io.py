"""Saving and loading torch files: byte-reproducible, atomic, safe, with one-line errors.

* :func:`save_torch` serialises into memory first, so the archive's internal folder is always
  ``archive/`` (``torch.save`` to a path names it after the file, which for an atomic write is
  a random temporary name): two identical runs write byte-identical files. The bytes are then
  written atomically (temporary name, rename).
* :func:`load_torch` loads with ``weights_only=True`` (no code from a file ever runs) and turns
  every way a file can fail — missing, truncated, not a torch archive, a forbidden pickle, too
  large for memory — into :class:`TorchFileError`, whose message names the file in one line.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from .atomic import atomic_write_bytes


class TorchFileError(ValueError):
    """A torch file that cannot be loaded; ``str(err)`` is ``"<file>: <problem>"``."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def save_torch(obj, path) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_torch(path, map_location="cpu"):
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise TorchFileError(path, "file not found") from None
    except pickle.UnpicklingError as exc:  # weights_only refused something: never run it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TorchFileError(path, f"refused: not a plain weights file ({first[:160]})") from None
    except MemoryError:
        raise TorchFileError(path, "does not fit in memory") from None
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TorchFileError(path, f"not a readable torch file ({type(exc).__name__}: {text[:160]})") from None
