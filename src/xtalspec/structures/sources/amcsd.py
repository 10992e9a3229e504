"""AMCSD mineral structures as shipped (trimmed, ~9.3k CIFs) inside the ``larixite`` package.

Read straight from the package's SQLite database through larixite's own reader; never
touches the network (larixite's ``get_amcsd()`` would try to download the full database,
so it is not used).
"""

from __future__ import annotations

import logging
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

from .base import Provenance, RawEntry

log = logging.getLogger("xtalspec.amcsd")

LICENCE = "AMCSD: free use with citation (Downs & Hall-Wallace 2003); larixite package MIT"


def _db_path() -> Path:
    import larixite

    return Path(larixite.__file__).parent / "amcsd_cif1.db"


class AMCSDSource:
    name = "amcsd"

    def __init__(self):
        self.db_path = _db_path()
        self.origin = f"larixite {metadata.version('larixite')} ({self.db_path.name})"
        self._db = None

    def list_ids(self) -> list[str]:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True) as con:
            return [f"{row[0]:07d}" for row in con.execute("select id from cif order by id")]

    def _database(self):
        if self._db is None:
            from larixite.amcsd import AMCSD

            self._db = AMCSD(dbname=str(self.db_path), read_only=True)
        return self._db

    def iter_entries(self, ids: Iterable[str]) -> Iterator[RawEntry]:
        db = self._database()
        for ident in ids:
            prov = Provenance(self.name, self.origin, f"larixite:amcsd_cif1.db#cif/{int(ident)}", LICENCE)
            try:
                cif = db.get_cif(int(ident))
                if cif is None:
                    yield RawEntry(ident, None, prov, "id not in database")
                    continue
                yield RawEntry(ident, cif.ciftext.encode("utf-8"), prov)
            except Exception as exc:  # larixite raises on a few malformed rows
                yield RawEntry(ident, None, prov, f"larixite could not rebuild the CIF: {type(exc).__name__}: {exc}")
