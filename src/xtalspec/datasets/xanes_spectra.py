"""XANES spectra: FEFF shards of selected sites, then the per-element data set (Table I).

**FEFF shard** (:func:`write_feff_shard`): selected site k of an element's sites table goes
to shard k mod N. Each site runs in its own work directory
``<workroot>/<element>/<safe site key>/`` through :func:`xtalspec.spectra.feff.compute_site`,
which skips sites already finished for the same ``feff.inp`` (so a killed shard resumes where
it stopped). ``feff.inp``, ``xmu.dat``, the logs and ``feff_result.json`` stay as provenance;
FEFF's large binary intermediates (``*.bin``, ``gg.dat``, ~5 MB a site) are deleted after a
successful run. Failed / timed-out / unphysical runs are rejects with FEFF's reason.

**Data set** (:func:`build_xanes_dataset`), per element, with the preprocessing of
:mod:`xtalspec.spectra.xanes_matching` (``preprocessing``; the same code turns a measured file
into a model input in ``predict-xanes``): every FEFF spectrum broadened, its E0 found by the
measured-spectrum rule, normalised to an edge step of 1 and put on the relative grid E − E0
(−15…+34.5 eV, 100 points); spectra whose edge cannot be found are rejects "no_edge", those
covering less than ``min_coverage`` (0.8) of the grid "grid_coverage" (FEFF starts its energy
grid near the Fermi level, 6–25 eV below the half-step E0; below its first point μ is carried
at its first, pre-edge value); near-duplicates removed (mean
|Δμ| < ``dedup_tol`` = 0.015 against an earlier spectrum in site-key order, judged on the
unbroadened spectra — broadening makes distinct sites alike; recorded as rejects
"duplicate_spectrum" naming the kept one); the pre-edge region = grid points below E0 +
``pre_edge_offset``. ``preprocessing`` with ``energy_axis: absolute`` is the old convention
(kept for the sim-to-real comparison): E0 by :func:`xtalspec.spectra.xanes_grid.edge_energy`,
the element's absolute 100-point grid, each spectrum scaled to its maximum, the pre-edge cutoff
at the median E0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..spectra import xanes_grid as grid_mod
from ..spectra import xanes_matching as matching
from ..spectra.xanes_labels import LABELS as CLASSES
from ..utils.paths import safe_filename
from ..utils.tables import read_frame, write_frame

log = logging.getLogger(__name__)

REJECT_COLUMNS = ["id", "source", "url", "site_key", "element", "reason", "detail"]
_BULKY = ("*.bin", "gg.dat")


def prune_workdir(workdir: Path) -> None:
    """Delete FEFF's large binary intermediates; the text inputs, logs and xmu.dat stay."""
    for pattern in _BULKY:
        for path in Path(workdir).glob(pattern):
            path.unlink(missing_ok=True)


