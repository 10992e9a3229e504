"""Composition-level data sources (formation enthalpies of crystalline compounds).

Offline: NIST-JANAF (:mod:`.janaf`). Online, cached: OQMD (:mod:`.oqmd`) and the Materials
Project (:mod:`.mp`), both over :mod:`.rest`. :func:`fetch_source` picks one by name.
"""

from xtalspec.compositions.janaf import (
    JANAF_REJECT_REASONS,
    janaf_formation_enthalpies,
    lowest_per_composition,
    remove_outliers,
)
from xtalspec.compositions.mp import fetch_mp_formation
from xtalspec.compositions.oqmd import fetch_oqmd
from xtalspec.compositions.rest import (
    RECORD_COLUMNS,
    REST_COLUMNS,
    REST_REJECT_REASONS,
    APIKeyRefused,
    RestClient,
    RestError,
    RestHTTPError,
)
from xtalspec.compositions.sources import SOURCES, fetch_janaf, fetch_source

__all__ = [
    "JANAF_REJECT_REASONS",
    "RECORD_COLUMNS",
    "REST_COLUMNS",
    "REST_REJECT_REASONS",
    "SOURCES",
    "APIKeyRefused",
    "RestClient",
    "RestError",
    "RestHTTPError",
    "fetch_janaf",
    "fetch_mp_formation",
    "fetch_oqmd",
    "fetch_source",
    "janaf_formation_enthalpies",
    "lowest_per_composition",
    "remove_outliers",
]
