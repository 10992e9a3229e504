"""Reports of the thesis' composition experiments (Jha 2019, ch. 3–5), from saved predictions:
the cross-validation MAE table beside the thesis' values, the learning curve (Fig. 3.3), parity
plots with error CDFs (Figs. 3.4, 5.6) and the transfer-learning table (Table 5.2).

The thesis trained on DFT formation enthalpies of OQMD (256,622 compositions; IRNet on
OQMD-SC with 271 structure + physical attributes) and on 1,963 experimental SSUB values; our
embedded default is the experimental NIST-JANAF set (a few hundred crystalline compounds), so
the numbers are beside each other, not comparable: the thesis itself shows (Table 5.2) what
a 1,963-compound experimental set does to ElemNet (0.130 eV/atom against 0.042 on OQMD).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..utils.atomic import atomic_write_text
from .report_io import markdown_table, pyplot, save_png

MODEL_LABELS = {"elemnet": "ElemNet", "irnet17": "IRNet-17", "irnet24": "IRNet-24", "irnet48": "IRNet-48",
                "rf_comp": "RF-Comp (fractions)", "rf_phys": "RF-Phys (attributes)"}
#: thesis MAE (eV/atom): 10-fold CV on OQMD (Table 3.2) and IRNet on OQMD-SC (Table 4.2, 271 attributes)
THESIS_MAE = {"elemnet": "0.050 ± 0.0007 (OQMD, 10-fold)", "rf_comp": "0.157 ± 0.0012 (OQMD)",
              "rf_phys": "0.071 ± 0.0006 (OQMD, 145 attributes)", "irnet17": "0.0411 (OQMD-SC, 271 attributes)",
              "irnet24": "0.0403 (OQMD-SC)", "irnet48": "0.0382 (OQMD-SC, 271 attributes)"}
#: Table 5.2, experimental (SSUB, 1,963) set: scratch, OQMD model as is, transfer learning
THESIS_TRANSFER = {"SC": "0.1299 ± 0.0136", "source-SC": "0.1354", "TL": "0.0642 ± 0.0061"}


def _label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def fold_maes(predictions: pd.DataFrame) -> pd.DataFrame:
    err = (predictions["y_pred"] - predictions["y_true"]).abs()
    return predictions.assign(err=err).groupby(["model", "fold"], as_index=False)["err"].mean().rename(
        columns={"err": "mae"})


def cv_table(predictions_by_source: dict[str, pd.DataFrame], out_dir) -> pd.DataFrame:
    """Mean ± sd over folds of the per-fold MAE, per source and model, with the thesis' values."""
    rows = []
    for source, predictions in predictions_by_source.items():
        per_fold = fold_maes(predictions)
        mad = float((predictions.drop_duplicates("id")["y_true"] - predictions.drop_duplicates("id")["y_true"].mean()
                     ).abs().mean())
        for model, group in per_fold.groupby("model", sort=False):
            p = predictions[predictions["model"] == model]
            rows.append({"source": source, "model": model, "label": _label(model), "folds": len(group),
                         "n": int(p["id"].nunique()), "mae": group["mae"].mean(),
                         "mae_sd": group["mae"].std(ddof=1) if len(group) > 1 else 0.0,
                         "mae_pooled": float((p["y_pred"] - p["y_true"]).abs().mean()),
                         "p90_abs_error": float((p["y_pred"] - p["y_true"]).abs().quantile(0.9)),
                         "mean_absolute_deviation": mad, "thesis": THESIS_MAE.get(model, "—")})
    table = pd.DataFrame(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "cv_mae.csv", index=False)
    shown = pd.DataFrame({
        "source": table["source"], "model": table["label"], "compositions": table["n"], "folds": table["folds"],
        "MAE eV/atom (mean ± sd over folds)": [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["mae"], table["mae_sd"])],
        "90th pct |error|": table["p90_abs_error"].map("{:.3f}".format),
        "MAD of the set": table["mean_absolute_deviation"].map("{:.3f}".format),
        "thesis MAE (its data)": table["thesis"]})
    atomic_write_text(out / "cv_mae.md", "Cross-validation MAE of formation enthalpy per atom (eV/atom). "
                      "The thesis' values are on DFT (OQMD) data, ours on the sources named; not comparable "
                      "one to one.\n\n" + markdown_table(shown) + "\n")
    return table


