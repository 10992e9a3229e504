"""The PADNet comparison (thesis ch. 7) from saved predictions: top-1 accuracy of every approach
against the background strength of the held-out rendered patterns (strength = the background's
maximum relative to the strongest peak), as a table and a figure.

The thesis measured, on 177 real 2D patterns of 8 phase regions, PADNet 84 % overall and
AdaBoost on background-subtracted 1D patterns 34.8 ± 14.0 % (SLAC, irregular background) and
83.8 ± 14.5 % (NIST); our task (space groups of rendered powder patterns) differs, so only the
trends are comparable.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..utils.atomic import atomic_write_text
from .report_io import markdown_table, pyplot, save_png

LABELS = {
    "padnet_raw": "PADNet (raw pattern)",
    "spgnet_min_filter": "SpgNet after min filter",
    "spgnet_min_mean_filter": "SpgNet after min+mean filter",
    "spgnet_raw": "SpgNet (raw pattern, same augmentation)",
    "spgnet_clean_min_mean_filter": "SpgNet trained without background, min+mean filter",
    "adaboost_min_mean_filter": "AdaBoost after min+mean filter",
}


def accuracy_vs_background(predictions: pd.DataFrame, tables_dir, figure_path) -> pd.DataFrame:
    table = predictions.groupby(["approach", "strength"], as_index=False).agg(
        accuracy=("correct", "mean"), n=("correct", "size"), mean_p_true=("p_true", "mean"))
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(tables_dir / "padnet_background.csv", index=False)
    wide = table.pivot(index="approach", columns="strength", values="accuracy")
    wide = wide.reindex([a for a in LABELS if a in wide.index] + [a for a in wide.index if a not in LABELS])
    shown = pd.DataFrame({"approach": [LABELS.get(a, a) for a in wide.index]})
    for strength in wide.columns:
        shown[f"s = {strength:g}"] = [f"{100 * v:.1f}" for v in wide[strength]]
    n_test = int(table["n"].iloc[0]) if len(table) else 0
    atomic_write_text(tables_dir / "padnet_background.md",
                      f"Top-1 accuracy (%) on {n_test} held-out structures rendered as laboratory patterns, "
                      "by background strength s (background maximum / strongest peak).\n\n"
                      + markdown_table(shown) + "\n")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, approach in enumerate(wide.index):
        ax.plot(wide.columns, 100 * wide.loc[approach], marker="o", label=LABELS.get(approach, approach),
                color=f"C{i}", lw=2.2 if approach == "padnet_raw" else 1.3)
    n_classes = predictions["class_index"].nunique()
    if n_classes:
        ax.axhline(100 / n_classes, color="0.6", ls=":", lw=1, label="chance")
    ax.set_xlabel("background strength (background max / strongest peak)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)  # below: never over data
    ax.set_title("Background robustness (held-out structures)")
    fig.tight_layout()
    save_png(fig, figure_path)
    return table
