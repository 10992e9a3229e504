"""A download cache laid out as ``<cache>/cif/<safe id>.cif`` plus ``<cache>/index.jsonl``
(one JSON object per line: id, file, url, sha256). Downloading sources (COD, Materials
Project) fill it; ingestion reads it back as a source, offline. Ids whose download was
rejected (listed in ``<cache>/fetch_report.json``) are read back too, as entries without
data, so they reach the rejects table with their reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from ...utils.atomic import atomic_write_text
from .base import Provenance, RawEntry


def read_index(cache_dir: str | Path) -> dict[str, dict]:
    path = Path(cache_dir) / "index.jsonl"
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[str(row["id"])] = row
    return rows


def read_download_rejects(cache_dir: str | Path) -> dict[str, str]:
    """id -> "reason: detail" for the downloads a fetch rejected."""
    path = Path(cache_dir) / "fetch_report.json"
    if not path.exists():
        return {}
    report = json.loads(path.read_text(encoding="utf-8"))
    return {str(r["id"]): f"{r['reason']}: {r['detail']}" for r in report.get("rejected", [])}


def write_index(cache_dir: str | Path, rows: dict[str, dict]) -> None:
    lines = [json.dumps(rows[k], sort_keys=True) for k in sorted(rows)]
    atomic_write_text(Path(cache_dir) / "index.jsonl", "\n".join(lines) + ("\n" if lines else ""))


class CachedCIFSource:
    """Reads a download cache as a structure source."""

    def __init__(self, name: str, cache_dir: str | Path, origin: str, licence: str):
        self.name = name
        self.cache_dir = Path(cache_dir)
        self.origin = origin
        self.licence = licence
        self._index = read_index(self.cache_dir)
        self._failed = {ident: text for ident, text in read_download_rejects(self.cache_dir).items()
                        if ident not in self._index}

    def list_ids(self) -> list[str]:
        return sorted([*self._index, *self._failed])

    def iter_entries(self, ids: Iterable[str]) -> Iterator[RawEntry]:
        for ident in ids:
            row = self._index.get(ident, {})
            prov = Provenance(self.name, self.origin, row.get("url", ""), self.licence)
            if ident in self._failed:
                yield RawEntry(ident, None, prov, self._failed[ident], reason="download_failed")
                continue
            path = self.cache_dir / "cif" / Path(row.get("file", "")).name
            try:
                yield RawEntry(ident, path.read_bytes(), prov)
            except OSError as exc:
                yield RawEntry(ident, None, prov, f"cached file missing: {exc}")
