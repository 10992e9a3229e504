"""Training data of the PDF deploy models (the models ``predict-pdf`` uses by default): every
structure of every space group with enough members, one model per radiation (X-ray, neutron),
rendered the way measured PDFs look rather than at the paper's fixed Table-1 parameters.

Each structure gets ``copies`` PDFs per radiation. Copy k draws (reproducibly from the seed, the
structure's id and k):

* the randomised Table-1 parameters of the paper's sweeps, as the randomised paper model draws
  them (:func:`xtalspec.datasets.pdfs.sample_params`: rmax 10–30 Å, Qdamp 0–0.15 Å⁻¹, Uiso
  0.005–0.010 Å², the last rounded to ``UISO_STEP`` so the peak-broadening matrices are shared);
* Qmax from ``qmax`` (default 14–30 Å⁻¹, the range of measured X-ray and neutron PDFs): the
  Fourier cut of G(r) at Qmax, whose termination ripples have the period 2π/Qmax;
* the data's end: G(r) is cut at the drawn rmax and zero-padded to 30 Å by
  :func:`xtalspec.spectra.pdf.model_input` (``data_rmax``), as ``predict-pdf`` pads a short file;
* a scale factor s (log-uniform in ``scale``) and Gaussian noise: G_meas = s G + ε, ε white noise
  band-limited at the same Qmax (noise in G(r) comes from S(Q) up to Qmax) with a standard
  deviation drawn uniformly in [0, ``noise``] × max |G| over the data range. The model input is
  min–max normalised, so a pure scale factor is invisible to the model: its only effect is the
  spread of the signal-to-noise ratio (noise level / s) it gives.

The X-ray and neutron PDFs of a copy share the drawn parameters and one neighbour search
(:func:`xtalspec.spectra.pdf.pair_distances` with two weight sets), and all copies share it:
pairs are found once per structure out to the longest range any copy needs (30 Å + six
ripples of the smallest Qmax), deposited once per radiation, broadened per Uiso and cut per copy.
Terminating on that longer range than :func:`~xtalspec.spectra.pdf.pdf` uses (rmax + six
ripples of the copy's own Qmax) changes G(r) inside the data range by far less than the noise
(tests/test_pdf_deploy.py compares both).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from ..structures.records import REJECT_SCHEMA
from ..utils.atomic import atomic_path

log = logging.getLogger("xtalspec.pdf_deploy")

RADIATIONS = ("x-ray", "neutron")
RADIATION_DIRS = {"x-ray": "xray", "neutron": "neutron"}  # folder names of results/pdf/deploy/...
UISO_STEP = 0.0005  # A^2: drawn Uiso rounded to this (11 values over 0.005-0.010: broadening matrices reused)

DEPLOY_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("spacegroup", pa.int16()),
                           ("structure_shard", pa.string()), ("radiation", pa.string()), ("copy", pa.int16()),
                           ("params", pa.string()), ("x", pa.list_(pa.float32()))])


@dataclasses.dataclass(frozen=True)
class Augment:
    """What a deploy copy draws beyond the Table-1 sweeps (config ``pdf.deploy.augment``)."""

    qmax: tuple[float, float] = (14.0, 30.0)  # 1/A, uniform
    noise: float = 0.05  # noise sigma up to this share of max |G|, uniform from 0
    scale: tuple[float, float] = (0.5, 2.0)  # log-uniform

    @classmethod
    def from_dict(cls, options: dict | None) -> "Augment":
        options = dict(options or {})
        return cls(qmax=tuple(float(v) for v in options.get("qmax", cls.qmax)),
                   noise=float(options.get("noise", cls.noise)),
                   scale=tuple(float(v) for v in options.get("scale", cls.scale)))

    def check(self) -> "Augment":
        lo, hi = self.qmax
        if not 0 < lo <= hi:
            raise ValueError(f"augment qmax range {self.qmax} is not 0 < low <= high")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"augment scale range {self.scale} is not 0 < low <= high")
        if self.noise < 0:
            raise ValueError("augment noise must be >= 0")
        return self


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1(":".join(map(str, key)).encode()).hexdigest()[:15], 16))


def draw_copy(ident: str, seed: int, copy: int, augment: Augment = Augment()) -> dict:
    """The parameters of copy ``copy`` of structure ``ident``: rmin/rmax/qmin/qdamp/qbroad/uiso and
    qmax for the PDF, and noise (share of max |G|), scale and noise_seed for the measurement."""
    from .pdfs import sample_params

    params = sample_params(f"{ident}/copy{copy}", seed)  # the randomised paper model's draws
    params["uiso"] = round(round(params["uiso"] / UISO_STEP) * UISO_STEP, 6)
    rng = _rng("deploy", seed, ident, copy)
    params["qmax"] = float(rng.uniform(*augment.qmax))
    params["noise"] = float(rng.uniform(0.0, augment.noise))
    params["scale"] = float(math.exp(rng.uniform(math.log(augment.scale[0]), math.log(augment.scale[1]))))
    params["noise_seed"] = int(rng.integers(2**31))
    return params


def measured_like(g: np.ndarray, rstep: float, qmax: float, noise: float, scale: float, noise_seed: int,
                  data: slice = slice(None)) -> np.ndarray:
    """s G + ε: ε is white noise band-limited at qmax (the same Fourier cut as the termination),
    scaled to a standard deviation of ``noise`` × max |G[data]|."""
    from ..spectra.pdf import qmax_termination

    out = scale * g
    if noise > 0:
        white = np.random.default_rng(noise_seed).standard_normal(len(g))
        band = qmax_termination(white, rstep, qmax)
        band /= max(float(band.std()), 1e-12)
        out = out + band * (noise * float(np.abs(g[data]).max()))
    return out


@dataclasses.dataclass
class RenderGrid:
    """The calculation grid every copy shares: r = r0 + k rstep (k < n_out), rmin = r[k0], pairs to rcut."""

    k0: int
    r0: float
    n_out: int
    n_src: int
    rcut: float

    @classmethod
    def for_augment(cls, augment: Augment) -> "RenderGrid":
        from ..spectra.pdf import QBROAD, RMAX, RMIN, RSTEP, N_RIPPLES, _grid
        from .pdf_paper import SWEEPS

        rmax = max(RMAX, max(SWEEPS["rmax"]["values"]))
        uiso = max(SWEEPS["uiso"]["values"])
        rext = N_RIPPLES * 2.0 * math.pi / augment.qmax[0]
        return cls(*_grid(RMIN, rmax, RSTEP, rext, uiso, QBROAD))


def render_structure(structure, copies: list[dict], radiations=RADIATIONS, grid: RenderGrid | None = None
                     ) -> dict[str, list[np.ndarray] | Exception]:
    """209-point model inputs of every copy for every radiation (a radiation whose weights fail,
    e.g. a null average neutron scattering length, maps to its PDFError)."""
    from ..spectra.pdf import PDFError, model_input

    results = {}
    for name, out in render_raw(structure, copies, radiations, grid).items():
        try:  # one radiation's failure (e.g. a non-finite G) leaves the other's PDFs
            results[name] = out if isinstance(out, Exception) else \
                [model_input(r, g, data_rmax=params["rmax"]) for (r, g), params in zip(out, copies)]
        except PDFError as exc:
            results[name] = exc
    return results


def render_raw(structure, copies: list[dict], radiations=RADIATIONS, grid: RenderGrid | None = None
               ) -> dict[str, list[tuple[np.ndarray, np.ndarray]] | Exception]:
    """The measured-like G(r) of every copy for every radiation, (r, G) on rmin..rmax of the copy
    (step RSTEP), or the PDFError of a radiation whose weights fail."""
    from ..spectra.pdf import PDFError, QBROAD, RSTEP, _broadening_matrix, _pairs, _scatterers, deposit, qmax_termination

    grid = grid or RenderGrid.for_augment(Augment())
    results: dict = {}
    scatterers = {}
    for radiation in radiations:
        try:
            scatterers[radiation] = _scatterers(structure, radiation)
        except PDFError as exc:
            results[radiation] = exc
    if not scatterers:
        return results
    names = list(scatterers)
    n_atoms, rho0 = scatterers[names[0]][:2]
    weights = np.stack([scatterers[name][2] for name in names], axis=1)  # [sites, radiations]
    d, w = _pairs(structure, weights, grid.rcut, use_symmetry=True)
    r = grid.r0 + RSTEP * np.arange(grid.n_out)
    if not np.any(d <= max(c["rmax"] for c in copies)):
        return {name: results.get(name, PDFError("no atoms within rmax")) for name in radiations}
    deposits = [deposit(d, np.ascontiguousarray(w[:, i]), RSTEP, grid.r0, grid.n_src) for i in range(len(names))]
    baseline = 4.0 * math.pi * rho0 * r
    inverse_nr = np.divide(1.0, n_atoms * r, out=np.zeros_like(r), where=r > 0)
    for name in names:
        results[name] = []
    for params in copies:
        broaden = _broadening_matrix(grid.n_out, grid.n_src, RSTEP, grid.r0, float(params["uiso"]), float(QBROAD))
        damp = np.exp(-0.5 * (params["qdamp"] * r) ** 2)
        k1 = grid.k0 + int(round((params["rmax"] - r[grid.k0]) / RSTEP)) + 1
        for i, name in enumerate(names):
            g = (broaden @ deposits[i] * inverse_nr - baseline) * damp  # one vector at a time: DIA's fast path
            g = qmax_termination(g, RSTEP, params["qmax"])
            g = measured_like(g, RSTEP, params["qmax"], params["noise"], params["scale"], params["noise_seed"],
                              data=slice(grid.k0, k1))
            results[name].append((r[grid.k0:k1], g[grid.k0:k1]))
    return results


def write_deploy_shard(structure_shard: str | Path, outputs: dict[str, str | Path], rejects_path: str | Path,
                       copies: int, seed: int, augment: Augment = Augment()) -> dict:
    """Deploy model inputs of every structure of one shard (all groups: which groups are kept is
    the data set's choice), ``copies`` per structure, one Parquet file per radiation in
    ``outputs`` ({"x-ray": path, "neutron": path}); failures go to the rejects as
    "<radiation>: <reason>" (a structure rejected for one radiation may be fine for the other)."""
    from ..spectra.pdf import PDFError
    from ..structures import load_structures
    from ..structures.ingest import Progress

    augment = augment.check()
    radiations = [r for r in RADIATIONS if r in outputs]
    grid = RenderGrid.for_augment(augment)
    records = list(load_structures([structure_shard], columns=["id", "source", "url", "spacegroup", "primitive"]))
    rows = {radiation: [] for radiation in radiations}
    rejects = []
    progress = Progress(len(records), f"deploy PDFs {Path(structure_shard).name}")
    start = time.monotonic()
    for record in records:
        draws = [draw_copy(record.id, seed, k, augment) for k in range(copies)]
        try:
            results = render_structure(record.primitive, draws, radiations, grid)
        except (PDFError, ValueError, KeyError) as exc:
            results = {radiation: exc for radiation in radiations}
        for radiation in radiations:
            outcome = results[radiation]
            if isinstance(outcome, Exception) or not all(np.isfinite(x).all() for x in outcome):
                reason = getattr(outcome, "reason", "pdf_failed" if isinstance(outcome, Exception) else "non-finite PDF")
                rejects.append({"id": record.id, "source": record.source, "url": record.url,
                                "reason": f"{radiation}: {reason}", "detail": str(outcome)[:300]})
                continue
            for k, (params, x) in enumerate(zip(draws, outcome)):
                rows[radiation].append({"id": record.id, "source": record.source, "spacegroup": record.spacegroup,
                                        "structure_shard": str(structure_shard), "radiation": radiation, "copy": k,
                                        "params": json.dumps(params, sort_keys=True), "x": x.astype(np.float32)})
        progress.step()
    progress.close()
    seconds = time.monotonic() - start
    meta = {"code_version": code_version(), "structure_shard": str(structure_shard), "copies": copies, "seed": seed,
            "augment": dataclasses.asdict(augment), "seconds": seconds, "structures": len(records)}
    for radiation in radiations:
        table = pa.Table.from_pylist(rows[radiation], schema=DEPLOY_SCHEMA)
        with atomic_path(outputs[radiation]) as tmp:
            pq.write_table(table.replace_schema_metadata({"xtalspec": json.dumps(meta | {"radiation": radiation})}),
                           tmp, compression="zstd")
    table = pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
    with atomic_path(rejects_path) as tmp:
        pq.write_table(table.replace_schema_metadata({"xtalspec": json.dumps(meta)}), tmp, compression="zstd")
    log.info("%s: %s, %d rejects, %.1f ms per structure (all copies and radiations)", structure_shard,
             ", ".join(f"{len(rows[r])} {r} PDFs" for r in radiations), len(rejects),
             1e3 * seconds / max(len(records), 1))
    return {"pdfs": {r: len(rows[r]) for r in radiations}, "rejects": len(rejects), "seconds": seconds,
            "structures": len(records)}


def heldout_structures(table: pd.DataFrame, fraction: float, seed: int) -> set[str]:
    """A seeded ``fraction`` of each group's structures (at least one when a group has 3 or more),
    chosen by hashing (seed, id): the same structures for both radiations, whatever else the
    table holds. Keys are "id|source"."""
    keys = (table["id"] + "|" + table["source"]).to_numpy()
    groups = table["spacegroup"].to_numpy()
    chosen = set()
    for group in np.unique(groups):
        members = sorted(set(keys[groups == group]),
                         key=lambda k: hashlib.sha1(f"{seed}:heldout:{k}".encode()).hexdigest())
        n = int(round(fraction * len(members)))
        if n == 0 and len(members) >= 3 and fraction > 0:
            n = 1
        chosen.update(members[:n])
    return chosen


def build_deploy_dataset(paths: list[str | Path], radiation: str, min_per_group: int, holdout: float, seed: int
                         ) -> tuple[pd.DataFrame, dict]:
    """The PDFs of one radiation from all deploy shards, the groups with at least ``min_per_group``
    structures (counted as structures, not copies), ``class_index`` and ``split`` =
    "train" / "heldout" (all copies of a held-out structure are held out)."""
    arrows = [pq.read_table(p) for p in paths]
    metas = [json.loads(a.schema.metadata[b"xtalspec"]) for a in arrows if a.schema.metadata]
    frames = [a.to_pandas() for a in arrows]
    table = pd.concat(frames, ignore_index=True) if frames else DEPLOY_SCHEMA.empty_table().to_pandas()
    table = table[table["radiation"] == radiation]
    structures = table.drop_duplicates(["id", "source"])
    counts = structures["spacegroup"].value_counts()
    groups = sorted(int(g) for g in counts[counts >= min_per_group].index)
    table = table[table["spacegroup"].isin(groups)].sort_values(["spacegroup", "source", "id", "copy"])
    table = table.reset_index(drop=True)
    table["class_index"] = table["spacegroup"].map({g: i for i, g in enumerate(groups)}).astype(np.int16)
    held = heldout_structures(table, holdout, seed)
    table["split"] = np.where((table["id"] + "|" + table["source"]).isin(held), "heldout", "train")
    from .pdf_paper import PAPER_GROUPS

    n_structures = table.drop_duplicates(["id", "source"])
    description = {"radiation": radiation, "spacegroups": groups, "min_per_group": min_per_group,
                   "holdout": holdout, "seed": seed, "n_groups": len(groups),
                   "n_structures": int(len(n_structures)),
                   "n_heldout_structures": int(n_structures["id"].add("|" + n_structures["source"]).isin(held).sum()),
                   "n_train": int((table["split"] == "train").sum()),
                   "n_heldout": int((table["split"] == "heldout").sum()),
                   "copies": int(table["copy"].max()) + 1 if len(table) else 0,
                   "groups_outside_paper": sorted(set(groups) - set(PAPER_GROUPS)),
                   "paper_groups_missing": sorted(set(PAPER_GROUPS) - set(groups)),
                   "group_sizes": {str(g): int(counts[g]) for g in groups},
                   "augment": metas[0].get("augment") if metas else None,
                   "render_seconds": float(sum(m.get("seconds", 0.0) for m in metas)),
                   "rendered_structures": int(sum(m.get("structures", 0) for m in metas))}
    return table, description
