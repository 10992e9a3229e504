"""A user's own folder of ``.cif`` / ``.cif.gz`` files, searched recursively.

The id of each structure is its path relative to the folder (POSIX separators).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterable, Iterator

from .base import Provenance, RawEntry


class CIFDirSource:
    name = "cif_dir"

    def __init__(self, root: str | Path, licence: str = "user-supplied"):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"CIF folder not found: {self.root}")
        self.licence = licence

    def list_ids(self) -> list[str]:
        found = []
        for path in self.root.rglob("*"):
            lower = path.name.lower()
            if path.is_file() and (lower.endswith(".cif") or lower.endswith(".cif.gz")):
                found.append(path.relative_to(self.root).as_posix())
        return sorted(found)

    def iter_entries(self, ids: Iterable[str]) -> Iterator[RawEntry]:
        for ident in ids:
            path = (self.root / ident).resolve()
            prov = Provenance(self.name, str(self.root), str(path), self.licence)
            if self.root not in path.parents:
                yield RawEntry(ident, None, prov, "path outside the CIF folder")
                continue
            try:
                data = path.read_bytes()
                if path.name.lower().endswith(".gz"):
                    data = gzip.decompress(data)
                yield RawEntry(ident, data, prov)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                yield RawEntry(ident, None, prov, f"{type(exc).__name__}: {exc}")
