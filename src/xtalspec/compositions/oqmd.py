"""DFT formation energies per atom from the Open Quantum Materials Database (OQMD).

OQMD's REST API (https://oqmd.org/static/docs/restful.html), as used here::

    GET https://oqmd.org/oqmdapi/formationenergy
        ?fields=name,entry_id,delta_e,natoms,stability&format=json
        &limit=<page size>&offset=<rows skipped>[&filter=<OQMD filter, e.g. stability=0>]

answers ``{"data": [row, ...], "links": {"next": url or null},
"meta": {"data_returned": n, "data_available": N, "more_data_available": bool}}``. A row
holds ``name`` (the composition, e.g. ``"Fe2O3"``), ``entry_id``, ``delta_e`` (formation
energy, eV/atom), ``natoms`` (atoms in the cell) and ``stability`` (distance to the convex
hull, eV/atom).

Pages are asked for by ``offset`` until ``more_data_available`` is false (else: until
``data_available`` rows, else until ``links.next`` is null, else until a short page), an
empty page, or ``max_results`` rows. Pages are cached (:class:`.rest.RestClient`), so a rerun
is offline.

Records (:data:`.rest.REST_COLUMNS`): ``id`` = ``oqmd-<entry_id>``, ``formula`` = ``name``,
``formation_enthalpy_eV_per_atom`` = ``delta_e``, ``energy_above_hull_eV_per_atom`` =
``stability``, ``url`` = ``https://oqmd.org/materials/entry/<entry_id>``. Rows that cannot be
used are rejects (reasons: :data:`.rest.REST_REJECT_REASONS`). ``records.attrs["provenance"]``
says what was asked and how many pages came from the network or the cache.

Options: ``base_url``, ``page_size`` (1000), ``max_results`` (None: all), ``filter``,
``delay_s`` (1.0 between requests), ``retries`` (4), ``backoff_s`` (1.0), ``max_wait_s`` (60),
``timeout_s`` (60), ``refresh`` (False).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .rest import CLIENT_OPTIONS, build_records, check_options, client_from_options, fetch_offset_pages

SOURCE = "oqmd"
DEFAULT_BASE_URL = "https://oqmd.org/oqmdapi/formationenergy"
ENTRY_URL = "https://oqmd.org/materials/entry/{entry_id}"
FIELDS = ("name", "entry_id", "delta_e", "natoms", "stability")
DEFAULT_PAGE_SIZE = 1000
DEFAULT_DELAY_S = 1.0
OPTIONS = ("base_url", "page_size", "max_results", "filter") + CLIENT_OPTIONS


def _entry_id(value: Any) -> str | None:
    """``entry_id`` as text (``12.0`` -> ``"12"``), None when missing."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _normalise(row: dict) -> dict:
    entry = _entry_id(row.get("entry_id"))
    return {
        "id": None if entry is None else f"oqmd-{entry}",
        "url": None if entry is None else ENTRY_URL.format(entry_id=entry),
        "formula": row.get("name"),
        "energy": row.get("delta_e"),
        "above_hull": row.get("stability"),
    }


def _has_more(body: dict, n_rows: int, limit: int, offset: int) -> bool:
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    more = meta.get("more_data_available")
    if isinstance(more, bool):
        return more
    available = meta.get("data_available")
    if isinstance(available, int) and not isinstance(available, bool):
        return offset < available
    links = body.get("links")
    if isinstance(links, dict) and "next" in links:
        return bool(links["next"])
    return n_rows >= limit


def fetch_oqmd(options: dict, cache_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, rejects) of OQMD formation energies matching ``options`` (module docstring)."""
    options = check_options(options, OPTIONS, "OQMD")
    base_url = options.get("base_url") or DEFAULT_BASE_URL
    page_size = int(options.get("page_size") or DEFAULT_PAGE_SIZE)
    max_results = None if options.get("max_results") is None else int(options["max_results"])
    params = {"fields": ",".join(FIELDS), "format": "json"}
    if options.get("filter"):
        params["filter"] = str(options["filter"])
    with client_from_options(cache_dir, options, delay_s=DEFAULT_DELAY_S) as client:
        rows = fetch_offset_pages(client, base_url, params, limit_key="limit", offset_key="offset",
                                  page_size=page_size, max_results=max_results, has_more=_has_more)
    records, rejects = build_records(rows, _normalise, SOURCE)
    records.attrs["provenance"] = client.provenance(
        SOURCE, base_url, {**params, "page_size": page_size, "max_results": max_results})
    return records, rejects
