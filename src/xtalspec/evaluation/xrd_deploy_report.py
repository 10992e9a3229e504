"""The deploy models' report: held-out accuracy, the validation curve, calibration, the ablation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils.atomic import atomic_write_text
from .report_io import markdown_table
from ..utils.tables import read_frame


def deploy_report(summaries, heldouts, md_path, figure_path) -> str:
    from .calibration import expected_calibration_error, plot_reliability, reliability_table

    lines = ["# predict-xrd deploy models", "",
             "Held-out structures (a seeded share of every group, never trained on): top-k of their clean "
             "δ-profiles and of the front-end profiles of measured-like scans; expected calibration error (ECE, "
             "15 bins) before and after temperature scaling.", "",
             "| member | classes | items | top-1 | top-3 | ECE before | ECE after | T |",
             "|---|---|---|---|---|---|---|---|"]
    curves = []
    tables = None
    for summary_path, heldout_path in zip(summaries, heldouts):
        summary = json.loads(Path(summary_path).read_text())
        name = f"{summary['model']} {Path(summary_path).parent.name}"
        for kind, m in summary["held_out"].items():
            lines.append(f"| {name} ({kind}) | {summary['n_classes']} | {m['n']} | {m['top1']:.3f} | {m['top3']:.3f} | "
                         f"{m['ece_before']:.3f} | {m['ece_after']:.3f} | {summary['temperature']:.3f} |")
        curves.append((name, summary["history"]))
        if tables is None:
            frame, meta = read_frame(heldout_path)
            probs = np.stack(frame["probabilities"].to_numpy()).astype(np.float64)
            labels = frame["class_index"].to_numpy()
            t = meta["member"]["temperature"]
            logits = np.log(np.clip(probs, 1e-12, None)) / t
            scaled = np.exp(logits - logits.max(1, keepdims=True))
            scaled /= scaled.sum(1, keepdims=True)
            tables = (reliability_table(probs, labels, 15), reliability_table(scaled, labels, 15))
            ece = (expected_calibration_error(probs, labels), expected_calibration_error(scaled, labels))
    lines += ["", "## Validation curve (accuracy on the held-out front-end items after each epoch)", ""]
    for name, history in curves:
        lines.append(f"{name}: " + ", ".join(f"{h['epoch']}: {h.get('val_acc', float('nan')):.3f}" for h in history))
    if tables is not None:
        plot_reliability(tables[0], tables[1], figure_path)
        lines += ["", f"Reliability diagram ({Path(figure_path).name}): all held-out items of the first member, "
                      f"ECE {ece[0]:.3f} → {ece[1]:.3f}."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(md_path, text)
    return text


def ablation_table(scores, md_path) -> str:
    """One row per ablation variant: held-out front-end top-1/top-3 and clean top-1, and the change
    against the baseline (``subset``: every augmentation on, same structures; ``all`` in older runs)."""
    rows = []
    for path in scores:
        data = json.loads(Path(path).read_text())
        front = data["scores"].get("front_end", {})
        clean = data["scores"].get("clean", {})
        rows.append({"variant": data["variant"], "front_end_top1": front.get("top1"), "front_end_top3": front.get("top3"),
                     "clean_top1": clean.get("top1"), "n": front.get("n")})
    frame = pd.DataFrame(rows)
    base = frame[frame["variant"].isin(["subset", "all"])]
    if len(base):
        for column in ("front_end_top1", "front_end_top3"):
            frame[f"delta_{column.removeprefix('front_end_')}"] = frame[column] - float(base[column].iloc[0])
    n = int(frame["n"].dropna().iloc[0]) if frame["n"].notna().any() else 0
    p = float(frame["front_end_top1"].mean()) if n else 0.0
    noise = (f" With {n} held-out items, one score's binomial standard error is about "
             f"{np.sqrt(p * (1 - p) / n):.3f}: smaller changes are not resolved." if n else "")
    text = ("# Augmentation ablation\n\nOne short SpgNet per variant, trained on the same seeded share of the "
            "structures (`subset`: every augmentation on; `no-X`: augmentation X switched off in its training scans), "
            "all scored on the same held-out front-end items rendered with every augmentation on. A negative change "
            "means the augmentation helps on measured-like scans." + noise + "\n\n"
            + markdown_table(frame.drop(columns="n").round(3)) + "\n")
    atomic_write_text(md_path, text)
    return text
