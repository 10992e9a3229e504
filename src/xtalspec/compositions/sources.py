"""One entry point for the composition sources: ``fetch_source(name, options, cache_dir)``.

Every source returns ``(records, rejects)``. Records start with the common columns
:data:`.rest.RECORD_COLUMNS` (``id, formula, reduced_formula, n_atoms,
formation_enthalpy_eV_per_atom, source, url``) followed by the source's own extras; rejects
have the columns ``id, source, url, reason, detail``; ``records.attrs["provenance"]`` says
where the data came from.

``oqmd``   :func:`.oqmd.fetch_oqmd` (online, cached in ``cache_dir``)
``mp``     :func:`.mp.fetch_mp_formation` (online, needs ``MP_API_KEY``, cached in ``cache_dir``)
``janaf``  :func:`.janaf.janaf_formation_enthalpies` (offline; takes no options, ignores
           ``cache_dir``); extras ``phase, dHf_298_kJ_per_mol, origin``
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from .janaf import URL_TEMPLATE, janaf_formation_enthalpies
from .mp import fetch_mp_formation
from .oqmd import fetch_oqmd
from .rest import RECORD_COLUMNS

SOURCES = ("oqmd", "mp", "janaf")


def fetch_janaf(options: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The JANAF records in the common column order, with a ``url`` per table."""
    if options:
        raise ValueError(f"the janaf source takes no options, got {sorted(options)}")
    frame, rejects = janaf_formation_enthalpies()
    frame = frame.assign(url=[URL_TEMPLATE.format(id=tid) for tid in frame["id"]])
    extras = [c for c in frame.columns if c not in RECORD_COLUMNS]
    frame = frame[RECORD_COLUMNS + extras]
    origin = frame["origin"].iloc[0] if len(frame) else "janaf"
    frame.attrs["provenance"] = {
        "source": "janaf", "base_url": URL_TEMPLATE.split("{", 1)[0], "origin": origin,
        "pages": 0, "requests": 0, "cached_pages": 0,
        "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "params": {},
    }
    return frame, rejects


def fetch_source(name: str, options: dict | None, cache_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, rejects) from the composition source ``name`` (one of :data:`SOURCES`)."""
    if name == "oqmd":
        return fetch_oqmd(options or {}, cache_dir)
    if name == "mp":
        return fetch_mp_formation(options or {}, cache_dir)
    if name == "janaf":
        return fetch_janaf(options)
    raise ValueError(f"unknown composition source {name!r}; known: {', '.join(SOURCES)}")
