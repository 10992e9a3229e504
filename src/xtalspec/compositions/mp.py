"""DFT formation energies per atom from the Materials Project (MP) summary endpoint.

This talks to MP's REST API directly with ``requests`` (:class:`.rest.RestClient`) rather than
through the official ``mp-api`` package: the same HTTP interface that client calls, without
its heavy dependencies, so it needs no extra and can be tested offline against a local fake.
(The structure source :mod:`xtalspec.structures.sources.mp` still uses ``mp-api``.)

The request::

    GET https://api.materialsproject.org/materials/summary/
        x-api-key: <MP_API_KEY>
        ?_fields=material_id,formula_pretty,composition_reduced,formation_energy_per_atom,
                 energy_above_hull,nsites
        &deprecated=false&_limit=<page size>&_skip=<rows skipped>
        [&is_stable=true][&elements=Fe,O]

answers ``{"data": [doc, ...], "meta": {"total_doc": N, ...}}``. Pages are asked for by
``_skip`` until ``total_doc`` rows (else until a short page), an empty page, or
``max_results`` rows. The key comes from the ``MP_API_KEY`` environment variable
(:func:`xtalspec.structures.sources.mp.api_key`; :class:`MissingAPIKey` when unset). It is
sent as a header only: never cached, logged or put in the provenance. Pages are cached, so a
rerun makes no request (the key is still required).

Records (:data:`.rest.REST_COLUMNS`): ``id`` = ``material_id`` (``mp-149``), ``formula`` =
``formula_pretty``, ``formation_enthalpy_eV_per_atom`` = ``formation_energy_per_atom``,
``energy_above_hull_eV_per_atom`` = ``energy_above_hull``, ``url`` =
``https://next-gen.materialsproject.org/materials/<id>``. Rows that cannot be used are rejects
(reasons: :data:`.rest.REST_REJECT_REASONS`); ``records.attrs["provenance"]`` as for OQMD.

Options: ``endpoint`` (``https://api.materialsproject.org/``), ``page_size`` (1000),
``max_results`` (None: all), ``stable_only`` (False), ``elements`` (list or comma text: every
one must be present), ``delay_s`` (0.2), ``retries``, ``backoff_s``, ``max_wait_s``,
``timeout_s``, ``refresh``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from ..structures.sources.mp import DEFAULT_ENDPOINT, MissingAPIKey, api_key
from .rest import CLIENT_OPTIONS, build_records, check_options, client_from_options, fetch_offset_pages

__all__ = ["fetch_mp_formation", "MissingAPIKey"]

SOURCE = "mp"
MATERIAL_URL = "https://next-gen.materialsproject.org/materials/{id}"
FIELDS = ("material_id", "formula_pretty", "composition_reduced", "formation_energy_per_atom",
          "energy_above_hull", "nsites")
KEY_HEADER = "x-api-key"
DEFAULT_PAGE_SIZE = 1000
DEFAULT_DELAY_S = 0.2
OPTIONS = ("endpoint", "page_size", "max_results", "stable_only", "elements") + CLIENT_OPTIONS
_ELEMENT = re.compile(r"[A-Z][a-z]{0,2}")


def _elements(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    symbols = sorted({str(item).strip() for item in items if str(item).strip()})
    bad = [s for s in symbols if not _ELEMENT.fullmatch(s)]
    if bad:
        raise ValueError(f"not element symbols: {bad}")
    return symbols


def _normalise(row: dict) -> dict:
    mid = row.get("material_id")
    mid = None if mid is None or isinstance(mid, bool) or not str(mid).strip() else str(mid).strip()
    return {
        "id": mid,
        "url": None if mid is None else MATERIAL_URL.format(id=quote(mid, safe="")),
        "formula": row.get("formula_pretty"),
        "energy": row.get("formation_energy_per_atom"),
        "above_hull": row.get("energy_above_hull"),
    }


def _has_more(body: dict, n_rows: int, limit: int, offset: int) -> bool:
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    total = meta.get("total_doc")
    if isinstance(total, int) and not isinstance(total, bool):
        return offset < total
    return n_rows >= limit


def fetch_mp_formation(options: dict, cache_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, rejects) of MP formation energies matching ``options`` (module docstring)."""
    options = check_options(options, OPTIONS, "Materials Project")
    key = api_key()
    endpoint = options.get("endpoint") or DEFAULT_ENDPOINT
    url = endpoint.rstrip("/") + "/materials/summary/"
    page_size = int(options.get("page_size") or DEFAULT_PAGE_SIZE)
    max_results = None if options.get("max_results") is None else int(options["max_results"])
    params = {"_fields": ",".join(FIELDS), "deprecated": "false"}
    if options.get("stable_only"):
        params["is_stable"] = "true"
    if options.get("elements"):
        params["elements"] = ",".join(_elements(options["elements"]))
    with client_from_options(cache_dir, options, delay_s=DEFAULT_DELAY_S,
                             secret_headers={KEY_HEADER: key}) as client:
        rows = fetch_offset_pages(client, url, params, limit_key="_limit", offset_key="_skip",
                                  page_size=page_size, max_results=max_results, has_more=_has_more)
    records, rejects = build_records(rows, _normalise, SOURCE)
    records.attrs["provenance"] = client.provenance(
        SOURCE, endpoint, {**params, "page_size": page_size, "max_results": max_results})
    return records, rejects
