"""CoRE MOF structures shipped in the ``core-mof`` package (datasets 2014, 2019-ASR, 2019-FSR)."""

from __future__ import annotations

import tarfile
from importlib import metadata, resources
from typing import Iterable, Iterator

from .base import Provenance, RawEntry

LICENCE = "CoRE MOF data CC BY 4.0; core-mof package MIT"


class CoREMOFSource:
    name = "coremof"

    def __init__(self, dataset: str = "2019-ASR"):
        import CoRE_MOF

        if dataset not in CoRE_MOF.list_datasets():
            raise ValueError(f"unknown CoRE MOF dataset {dataset!r}; choose from {CoRE_MOF.list_datasets()}")
        self.dataset = dataset
        self.archive = resources.files(CoRE_MOF.data) / f"{dataset}.tar.xz"
        self.origin = f"core-mof {metadata.version('core-mof')} ({dataset})"

    def list_ids(self) -> list[str]:
        import CoRE_MOF

        return sorted(CoRE_MOF.list_structures(self.dataset))

    def iter_entries(self, ids: Iterable[str]) -> Iterator[RawEntry]:
        wanted = list(ids)
        found: dict[str, bytes] = {}
        targets = set(wanted)
        with tarfile.open(self.archive, "r:xz") as tar:  # one sequential pass over the archive
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not (member.isfile() and name.endswith(".cif")):
                    continue
                ident = name[: -len(".cif")]
                if ident in targets and ident not in found:
                    found[ident] = tar.extractfile(member).read()
                    if len(found) == len(targets):
                        break
        for ident in wanted:
            prov = Provenance(self.name, self.origin, f"CoRE_MOF/data/{self.dataset}.tar.xz#{ident}.cif", LICENCE)
            data = found.get(ident)
            yield RawEntry(ident, data, prov, None if data is not None else "listed in the CSV but absent from the archive")
