"""FEFF preset check: ``fast`` against ``reference`` on real AMCSD sites (time and spectrum r);
bench section ``feff`` (one site, :data:`FEFF_SITE`).

For each site both presets run (reference first, then fast, back to back so the machine's load
is alike); a site already computed in ``workdir/<preset>/<name>`` for the same ``feff.inp`` is
reused with its recorded FEFF seconds (so the slow reference runs are done once). The spectra
are compared by the Pearson r of mu over the common energy range after the best rigid energy
shift of the fast spectrum (|shift| <= 5 eV, 0.05 eV steps).

    python -m xtalspec.bench.xanes [--workdir results/feff_presets] [--out results/benchmarks/xanes_presets]
                                   [--only NAME ...] [--presets reference,fast]

Writes ``<out>.json`` and ``<out>.md`` (a table of time and r per site, the medians and the
ratio of the medians).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..provenance import code_version
from ..spectra.feff import PRESETS, compute_site

#: (name, AMCSD id, absorber element, expected label): 6 sites, 4 elements, T4 and O6
SITES = (
    ("rutile_Ti_O6", "0009161", "Ti", "O6"),
    ("K2CrO4_Cr_T4", "0009457", "Cr", "T4"),
    ("Cr2O3_Cr_O6", "0010596", "Cr", "O6"),
    ("magnetite_Fe_T4", "0000945", "Fe", "T4"),
    ("magnetite_Fe_O6", "0000945", "Fe", "O6"),
    ("Co3O4_Co_T4", "0007469", "Co", "T4"),
    ("Co3O4_Co_O6", "0007469", "Co", "O6"),
)
FEFF_SITE = "rutile_Ti_O6"  # the bench section's site

log = logging.getLogger("xtalspec.bench")


def load_amcsd(ids) -> dict:
    """AMCSD id -> cleaned pymatgen Structure (the CIF's cell), from larixite's shipped copy."""
    from ..structures.cleaning import CleaningSettings, ParsedCIF, parse_and_check
    from ..structures.sources.amcsd import AMCSDSource

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in AMCSDSource().iter_entries(sorted(set(ids))):
            parsed = parse_and_check(entry.data, CleaningSettings())
            if not isinstance(parsed, ParsedCIF):
                raise RuntimeError(f"AMCSD {entry.id} did not parse: {parsed}")
            out[entry.id] = parsed.structure
    return out


def find_site(structure, element: str, label: str) -> int:
    """Index of the first symmetry-inequivalent ``element`` site whose ChemEnv label is ``label``."""
    from ..spectra.xanes_labels import label_sites

    for rec in label_sites(structure, elements=[element]):
        if rec["label"] == label:
            return int(rec["index"])
    raise LookupError(f"no {element} site labelled {label}")


def best_shift_r(e_ref, mu_ref, e_other, mu_other, max_shift=5.0, step=0.05) -> tuple[float, float]:
    """(shift in eV, Pearson r): ``mu_other(E - shift)`` against ``mu_ref`` on their common range."""
    best = (0.0, -2.0)
    for shift in np.arange(-max_shift, max_shift + step / 2, step):
        e = e_other + shift
        lo, hi = max(e_ref[0], e[0]), min(e_ref[-1], e[-1])
        keep = (e_ref >= lo) & (e_ref <= hi)
        if keep.sum() < 20:
            continue
        r = float(np.corrcoef(mu_ref[keep], np.interp(e_ref[keep], e, mu_other))[0, 1])
        if r > best[1]:
            best = (round(float(shift), 3), r)
    return best


def run(workdir: Path, names=None, presets=("reference", "fast"), log=print) -> list[dict]:
    sites = [s for s in SITES if not names or s[0] in names]
    structures = load_amcsd(s[1] for s in sites)
    rows = []
    for name, amcsd_id, element, label in sites:
        structure = structures[amcsd_id]
        index = find_site(structure, element, label)
        row = {"site": name, "amcsd_id": amcsd_id, "element": element, "label": label,
               "index": index}
        results = {}
        for preset in presets:
            start = time.time()
            res = compute_site(structure, index, preset, workdir / preset / name)
            results[preset] = res
            row[f"{preset}_status"] = res.status
            row[f"{preset}_s"] = round(res.seconds, 1)
            row[f"{preset}_cached"] = res.cached
            log(f"{name} {preset}: {res.status} {res.seconds:.1f} s FEFF "
                f"({time.time() - start:.1f} s wall{', cached' if res.cached else ''}) {res.reason}")
        if all(r.ok for r in results.values()) and {"reference", "fast"} <= set(results):
            ref, fast = results["reference"], results["fast"]
            shift, r = best_shift_r(ref.energy, ref.mu, fast.energy, fast.mu)
            row.update(shift_eV=shift, r=round(r, 4),
                       speedup=round(ref.seconds / max(fast.seconds, 1e-9), 1))
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    done = [r for r in rows if "r" in r]
    if not done:
        return {"n_sites": 0}
    return {
        "n_sites": len(done),
        "elements": sorted({r["element"] for r in done}),
        "labels": sorted({r["label"] for r in done}),
        "median_r": round(statistics.median(r["r"] for r in done), 4),
        "min_r": round(min(r["r"] for r in done), 4),
        "median_speedup": round(statistics.median(r["speedup"] for r in done), 1),
        "ratio_of_median_times": round(statistics.median(r["reference_s"] for r in done)
                                       / statistics.median(r["fast_s"] for r in done), 1),
    }


def markdown(rows: list[dict], summ: dict) -> str:
    lines = ["# FEFF presets: fast vs reference", "",
             "| site | AMCSD | element | label | reference s | fast s | speed-up | best shift eV | r |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['site']} | {r['amcsd_id']} | {r['element']} | {r['label']} | "
                     f"{r.get('reference_s', '')} | {r.get('fast_s', '')} | {r.get('speedup', '')} | "
                     f"{r.get('shift_eV', '')} | {r.get('r', '')} |")
    lines += ["", "Summary: " + json.dumps(summ), "",
              "FEFF seconds are the wall time of the FEFF10 run (one core each), recorded when the "
              "site was computed; r is the Pearson correlation of mu(E) over the common energy range "
              "after the best rigid shift of the fast spectrum."]
    return "\n".join(lines) + "\n"


def section_feff(sizes: dict, repeats: int, threads: int, site: str = FEFF_SITE) -> dict:
    names = [s[0] for s in SITES]
    if site not in names:
        raise ValueError(f"unknown FEFF benchmark site {site!r}; choose from {names}")
    with tempfile.TemporaryDirectory(prefix="xtalspec-bench-feff-") as work:  # both presets run now
        rows = run(Path(work), [site], ("reference", "fast"), log=lambda m: log.info("feff: %s", m))
    row = rows[0]
    params = {"site": site, "presets": {p: PRESETS[p] for p in ("reference", "fast")},
              "runs": "reference then fast, once each, scratch folder (no cached results)",
              "similarity": "Pearson r of mu(E) after the best rigid shift of the fast spectrum (±5 eV)"}
    if "speedup" not in row:
        raise RuntimeError(f"FEFF did not give both spectra: {row}")
    return {"parameters": params, "results": row,
            "ratios": {"reference_over_fast": row["reference_s"] / max(row["fast_s"], 1e-9)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", default="results/feff_presets")
    ap.add_argument("--out", default="results/benchmarks/xanes_presets")
    ap.add_argument("--only", nargs="*", help="site names (default: all)")
    ap.add_argument("--presets", default="reference,fast")
    args = ap.parse_args(argv)
    presets = tuple(p for p in args.presets.split(",") if p)
    unknown = set(presets) - set(PRESETS)
    if unknown:
        ap.error(f"unknown preset(s) {sorted(unknown)}; known: {sorted(PRESETS)}")
    rows = run(Path(args.workdir).resolve(), args.only, presets,
               log=lambda m: print(m, file=sys.stderr, flush=True))
    summ = summary(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"rows": rows, "summary": summ, "code_version": code_version(),
              "presets": {p: PRESETS[p] for p in presets}}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, summ))
    print(markdown(rows, summ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