def shard_sites(sites: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    chosen = sites[sites["selected"]].sort_values("site_key").reset_index(drop=True)
    return chosen[chosen.index % n_shards == shard]


def write_feff_shard(sites_path, shard: int, n_shards: int, preset: str, workroot, out, rejects_out,
                     timeout_s: float = 600.0, keep_bulky: bool = False) -> dict:
    """FEFF spectra of one shard of an element's selected sites (see the module docstring)."""
    from ..spectra.feff import PRESETS, compute_site
    from ..structures.records import structure_from_json
    from .xanes_sites import primitive_texts

    sites, _ = read_frame(sites_path)
    todo = shard_sites(sites, shard, n_shards)
    rows, rejects = [], []
    texts = primitive_texts(todo)
    start = time.monotonic()
    for site in todo.itertuples():
        workdir = Path(workroot) / site.element / safe_filename(site.site_key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = structure_from_json(texts[(site.source, site.id)])
            result = compute_site(structure, int(site.site_index), preset, workdir, timeout_s)
        if result.ok and not keep_bulky:
            prune_workdir(workdir)
        base = {"id": site.id, "source": site.source, "url": site.url, "site_key": site.site_key,
                "element": site.element}
        if not result.ok:
            rejects.append(base | {"reason": f"feff_{result.status}", "detail": result.reason[:300]})
            log.warning("%s: FEFF %s: %s", site.site_key, result.status, result.reason)
            continue
        rows.append(base | {"site_index": int(site.site_index), "label": site.label,
                            "energy": result.energy.astype(np.float64), "mu": result.mu.astype(np.float64),
                            "feff_seconds": float(result.seconds), "cached": bool(result.cached),
                            "feff_input_sha256": result.input_sha256, "workdir": str(workdir)})
        log.info("%s %s: ok in %.1f s%s", site.site_key, site.label, result.seconds,
                 " (cached)" if result.cached else "")
    meta = {"sites": str(sites_path), "shard": shard, "n_shards": n_shards, "preset": preset,
            "preset_settings": PRESETS[preset], "timeout_s": timeout_s,
            "seconds": round(time.monotonic() - start, 1)}
    columns = ["id", "source", "url", "site_key", "element", "site_index", "label", "energy", "mu",
               "feff_seconds", "cached", "feff_input_sha256", "workdir"]
    write_frame(pd.DataFrame(rows, columns=columns), meta, out)
    write_frame(pd.DataFrame(rejects, columns=REJECT_COLUMNS), meta, rejects_out)
    return {"spectra": len(rows), "rejects": len(rejects), "seconds": meta["seconds"]}


def deduplicate(spectra: np.ndarray, tol: float) -> np.ndarray:
    """Index of the kept row each row duplicates (itself when kept): a row is dropped when its
    mean |Δμ| to an earlier kept row is below ``tol``."""
    owner = np.arange(len(spectra))
    kept: list[int] = []
    for i in range(len(spectra)):
        if kept:
            diff = np.abs(spectra[kept] - spectra[i]).mean(axis=1)
            j = int(np.argmin(diff))
            if diff[j] < tol:
                owner[i] = kept[j]
                continue
        kept.append(i)
    return owner


def _reject(row, element: str, reason: str, detail: str) -> dict:
    return {"id": row["id"], "source": row["source"], "url": row["url"], "site_key": row["site_key"],
            "element": element, "reason": reason, "detail": detail}


def _element_inputs(frame: pd.DataFrame, element: str, n_points: int, step: float, pp):
    """(spectra on the grid, spectra for duplicate detection, E0, coverage, grid, pre-edge reference
    energy, rejects) of one element. Duplicates are judged on the spectra as FEFF computed them
    (the same preprocessing without the broadening): broadening makes distinct sites alike."""
    if pp.energy_axis == "relative":
        spectra, e0, coverage, errors = matching.prepare_many(frame["energy"], frame["mu"], element, pp,
                                                              simulated=True)
        sharp = spectra
        if pp.lorentz_fwhm(element) > 0 or pp.gauss_fwhm_ev > 0:
            unbroadened = dataclasses.replace(pp, lorentz_factor=0.0, lorentz_extra_ev=0.0, gauss_fwhm_ev=0.0)
            sharp, _, _, more = matching.prepare_many(frame["energy"], frame["mu"], element, unbroadened,
                                                      simulated=True)
            errors = {**more, **errors}
            sharp = np.where(np.isnan(sharp), spectra, sharp)
        rejects = [_reject(frame.iloc[i], element, "no_edge", message[:300]) for i, message in errors.items()]
        e0 = e0.copy()
        e0[list(errors)] = np.nan
        return spectra, sharp, e0, coverage, pp.offsets, 0.0, rejects
    energies, mus = list(frame["energy"]), list(frame["mu"])
    if pp.lorentz_fwhm(element) > 0 or pp.gauss_fwhm_ev > 0:
        pairs = [matching.broaden(e, m, pp.lorentz_fwhm(element), pp.gauss_fwhm_ev) for e, m in zip(energies, mus)]
        frame = frame.assign(energy=[e for e, _ in pairs], mu=[m for _, m in pairs])
    e0 = np.array([grid_mod.edge_energy(e, m) for e, m in zip(frame["energy"], frame["mu"])])
    grid = grid_mod.element_grid([e[0] for e in frame["energy"]], [e[-1] for e in frame["energy"]],
                                 n_points, step)
    on = [grid_mod.on_grid(e, m, grid) for e, m in zip(frame["energy"], frame["mu"])]
    coverage = np.array([c for _, c in on])
    spectra = grid_mod.scale_to_max(np.array([s for s, _ in on]))
    return spectra, spectra, e0, coverage, grid, None, []


def _element_part(frame: pd.DataFrame, element: str, n_points: int, step: float, min_coverage: float,
                  dedup_tol: float, pre_edge_offset: float, pp):
    frame = frame.sort_values("site_key").reset_index(drop=True)
    spectra, sharp, e0, coverage, grid, pre_reference, rejects = _element_inputs(frame, element, n_points, step, pp)
    ok = ~np.isnan(e0)
    frame, spectra, sharp, e0, coverage = (frame[ok].reset_index(drop=True), spectra[ok], sharp[ok], e0[ok],
                                           coverage[ok])
    ok = coverage >= min_coverage
    for row, cov in zip(frame[~ok].itertuples(), coverage[~ok]):
        rejects.append({"id": row.id, "source": row.source, "url": row.url, "site_key": row.site_key,
                        "element": element, "reason": "grid_coverage",
                        "detail": f"covers {cov:.0%} of the {element} grid"})
    frame, spectra, sharp, e0, coverage = (frame[ok].reset_index(drop=True), spectra[ok], sharp[ok], e0[ok],
                                           coverage[ok])
    before = {c: int((frame["label"] == c).sum()) for c in CLASSES}
    owner = deduplicate(sharp, dedup_tol)
    dup = owner != np.arange(len(owner))
    for i in np.flatnonzero(dup):
        row = frame.iloc[i]
        rejects.append({"id": row.id, "source": row.source, "url": row.url, "site_key": row.site_key,
                        "element": element, "reason": "duplicate_spectrum",
                        "detail": f"mean |Δμ| < {dedup_tol} to {frame.iloc[owner[i]].site_key}"})
    keep = ~dup
    e0_median = float(np.median(e0[keep])) if keep.any() else float("nan")
    if pre_reference is None:  # absolute grid: the pre-edge region ends at the median E0
        pre_reference = e0_median
    part = pd.DataFrame({
        "site_key": frame["site_key"][keep].values, "id": frame["id"][keep].values,
        "source": frame["source"][keep].values, "element": element,
        "site_index": frame["site_index"][keep].values, "label": frame["label"][keep].values,
        "e0": e0[keep], "coverage": coverage[keep], "mu": list(spectra[keep].astype(np.float32)),
    })
    info = {"grid": [round(float(g), 4) for g in grid], "step": float(grid[1] - grid[0]),
            "e0_median": e0_median, "pre_edge_offset": pre_edge_offset, "grid_relative": pp.energy_axis == "relative",
            "pre_edge_index": grid_mod.pre_edge_index(grid, pre_reference, pre_edge_offset),
            "n_before_dedup": before, "n_duplicates": int(dup.sum()),
            "counts": {c: int((part["label"] == c).sum()) for c in CLASSES}}
    return part, rejects, info


def build_xanes_dataset(spectra_paths, feff_rejects_paths=(), n_points: int = grid_mod.N_POINTS,
                        step: float = grid_mod.STEP_EV, min_coverage: float = 0.8,
                        dedup_tol: float = 0.015, pre_edge_offset: float = 0.0, preprocessing=None):
    """(data set, rejects, meta) from FEFF shards of any elements (rules in the module docstring).
    ``preprocessing``: a :class:`xtalspec.spectra.xanes_matching.Preprocessing` or its dict
    (None: its defaults)."""
    frames = [read_frame(p)[0] for p in spectra_paths]
    spectra = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    feff_rejects = [read_frame(p)[0] for p in feff_rejects_paths]
    rejects = pd.concat(feff_rejects, ignore_index=True) if feff_rejects else pd.DataFrame(
        columns=REJECT_COLUMNS)
    return dataset_from_frames(spectra, rejects, n_points=n_points, step=step, min_coverage=min_coverage,
                               dedup_tol=dedup_tol, pre_edge_offset=pre_edge_offset, preprocessing=preprocessing,
                               sources=[str(p) for p in spectra_paths])


def dataset_from_frames(spectra: pd.DataFrame, rejects: pd.DataFrame | None = None, n_points: int = grid_mod.N_POINTS,
                        step: float = grid_mod.STEP_EV, min_coverage: float = 0.8, dedup_tol: float = 0.015,
                        pre_edge_offset: float = 0.0, preprocessing=None, sources=()):
    """:func:`build_xanes_dataset` on FEFF-shard rows already in memory."""
    pp = preprocessing if isinstance(preprocessing, matching.Preprocessing) else \
        matching.Preprocessing.from_dict(preprocessing)
    if pp.energy_axis == "relative":
        n_points, step = pp.n_points, pp.step_ev
    if rejects is None:
        rejects = pd.DataFrame(columns=REJECT_COLUMNS)
    parts, more, elements = [], [], {}
    for element in sorted(spectra["element"].unique()) if len(spectra) else []:
        sub = spectra[spectra["element"] == element]
        part, rej, info = _element_part(sub, element, n_points, step, min_coverage, dedup_tol,
                                        pre_edge_offset, pp)
        info["n_feff_rejects"] = int((rejects["element"] == element).sum()) if len(rejects) else 0
        parts.append(part)
        more += rej
        elements[element] = info
    dataset = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["site_key", "id", "source", "element", "site_index", "label", "e0", "coverage", "mu"])
    rejects = pd.concat([rejects, pd.DataFrame(more, columns=REJECT_COLUMNS)], ignore_index=True)
    for element, info in elements.items():
        info["n_rejected"] = int((rejects["element"] == element).sum())
    meta = {"classes": list(CLASSES), "elements": elements, "n_points": n_points, "step": step,
            "min_coverage": min_coverage, "dedup_tol": dedup_tol, "preprocessing": pp.as_dict(),
            "spectra": list(sources)}
    return dataset, rejects, meta
