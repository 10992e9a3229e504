"""Robustness of trained PDF models to the PDF parameters (Tables 2–5, Figures 2–5 of Lan et al.):
a seeded fraction of the test split is recomputed at each value of one parameter (others at
their training values; rmax below 30 Å is zero-padded as in the paper) and top-1 / top-6 are
measured, with bootstrap resamples of the items for the box plots. No model is retrained."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..datasets.pdf_paper import PAPER_PARAMS, SWEEPS
from ..datasets.pdfs import model_input_for
from ..structures import load_structures
from .classification import top_k_accuracy


def sweep_items(table: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    test = table[table["split"] == "test"]
    n = max(1, int(round(fraction * len(test))))
    rows = np.sort(np.random.default_rng(seed).choice(len(test), size=min(n, len(test)), replace=False))
    return test.iloc[rows].reset_index(drop=True)


def primitive_structures(items: pd.DataFrame) -> list:
    """The standard primitive cells of ``items``, read back from their structure shards."""
    wanted = {(row.structure_shard, row.id) for row in items.itertuples()}
    found = {}
    for shard in sorted({s for s, _ in wanted}):
        for record in load_structures([shard], columns=["id", "primitive"]):
            if (shard, record.id) in wanted:
                found[(shard, record.id)] = record.primitive
    return [found[(row.structure_shard, row.id)] for row in items.itertuples()]


def sweep_inputs(structures: list, parameter: str, value: float) -> np.ndarray:
    params = dict(PAPER_PARAMS, **{parameter: float(value)})
    return np.stack([model_input_for(s, params) for s in structures]).astype(np.float32)


def bootstrap(probabilities: np.ndarray, labels: np.ndarray, k: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hits = (np.argsort(-probabilities, axis=1)[:, :k] == labels[:, None]).any(axis=1)
    return np.array([hits[rng.integers(0, len(hits), len(hits))].mean() for _ in range(n)])


def run_sweep(parameter: str, items: pd.DataFrame, models: dict, n_bootstrap: int = 200, seed: int = 0) -> pd.DataFrame:
    """Top-1 / top-6 of each model (name -> callable x -> probabilities) at each swept value."""
    from .. import spectra  # noqa: F401  (fail early if the PDF engine is missing)

    structures = primitive_structures(items)
    labels = items["class_index"].to_numpy()
    sweep = SWEEPS[parameter]
    rows = []
    for i, value in enumerate(sweep["values"]):
        x = sweep_inputs(structures, parameter, value)
        for name, predict in models.items():
            p = predict(x)
            rows.append({"parameter": parameter, "value": value, "model": name, "n_items": len(labels),
                         "top1": top_k_accuracy(p, labels, 1), "top6": top_k_accuracy(p, labels, 6),
                         "top6_bootstrap": bootstrap(p, labels, 6, n_bootstrap, seed + i).tolist(),
                         "paper_top1": sweep["top1"][i], "paper_top6": sweep["top6"][i]})
    return pd.DataFrame(rows)


def sweep_markdown(result: pd.DataFrame, parameter: str) -> str:
    sweep = SWEEPS[parameter]
    values = sweep["values"]
    head = f"| {parameter} ({sweep['unit']}) | " + " | ".join(f"{v:g}" for v in values) + " |"
    lines = [f"# Table {sweep['table']}: top-6 and top-1 accuracy when {parameter} varies", "", head,
             "|---|" + "---:|" * len(values)]
    for name, part in result.groupby("model", sort=False):
        part = part.set_index("value").loc[values]
        lines.append(f"| top-6, ours ({name}) | " + " | ".join(f"{v:.3f}" for v in part["top6"]) + " |")
        lines.append(f"| top-1, ours ({name}) | " + " | ".join(f"{v:.3f}" for v in part["top1"]) + " |")
    lines.append("| top-6, paper | " + " | ".join(f"{v:.3f}" for v in sweep["top6"]) + " |")
    lines.append("| top-1, paper | " + " | ".join(f"{v:.3f}" for v in sweep["top1"]) + " |")
    n = int(result["n_items"].iloc[0]) if len(result) else 0
    lines += ["", f"Ours: {n} structures (a seeded 10 % of our test split), other parameters at their training "
              "values; the paper: ~10 % of its ~19,800 ICSD test structures."]
    return "\n".join(lines) + "\n"


def plot_sweep(result: pd.DataFrame, parameter: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils.atomic import atomic_path

    sweep = SWEEPS[parameter]
    values = sweep["values"]
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = ["#1f77b4", "#d62728", "#2ca02c"]
    for k, (name, part) in enumerate(result.groupby("model", sort=False)):
        part = part.set_index("value").loc[values]
        positions = np.arange(len(values)) + (k - 0.5) * 0.3 * (result["model"].nunique() > 1)
        ax.boxplot(list(part["top6_bootstrap"]), positions=positions, widths=0.25, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": colours[k % 3], "alpha": 0.35})
        ax.plot(positions, part["top6"], "o-", color=colours[k % 3], label=f"top-6, ours ({name})")
    ax.plot(np.arange(len(values)), sweep["top6"], "ks--", label="top-6, paper")
    train_value = PAPER_PARAMS[parameter]
    if train_value in values:
        ax.axvline(values.index(train_value), color="green", ls="--", lw=1, label="training value")
    ax.set_xticks(np.arange(len(values)), [f"{v:g}" for v in values])
    ax.set_xlabel(f"{parameter} ({sweep['unit']})")
    ax.set_ylabel("top-6 accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"Figure {sweep['table']}: robustness to {parameter} (boxes: bootstrap over items)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
