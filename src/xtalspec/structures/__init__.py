"""Crystal structures: sources, cleaning, spglib relabelling, Parquet shards."""

from .records import StructureRecord, load_structures, structure_from_json, structure_to_json

__all__ = ["StructureRecord", "load_structures", "structure_from_json", "structure_to_json"]