def learning_curve_figure(curve: pd.DataFrame, path, source: str = "") -> pd.DataFrame:
    """MAE (mean ± sd over folds) vs number of training compositions, log x (thesis Fig. 3.3)."""
    summary = curve.groupby(["model", "fraction"], as_index=False).agg(
        n_train=("n_train_total", "mean"), mae=("mae", "mean"), mae_sd=("mae", "std"), folds=("fold", "nunique"))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (model, group) in enumerate(summary.groupby("model", sort=False)):
        ax.errorbar(group["n_train"], group["mae"], yerr=group["mae_sd"].fillna(0), marker="o", capsize=3,
                    label=_label(model), color=f"C{i}")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator

    sizes = sorted({int(round(n)) for n in summary["n_train"]})
    ax.xaxis.set_major_locator(FixedLocator(sizes))  # one labelled tick per training-set size
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xlabel("training compositions")
    ax.set_ylabel("test MAE (eV/atom)")
    ax.set_title(f"Learning curve{f' ({source})' if source else ''}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    summary.to_csv(Path(path).with_suffix(".csv"), index=False)
    return summary


def parity_figure(predictions: pd.DataFrame, path, title: str = "") -> None:
    """Predicted vs true for each model, with the CDF of |error| (thesis Figs. 3.4 and 5.6)."""
    models = list(dict.fromkeys(predictions["model"]))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(3.2 * (len(models) + 1), 3.3))
    lo = float(min(predictions["y_true"].min(), predictions["y_pred"].min()))
    hi = float(max(predictions["y_true"].max(), predictions["y_pred"].max()))
    for i, model in enumerate(models):
        p = predictions[predictions["model"] == model]
        err = (p["y_pred"] - p["y_true"]).abs()
        ax = axes[i]
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(p["y_true"], p["y_pred"], s=6, alpha=0.6, color=f"C{i}")
        ax.set_title(f"{_label(model)}\nMAE {err.mean():.3f} eV/atom", fontsize=9)
        ax.set_xlabel("true (eV/atom)")
        if i == 0:
            ax.set_ylabel("predicted (eV/atom)")
        axes[-1].plot(np.sort(err), np.linspace(0, 1, len(err)), label=_label(model), color=f"C{i}")
    axes[-1].set_xlabel("|error| (eV/atom)")
    axes[-1].set_ylabel("fraction of compositions")
    axes[-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def transfer_table(predictions: pd.DataFrame, out_dir, pretrained: dict | None = None) -> pd.DataFrame:
    """Scratch vs the pretrained model as is vs fine-tuned, on the target's folds (Table 5.2)."""
    per_fold = fold_maes(predictions)
    rows = []
    for model, group in per_fold.groupby("model", sort=False):
        kind = "TL" if model.endswith("-TL") else ("SC" if model.endswith("-SC") and model[:-3] in MODEL_LABELS
                                                   else "source-SC")
        rows.append({"model": model, "kind": kind, "mae": group["mae"].mean(),
                     "mae_sd": group["mae"].std(ddof=1) if len(group) > 1 else 0.0, "folds": len(group),
                     "thesis (experimental, 1,963)": THESIS_TRANSFER[kind]})
    order = {"SC": 0, "source-SC": 1, "TL": 2}  # Table 5.2's order
    table = pd.DataFrame(rows).sort_values("kind", key=lambda k: k.map(order), kind="mergesort")
    table = table.reset_index(drop=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "transfer.csv", index=False)
    note = ""
    if pretrained:
        note = (f"Pretrained {pretrained.get('model')} on {pretrained.get('source')} "
                f"({pretrained.get('n_compositions')} compositions, best epoch {pretrained.get('best_epoch')}).\n\n")
    shown = table.assign(mae=[f"{m:.3f} ± {s:.3f}" for m, s in zip(table["mae"], table["mae_sd"])]).drop(
        columns="mae_sd")
    atomic_write_text(out / "transfer.md", "Transfer learning: MAE on the target's folds (eV/atom).\n\n" + note
                      + markdown_table(shown) + "\n")
    return table
