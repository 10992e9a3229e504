"""Composition-level data sources (formation enthalpies of crystalline compounds)."""

from xtalspec.compositions.janaf import (
    JANAF_REJECT_REASONS,
    janaf_formation_enthalpies,
    lowest_per_composition,
    remove_outliers,
)

__all__ = [
    "JANAF_REJECT_REASONS",
    "janaf_formation_enthalpies",
    "lowest_per_composition",
    "remove_outliers",
]
