"""What every structure source provides.

A source lists the ids it holds (cheaply, deterministically sorted) and yields, for a chosen
subset of ids, the raw CIF bytes with their provenance. Parsing, cleaning and symmetry are
not the source's business: they live in :mod:`xtalspec.structures.cleaning`.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Protocol


@dataclasses.dataclass(frozen=True)
class Provenance:
    source: str  # "amcsd", "coremof", "cif_dir", "cod", "mp"
    origin: str  # package name + version, folder, or base URL
    url: str  # where this one entry came from (URL, package resource, or file path)
    licence: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RawEntry:
    """One CIF as the source delivered it. ``data`` is None when it could not be read;
    ``error`` then says why (the entry becomes a reject, it is never dropped silently)."""

    id: str
    data: bytes | None
    provenance: Provenance
    error: str | None = None
    reason: str = "unreadable"  # reject reason code when data is None


class Source(Protocol):
    name: str

    def list_ids(self) -> list[str]:
        """All ids this source holds, sorted."""

    def iter_entries(self, ids: Iterable[str]) -> Iterator[RawEntry]:
        """Raw entries for ``ids`` (any order in, the same order out)."""
