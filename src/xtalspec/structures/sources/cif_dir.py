"""A user's own folder of ``.cif`` / ``.cif.gz`` files, searched recursively.

The id of each structure is its path relative to the folder (POSIX separators).

The folder is walked iteratively (any depth: no recursion limit), without following a symbolic
link out of the folder, and only regular files are read. Nothing is skipped silently: a CIF
name that is not a regular file (a FIFO, a device, a socket), a link that leaves the folder or
dangles, and a subfolder that cannot be listed each become an id whose entry carries no data
and says why, so ingestion writes a reject row for it.
"""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

from ..cleaning import CleaningSettings
from .base import Provenance, RawEntry

#: larger files are not read (rejected as ``file_too_large``, the cleaning stage's limit)
MAX_FILE_BYTES = CleaningSettings().max_file_bytes
SUFFIXES = (".cif", ".cif.gz")


def _is_cif_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


class CIFDirSource:
    name = "cif_dir"

    def __init__(self, root: str | Path, licence: str = "user-supplied"):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"CIF folder not found: {self.root}")
        self.licence = licence
        self._skipped: dict[str, str] | None = None

    def _inside(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def _walk(self) -> tuple[list[str], dict[str, str]]:
        """(readable CIF ids, {id: why it cannot be read}) from an iterative walk."""
        found, skipped = [], {}
        stack = [self.root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    entries = list(entries)
            except OSError as exc:
                ident = Path(folder).relative_to(self.root).as_posix() + "/"
                skipped[ident] = f"folder cannot be listed: {type(exc).__name__}: {exc.strerror or exc}"
                continue
            for entry in entries:
                path = Path(entry.path)
                ident = path.relative_to(self.root).as_posix()
                try:
                    if entry.is_symlink():
                        target = path.resolve()
                        if not self._inside(target):
                            if _is_cif_name(entry.name) or target.is_dir():
                                skipped[ident] = f"symbolic link leaves the folder (to {target})"
                            continue
                        if target.is_dir():
                            continue  # its files are reached through their real path
                        if not _is_cif_name(entry.name):
                            continue
                        mode = os.stat(path).st_mode
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append(path)
                        continue
                    elif not _is_cif_name(entry.name):
                        continue
                    else:
                        mode = entry.stat(follow_symlinks=False).st_mode
                except OSError as exc:
                    if _is_cif_name(entry.name):
                        skipped[ident] = f"cannot be inspected: {type(exc).__name__}: {exc.strerror or exc}"
                    continue
                if stat.S_ISREG(mode):
                    found.append(ident)
                else:
                    skipped[ident] = f"not a regular file ({_kind(mode)})"
        return sorted(found), skipped

    def list_ids(self) -> list[str]:
        found, self._skipped = self._walk()
        return sorted(found + list(self._skipped))

    def iter_entries(self, ids: Iterable[str]) -> Iterator[RawEntry]:
        if self._skipped is None:
            self.list_ids()
        for ident in ids:
            path = (self.root / ident).resolve()
            prov = Provenance(self.name, str(self.root), str(path), self.licence)
            if ident in self._skipped:
                yield RawEntry(ident, None, prov, self._skipped[ident])
                continue
            if self.root not in path.parents:
                yield RawEntry(ident, None, prov, "path outside the CIF folder")
                continue
            try:
                info = os.stat(path)
                if not stat.S_ISREG(info.st_mode):
                    yield RawEntry(ident, None, prov, "not a regular file")
                    continue
                if info.st_size > MAX_FILE_BYTES:
                    yield RawEntry(ident, None, prov, f"{info.st_size} bytes > {MAX_FILE_BYTES}", "file_too_large")
                    continue
                if path.name.lower().endswith(".gz"):
                    with gzip.open(path, "rb") as handle:  # bounded: a small archive may unpack to gigabytes
                        data = handle.read(MAX_FILE_BYTES + 1)
                    if len(data) > MAX_FILE_BYTES:
                        yield RawEntry(ident, None, prov, f"unpacks to more than {MAX_FILE_BYTES} bytes",
                                       "file_too_large")
                        continue
                else:
                    data = path.read_bytes()
                yield RawEntry(ident, data, prov)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                yield RawEntry(ident, None, prov, f"{type(exc).__name__}: {exc}")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"
