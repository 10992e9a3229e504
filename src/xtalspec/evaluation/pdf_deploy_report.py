"""The PDF deploy models' report: held-out top-1/top-6 per radiation, the validation curve (held-out
accuracy after every epoch), held-out accuracy by the data's rmax, and the groups they know."""

from __future__ import annotations

import json
from pathlib import Path

from ..utils.atomic import atomic_write_text


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_deploy_report(summary_paths: list[str | Path], md_path: str | Path, json_path: str | Path) -> dict:
    summaries = [json.loads(Path(p).read_text()) for p in summary_paths]
    lines = ["# PDF deploy models (`predict-pdf`'s default)", "",
             "One PDFNet per radiation, trained on every space group with enough structures, on PDFs rendered "
             "like measured ones (randomised Table-1 parameters, Qmax 14–30 Å⁻¹ termination, noise, scale, "
             "data ending at rmax 10–30 Å). Held out: a seeded share of each group's structures (all their "
             "copies); the held-out items are simulated, with the same augmentations, not measured data.", "",
             "| radiation | groups | structures | train items | held-out items (structures) | epochs | "
             "top-1 | top-6 | temperature | ECE before → after | confident (p ≥ threshold): share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        confident = (f"{_fmt(s.get('confidence_threshold'), 2)}: {_fmt(s.get('confident_coverage'), 2)}"
                     if s.get("confidence_threshold") is not None else "–")
        lines.append(f"| {s['radiation']} | {s['n_groups']} | {s['n_structures']} | {s['n_train']} | "
                     f"{s['n_heldout']} ({s['n_heldout_structures']}) | {s['epochs']} | {_fmt(s['heldout_top1'])} | "
                     f"{_fmt(s['heldout_top6'])} | {_fmt(s.get('temperature'), 2)} | "
                     f"{_fmt(s.get('ece_before'))} → {_fmt(s.get('ece_after'))} | {confident} |")
    lines += ["", "## Validation curve (held-out accuracy after each epoch)", ""]
    header = "| epoch | " + " | ".join(f"{s['radiation']} top-1 | {s['radiation']} top-6" for s in summaries) + " |"
    lines += [header, "|---:|" + "---:|" * (2 * len(summaries))]
    epochs = max((len(s["curve"]) for s in summaries), default=0)
    for e in range(epochs):
        cells = []
        for s in summaries:
            point = s["curve"][e] if e < len(s["curve"]) else {}
            cells += [_fmt(point.get("heldout_top1")), _fmt(point.get("heldout_top6"))]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    lines += ["", "## Held-out accuracy by the data's rmax", "",
              "| radiation | rmax (Å) | items | top-1 | top-6 |", "|---|---|---:|---:|---:|"]
    for s in summaries:
        for b in s["heldout_by_rmax"]:
            lines.append(f"| {s['radiation']} | {b['rmax_from']:g}–{b['rmax_to']:g} | {b['items']} | "
                         f"{_fmt(b['top1'])} | {_fmt(b['top6'])} |")
    lines += ["", "## Space groups", ""]
    for s in summaries:
        lines.append(f"* {s['radiation']}: {s['n_groups']} groups; beyond the paper's 45: "
                     f"{', '.join(map(str, s['groups_outside_paper'])) or 'none'}; paper groups with too few "
                     f"structures: {', '.join(map(str, s['paper_groups_missing'])) or 'none'}.")
    lines += ["", "Calibration: " + "; ".join(f"{s['radiation']}: {s['calibration']}" for s in summaries), ""]
    atomic_write_text(md_path, "\n".join(lines))
    report = {"models": summaries}
    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    return report
