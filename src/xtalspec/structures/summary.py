"""Summary of an ingestion: counts per source, rejects by reason, relabelling, space groups."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from ..utils.atomic import atomic_path, atomic_write_text
from .cleaning import REASONS
from .records import REJECT_SCHEMA

SUMMARY_COLUMNS = ["id", "source", "spacegroup", "spacegroup_cif", "relabelled", "n_atoms"]


def read_shards(paths: list[Path], columns=SUMMARY_COLUMNS) -> pd.DataFrame:
    frames = [pq.read_table(p, columns=columns).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def read_rejects(paths: list[Path]) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else REJECT_SCHEMA.empty_table().to_pandas()


def summarize(shard_paths: list[Path], reject_paths: list[Path]) -> tuple[dict, pd.DataFrame]:
    shards = read_shards(shard_paths)
    rejects = read_rejects(reject_paths).sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    sources = sorted(set(shards["source"]) | set(rejects["source"]))
    per_source = {}
    for src in sources:
        acc = shards[shards["source"] == src]
        rej = rejects[rejects["source"] == src]
        relabelled = int(acc["relabelled"].sum())
        with_label = int(acc["spacegroup_cif"].notna().sum())
        per_source[src] = {
            "seen": len(acc) + len(rej),
            "accepted": len(acc),
            "rejected": len(rej),
            "relabelled": relabelled,
            "relabelled_pct": round(100.0 * relabelled / with_label, 2) if with_label else None,
            "cif_label_missing": len(acc) - with_label,
        }
    with_label = shards["spacegroup_cif"].notna()
    pairs = (
        shards[shards["relabelled"]]
        .groupby(["spacegroup_cif", "spacegroup"]).size().sort_values(ascending=False).head(15)
    )
    summary = {
        "code_version": code_version(),
        "totals": {
            "seen": len(shards) + len(rejects),
            "accepted": len(shards),
            "rejected": len(rejects),
            "relabelled": int(shards["relabelled"].sum()),
            "relabelled_pct": round(100.0 * shards["relabelled"].sum() / with_label.sum(), 2) if with_label.any() else None,
            "space_groups": int(shards["spacegroup"].nunique()),
        },
        "sources": per_source,
        "rejects_by_reason": {
            src: rejects[rejects["source"] == src]["reason"].value_counts().sort_index().to_dict() for src in sources
        },
        "reason_meanings": {r: REASONS[r] for r in sorted(set(rejects["reason"]))},
        "top_relabellings": [
            {"cif": int(a), "spglib": int(b), "count": int(n)} for (a, b), n in pairs.items()
        ],
        "spacegroup_counts": {int(k): int(v) for k, v in shards["spacegroup"].value_counts().sort_index().items()},
    }
    return summary, rejects


def summary_markdown(summary: dict) -> str:
    t = summary["totals"]
    lines = [
        "# Structure ingestion summary",
        "",
        f"code version `{summary['code_version']}`",
        "",
        f"{t['seen']} structures seen, {t['accepted']} accepted, {t['rejected']} rejected; "
        f"{t['relabelled']} relabelled by spglib ({t['relabelled_pct']} % of those with a CIF label); "
        f"{t['space_groups']} space groups.",
        "",
        "| source | seen | accepted | rejected | relabelled | relabelled % | no CIF label |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for src, s in summary["sources"].items():
        lines.append(f"| {src} | {s['seen']} | {s['accepted']} | {s['rejected']} | {s['relabelled']} | "
                     f"{s['relabelled_pct']} | {s['cif_label_missing']} |")
    lines += ["", "## Rejects by reason", "", "| source | reason | count | meaning |", "|---|---|---:|---|"]
    for src, reasons in summary["rejects_by_reason"].items():
        for reason, n in reasons.items():
            lines.append(f"| {src} | {reason} | {n} | {summary['reason_meanings'][reason]} |")
    lines += ["", "## Most frequent relabellings (CIF label → spglib)", "", "| CIF | spglib | count |", "|---:|---:|---:|"]
    lines += [f"| {p['cif']} | {p['spglib']} | {p['count']} |" for p in summary["top_relabellings"]]
    return "\n".join(lines) + "\n"


def plot_spacegroup_histogram(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = summary["spacegroup_counts"]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(list(counts), list(counts.values()), width=1.0, color="#3b6ea8")
    ax.set_xlim(0, 231)
    if counts:  # every structure rejected: an empty (linear) axis, not a log scale of nothing
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no structure accepted (see the rejects table)", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("space group number (spglib)")
    ax.set_ylabel("structures")
    ax.set_title(f"{summary['totals']['accepted']} structures in {summary['totals']['space_groups']} space groups")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_summary(shard_paths: list[Path], reject_paths: list[Path], out_dir: Path) -> dict:
    """Write summary.json, summary.md, rejects.parquet and spacegroup_histogram.png."""
    out_dir = Path(out_dir)
    summary, rejects = summarize(shard_paths, reject_paths)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out_dir / "summary.md", summary_markdown(summary))
    with atomic_path(out_dir / "rejects.parquet") as tmp:
        pq.write_table(pa.Table.from_pandas(rejects, schema=REJECT_SCHEMA, preserve_index=False), tmp)
    plot_spacegroup_histogram(summary, out_dir / "spacegroup_histogram.png")
    return summary
