"""spacegroupMining (PDF) reports from saved predictions and trained models: the top-1 / top-6
table (:func:`write_topk`) and one robustness sweep (:func:`write_sweep`: table and figure of one
PDF parameter, no retraining)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..utils.atomic import atomic_write_text

#: default names under ``xtalspec pdf topk --out-dir DIR``
TOPK_FILES = {"csv": "topk.csv", "md": "topk.md"}


def sweep_files(parameter: str) -> dict[str, str]:
    """Default names of one sweep's table (``--out-dir``) and figure (``--figures``)."""
    from ..datasets.pdfs import SWEEPS

    number = SWEEPS[parameter]["table"]
    return {"csv": f"table{number}_{parameter}.csv", "md": f"table{number}_{parameter}.md",
            "figure": f"figure{number}_{parameter}.png"}


def write_topk(predictions: list, paths: dict) -> pd.DataFrame:
    """Top-1 / top-6 accuracy of each model's test predictions (named by its folder) beside the
    paper's, as ``paths['csv']`` and ``paths['md']``."""
    import pyarrow.parquet as pq

    from ..datasets.pdfs import PAPER_RESULT
    from .classification import top_k_accuracy

    lines = ["# Top-1 / top-6 accuracy on the test split", "", "| model | test items | classes | top-1 | top-6 |",
             "|---|---:|---:|---:|---:|"]
    rows = []
    for path in predictions:
        frame = pq.read_table(path).to_pandas()
        p, y = np.stack(frame["probabilities"].to_numpy()), frame["class_index"].to_numpy()
        name = Path(path).parent.name
        row = {"model": name, "n_test": len(y), "classes": p.shape[1], "top1": top_k_accuracy(p, y, 1),
               "top6": top_k_accuracy(p, y, 6)}
        rows.append(row)
        lines.append(f"| ours ({name}) | {len(y)} | {p.shape[1]} | {row['top1']:.3f} | {row['top6']:.3f} |")
    lines.append(f"| paper (rebuilt model, ICSD) | ~19,800 | 45 | {PAPER_RESULT['top1']:.3f} | {PAPER_RESULT['top6']:.3f} |")
    lines.append(f"| Liu et al. 2019 (original) | | 45 | {PAPER_RESULT['original_top1']:.3f} | "
                 f"{PAPER_RESULT['original_top6']:.3f} |")
    table = pd.DataFrame(rows)
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    atomic_write_text(paths["md"], "\n".join(lines) + "\n")
    return table


def write_sweep(parameter: str, dataset, model_paths: list, fraction: float, n_bootstrap: int, seed: int,
                paths: dict) -> pd.DataFrame:
    """Top-6 accuracy of every model (``model.pt`` files, named by their folder) on a seeded
    ``fraction`` of the test set with one PDF parameter swept: ``paths['csv']``, ``paths['md']``
    (the table) and ``paths['figure']``."""
    from ..training.pdf import load_pdf_model, probabilities
    from ..utils.tables import read_frame
    from .pdf_robustness import plot_sweep, run_sweep, sweep_items, sweep_markdown

    table, _ = read_frame(dataset)
    items = sweep_items(table, fraction, seed)
    models = {}
    for path in model_paths:
        model, _ = load_pdf_model(path)
        models[Path(path).parent.name] = lambda x, m=model: probabilities(m, x)
    result = run_sweep(parameter, items, models, n_bootstrap, seed)
    atomic_write_text(paths["csv"], result.drop(columns="top6_bootstrap").to_csv(index=False))
    atomic_write_text(paths["md"], sweep_markdown(result, parameter))
    plot_sweep(result, parameter, paths["figure"])
    return result
