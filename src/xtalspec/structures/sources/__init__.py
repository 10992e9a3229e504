"""Structure sources. Each yields raw CIF bytes plus provenance; see :mod:`.base`."""

from __future__ import annotations

from .base import Provenance, RawEntry, Source

SOURCE_NAMES = ("amcsd", "coremof", "cif_dir", "cod", "mp")


def make_source(name: str, options: dict | None = None) -> Source:
    """Build the source ``name``; ``options`` holds its config section (path, dataset, cache)."""
    options = options or {}
    if name == "amcsd":
        from .amcsd import AMCSDSource

        return AMCSDSource()
    if name == "coremof":
        from .coremof import CoREMOFSource

        return CoREMOFSource(options.get("dataset", "2019-ASR"))
    if name == "cif_dir":
        from .cif_dir import CIFDirSource

        if not options.get("path"):
            raise ValueError("the cif_dir source needs a folder: --path DIR (config: structures.sources.cif_dir.path)")
        return CIFDirSource(options["path"], options.get("licence", "user-supplied"))
    if name == "cod":
        from .cod import CODSource

        return CODSource(_cache(options, name))
    if name == "mp":
        from .mp import mp_source

        return mp_source(_cache(options, name))
    raise ValueError(f"unknown source {name!r}; choose from {', '.join(SOURCE_NAMES)}")


def _cache(options: dict, name: str) -> str:
    cache = options.get("cache") or options.get("path")
    if not cache:
        raise ValueError(f"the {name} source reads its download cache: give --path CACHE_DIR (after `xtalspec fetch`)")
    return cache


__all__ = ["Provenance", "RawEntry", "Source", "SOURCE_NAMES", "make_source"]
