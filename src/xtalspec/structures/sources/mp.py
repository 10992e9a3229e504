"""Materials Project structures through the official ``mp-api`` client.

The API key is read from the ``MP_API_KEY`` environment variable. ``fetch_mp`` downloads the
selected structures into a local cache (CIFs written by pymatgen's CifWriter, with the MP
symmetry-refined cell); :func:`mp_source` then reads that cache offline like any other source.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ...utils.atomic import atomic_write_bytes
from ...utils.paths import path_inside
from .cache import CachedCIFSource, read_index, write_index

log = logging.getLogger("xtalspec.mp")

LICENCE = "Materials Project data CC BY 4.0"
DEFAULT_ENDPOINT = "https://api.materialsproject.org/"


class MissingAPIKey(RuntimeError):
    pass


def api_key() -> str:
    key = os.environ.get("MP_API_KEY", "").strip()
    if not key:
        raise MissingAPIKey(
            "The Materials Project source needs an API key: create one at "
            "https://next-gen.materialsproject.org/api and export MP_API_KEY=<key> "
            "(or disable the 'mp' source in the config)."
        )
    return key


def fetch_mp(options: dict, cache_dir: str | Path) -> dict:
    """Download structures matching ``options`` (elements, max_atoms, max_results,
    endpoint) into ``cache_dir``; ids already cached are not fetched again."""
    key = api_key()
    try:
        from mp_api.client import MPRester
    except ImportError as exc:  # optional extra
        raise RuntimeError("the 'mp' source needs mp-api: pip install 'xtalspec[mp]'") from exc
    from pymatgen.io.cif import CifWriter

    cache_dir = Path(cache_dir)
    (cache_dir / "cif").mkdir(parents=True, exist_ok=True)
    index = read_index(cache_dir)
    query = {"fields": ["material_id", "structure"]}
    if options.get("elements"):
        query["elements"] = list(options["elements"])
    if options.get("max_atoms"):
        query["num_sites"] = (1, int(options["max_atoms"]))
    endpoint = options.get("endpoint") or DEFAULT_ENDPOINT
    fetched = 0
    with MPRester(key, endpoint=endpoint, mute_progress_bars=True) as rester:
        docs = rester.materials.summary.search(**query)
    limit = options.get("max_results")
    for doc in sorted(docs, key=lambda d: str(d.material_id))[: limit or None]:
        ident = str(doc.material_id)
        if ident in index:
            continue
        data = str(CifWriter(doc.structure, symprec=0.01)).encode("utf-8")
        path = path_inside(cache_dir / "cif", ident, ".cif")
        atomic_write_bytes(path, data)
        url = f"https://next-gen.materialsproject.org/materials/{ident}"
        index[ident] = {"id": ident, "file": path.name, "url": url, "sha256": hashlib.sha256(data).hexdigest()}
        fetched += 1
    write_index(cache_dir, index)
    log.info("Materials Project: %d fetched, %d in cache", fetched, len(index))
    return {"fetched": fetched, "cached": len(index)}


def mp_source(cache_dir: str | Path, endpoint: str = DEFAULT_ENDPOINT) -> CachedCIFSource:
    return CachedCIFSource("mp", cache_dir, f"Materials Project ({endpoint})", LICENCE)
