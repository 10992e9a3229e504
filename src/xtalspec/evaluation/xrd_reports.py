"""SpgNet/SpgVolNet outputs from saved validation predictions (no model is run here):
Table 3, the outlier-range table (SXI), confusion matrices, the volume-error analysis and
top-k prediction tables (Tables SI–SIX format) — :func:`write_report` writes one of them — and
the data-set tables (Table 2, the sets, the validation folds: :func:`write_dataset_tables`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from ..datasets.spgnet import RANGE_LABELS
from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.roman import ROMAN
from .classification import confusion_matrix, mean_and_interval, metrics

MODEL_LABELS = {"spgnet": "SpgNet", "spgvolnet": "SpgVolNet"}
PAPER_NOTE = ("Paper (Ozaki et al. 2025): the numbers of Table 3 did not survive in the text we have; "
              "its findings are that ensemble averaging raises precision significantly (non-overlapping "
              "95 % intervals) and MTL (SpgVolNet) raises recall. 50 % of volume predictions lie within "
              "+1.8 % / −3.4 % of the true volume.")


def load_predictions(paths: list[str | Path]) -> list[dict]:
    """Each member's predictions as {meta, frame, probabilities}."""
    members = []
    for path in paths:
        arrow = pq.read_table(path)
        frame = arrow.to_pandas()
        members.append({"meta": json.loads(arrow.schema.metadata[b"xtalspec"]), "frame": frame,
                        "probabilities": np.stack(frame["probabilities"].to_numpy())})
    return members


def ensembles(members: list[dict]) -> dict[tuple, list[dict]]:
    """Members grouped by (model, range, fold), sorted by seed."""
    groups: dict[tuple, list[dict]] = {}
    for m in members:
        key = (m["meta"]["model"], m["meta"]["range"], m["meta"]["fold"])
        groups.setdefault(key, []).append(m)
    return {k: sorted(v, key=lambda m: m["meta"]["seed"]) for k, v in sorted(groups.items())}


def ensemble_probabilities(group: list[dict]) -> np.ndarray:
    ids = [tuple(m["frame"]["id"]) for m in group]
    assert all(i == ids[0] for i in ids), "members of one ensemble were validated on different items"
    return np.mean([m["probabilities"] for m in group], axis=0)


def fold_metrics(members: list[dict]) -> pd.DataFrame:
    """Per (model, range, fold): specific mean (mean of the members' metrics) and ensemble mean
    (metrics of the mean probability)."""
    rows = []
    for (model, range_name, fold), group in ensembles(members).items():
        y = group[0]["frame"]["class_index"].to_numpy()
        n = group[0]["probabilities"].shape[1]
        specific = pd.DataFrame([metrics(confusion_matrix(y, m["probabilities"].argmax(1), n)) for m in group]).mean()
        ensemble = metrics(confusion_matrix(y, ensemble_probabilities(group).argmax(1), n))
        for kind, values in (("specific", specific.to_dict()), ("ensemble", ensemble)):
            rows.append({"model": model, "range": range_name, "fold": fold, "kind": kind,
                         "members": len(group), **values})
    return pd.DataFrame(rows)


def interval_table(per_fold: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, part in per_fold.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["folds"] = len(part)
        for metric in ("accuracy", "precision", "recall", "f_score"):
            mean, lo, hi = mean_and_interval(part[metric])  # metrics live in [0, 1]: clip the interval
            row.update({metric: mean, f"{metric}_ci_low": max(lo, 0.0), f"{metric}_ci_high": min(hi, 1.0)})
        rows.append(row)
    return pd.DataFrame(rows)


def table3(members: list[dict], range_name: str) -> pd.DataFrame:
    per_fold = fold_metrics(members)
    per_fold = per_fold[per_fold["range"] == range_name]
    table = interval_table(per_fold, ["model", "kind"])
    table["model"] = table["model"].map(MODEL_LABELS)
    return table


def range_table(members: list[dict], model: str = "spgnet") -> pd.DataFrame:
    per_fold = fold_metrics(members)
    table = interval_table(per_fold[per_fold["model"] == model], ["range", "kind"])
    table["range"] = table["range"].map(RANGE_LABELS)
    return table


def markdown(table: pd.DataFrame, title: str, note: str = "") -> str:
    def cell(row, metric):
        lo, hi = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
        text = f"{row[metric]:.3f}"
        return text + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and np.isfinite(lo) else "")

    keys = [c for c in table.columns if c in ("model", "range", "kind", "folds")]
    metric_names = ["accuracy", "precision", "recall", "f_score"]
    lines = [f"# {title}", "", "| " + " | ".join(keys + metric_names) + " |",
             "|" + "---|" * (len(keys) + len(metric_names))]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join([str(row[k]) for k in keys] + [cell(row, m) for m in metric_names]) + " |")
    lines += ["", "Mean over validation folds with the 95 % t-interval in brackets, clipped to [0, 1] "
              "(none for a single fold).",
              "", note]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, csv_path: Path, md_path: Path, title: str, note: str = "") -> None:
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, markdown(table, title, note))


def confusion_matrices(members: list[dict], model: str, range_name: str) -> dict[str, np.ndarray]:
    """Summed over folds: one matrix per seed (I–VI) and one for the ensemble mean."""
    out: dict[str, np.ndarray] = {}
    for (m, r, _), group in ensembles(members).items():
        if (m, r) != (model, range_name):
            continue
        y = group[0]["frame"]["class_index"].to_numpy()
        n = group[0]["probabilities"].shape[1]
        for k, member in enumerate(group):
            label = ROMAN[k] if k < len(ROMAN) else str(k + 1)
            out[label] = out.get(label, 0) + confusion_matrix(y, member["probabilities"].argmax(1), n)
        out["ensemble"] = out.get("ensemble", 0) + confusion_matrix(y, ensemble_probabilities(group).argmax(1), n)
    return out


def plot_confusion(matrix: np.ndarray, labels: list[int], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(5.0, 0.16 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(fractions, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel("predicted space group")
    ax.set_ylabel("true space group")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def volume_errors(members: list[dict]) -> pd.DataFrame:
    """Relative volume error (V' − V)/V of each SpgVolNet member's and its ensemble's prediction."""
    rows = []
    for (model, range_name, fold), group in ensembles(members).items():
        if "volume_pred" not in group[0]["frame"]:
            continue
        truth = group[0]["frame"]["volume"].to_numpy()
        preds = np.array([m["frame"]["volume_pred"].to_numpy() for m in group])
        for k, pred in enumerate(preds):
            rows.append(pd.DataFrame({"range": range_name, "fold": fold, "member": ROMAN[k], "error": pred / truth - 1}))
        ensemble = np.exp(np.log(preds).mean(axis=0))  # geometric mean: the mean of the predicted U
        rows.append(pd.DataFrame({"range": range_name, "fold": fold, "member": "ensemble",
                                  "error": ensemble / truth - 1}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["range", "fold", "member", "error"])


def volume_summary(errors: pd.DataFrame) -> dict:
    result = {}
    for member, part in errors.groupby("member"):
        e = part["error"].to_numpy()
        loc, scale = stats.cauchy.fit(e)
        q1, median, q3 = np.percentile(e, [25, 50, 75])
        result[member] = {"n": int(len(e)), "median": float(median), "q1": float(q1), "q3": float(q3),
                          "cauchy_loc": float(loc), "cauchy_scale": float(scale)}
    return result


def plot_volume(errors: pd.DataFrame, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = errors[errors["member"] == "ensemble"]["error"].to_numpy() * 100
    s = summary.get("ensemble")
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(e):
        lim = max(5.0, float(np.percentile(np.abs(e), 95)))
        ax.hist(np.clip(e, -lim, lim), bins=60, range=(-lim, lim), density=True, color="#8aa9cf", label="ensemble")
        x = np.linspace(-lim, lim, 400)
        ax.plot(x, stats.cauchy.pdf(x, 100 * s["cauchy_loc"], 100 * s["cauchy_scale"]), "k-",
                label=f"Cauchy fit (x0 {100 * s['cauchy_loc']:.1f} %, γ {100 * s['cauchy_scale']:.1f} %)")
        ax.axvspan(100 * s["q1"], 100 * s["q3"], color="orange", alpha=0.3,
                   label=f"50 %: {100 * s['q1']:+.1f} % … {100 * s['q3']:+.1f} %")
        ax.axvline(100 * s["median"], color="orange")
    ax.set_xlabel("(V' − V) / V  [%]  (tails gathered in the edge bins)")
    ax.set_ylabel("density")
    ax.set_title("SpgVolNet volume error (paper: 50 % within +1.8 % / −3.4 %)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def top_k_table(members: list[dict], model: str, range_name: str, k: int = 3, max_items: int = 50) -> pd.DataFrame:
    """Tables SI–SIX format: for each validation item, the k space groups with the highest
    ensemble probability and each member's probability for them."""
    rows = []
    for (m, r, fold), group in ensembles(members).items():
        if (m, r) != (model, range_name):
            continue
        groups = group[0]["meta"]["spacegroups"]
        mean = ensemble_probabilities(group)
        frame = group[0]["frame"]
        for i in range(min(len(frame), max_items)):
            for rank, c in enumerate(np.argsort(-mean[i])[:k], start=1):
                row = {"fold": fold, "id": frame["id"].iloc[i], "true_spacegroup": int(frame["spacegroup"].iloc[i]),
                       "rank": rank, "spacegroup": int(groups[c])}
                row.update({f"p_{ROMAN[j]}": float(g["probabilities"][i, c]) for j, g in enumerate(group)})
                row["p_ensemble"] = float(mean[i, c])
                rows.append(row)
    return pd.DataFrame(rows)


def plot_training_curves(history_paths: list[str | Path], path: Path) -> None:
    """Training loss and validation accuracy per epoch of every member, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for history_path in history_paths:
        parts = Path(history_path).parts  # …/models/{model}/{range}/fold{f}/seed{s}/history.csv
        model, label = parts[-5], "/".join(parts[-4:-1])
        curves.setdefault(model, []).append((label, pd.read_csv(history_path)))
    fig, axes = plt.subplots(2, max(len(curves), 1), figsize=(5 * max(len(curves), 1), 6), squeeze=False)
    for col, (model, runs) in enumerate(sorted(curves.items())):
        for label, history in runs:
            axes[0, col].plot(history["epoch"], history["loss"], lw=1, alpha=0.7)
            if "val_acc" in history:
                axes[1, col].plot(history["epoch"], history["val_acc"], lw=1, alpha=0.7)
        axes[0, col].set_title(f"{MODEL_LABELS.get(model, model)} ({len(runs)} members)")
        axes[0, col].set_ylabel("training loss")
        axes[1, col].set_ylabel("validation accuracy")
        axes[1, col].set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- files of the commands

#: default names of the data-set tables (``xtalspec xrd dataset --tables DIR``)
DATASET_FILES = {"table2": "table2.md", "table2_csv": "table2.csv", "sets": "sets.md", "folds": "validation_folds.csv"}

#: default names of each report's files under ``xtalspec xrd report WHAT --out-dir DIR``; a
#: ``template`` is formatted with ``model`` (and ``label``: a member's roman numeral or ``ensemble``)
REPORT_FILES = {
    "table3": {"csv": "table3.csv", "md": "table3.md"},
    "ranges": {"csv": "table_sxi.csv", "md": "table_sxi.md"},
    "confusion": {"template": "confusion_{model}_{label}"},
    "volume": {"figure": "volume_error.png", "summary": "volume_summary.json", "errors": "volume_errors.csv"},
    "topk": {"template": "topk_{model}.csv"},
    "curves": {"figure": "training_curves.png"},
}


def write_dataset_tables(description: dict, settings: dict, paths: dict) -> str:
    """Table 2 (Markdown and CSV), what each set holds and the validation-fold report of a data set
    built by :func:`xtalspec.datasets.spgnet.build_dataset` (``settings``: its min_per_group,
    n_folds, per_fold, leakage_bins, peak_threshold, max_train_per_group). Returns Table 2's text."""
    sizes = description["range_sizes"]
    table2 = "\n".join(["# Table 2: data-set sizes after excluding outliers", "",
                        f"{len(description['spacegroups'])} space groups with ≥ {settings['min_per_group']} members "
                        f"(paper: 57 groups, 62,830 structures in D(∞)).", "",
                        "| data set | entries |", "|---|---:|"]
                       + [f"| {RANGE_LABELS[k]} | {v} |" for k, v in sizes.items()]) + "\n"
    atomic_write_text(paths["table2"], table2)
    atomic_write_text(paths["table2_csv"], "range,label,entries\n" + "".join(
        f"{k},{RANGE_LABELS[k]},{v}\n" for k, v in sizes.items()))
    report = pd.DataFrame(description["fold_report"])
    atomic_write_text(paths["folds"], report.to_csv(index=False))
    cap = settings.get("max_train_per_group")
    sets = ["# What each set holds", "",
            f"- classes: {len(description['spacegroups'])} space groups: {description['spacegroups']}",
            f"- U = ln(V/n_atoms): mean {description['u_mean']:.4f}, sd {description['u_std']:.4f} (volume target = z-score)",
            f"- validation: {settings['n_folds']} disjoint folds from D(σU+η), {settings['per_fold']} per space group each "
            f"(sizes {description['fold_sizes']}); leakage guard ±{settings['leakage_bins']} bins on peaks ≥ "
            f"{settings['peak_threshold']}",
            f"- candidates excluded by the leakage guard: {int(report['excluded_by_leakage_guard'].sum())}",
            f"- groups with incomplete folds: {int((~report['complete']).sum())}",
            "- training set (range r, fold i) = D(r) minus validation fold i"
            + (f", at most {cap} non-validation items per group" if cap else ""),
            ""]
    atomic_write_text(paths["sets"], "\n".join(sets))
    return table2


def write_report(what: str, predictions: list, range_name: str, paths: dict) -> None:
    """One report of ``xtalspec xrd report`` (``what`` a key of :data:`REPORT_FILES`) from the
    members' ``predictions`` (for ``curves``: their history.csv) into ``paths`` (that key's files)."""
    members = [] if what == "curves" else load_predictions(predictions)
    if what == "table3":
        write_table(table3(members, range_name), paths["csv"], paths["md"],
                    f"Table 3: SpgNet / SpgVolNet, specific vs ensemble mean ({range_name})", PAPER_NOTE)
    elif what == "ranges":
        write_table(range_table(members), paths["csv"], paths["md"],
                    "Table SXI: SpgNet by training range (validation on D(σU+η))")
    elif what == "confusion":
        template = str(paths["template"])
        for model in sorted({m["meta"]["model"] for m in members}):
            matrices = confusion_matrices(members, model, range_name)
            labels = members[0]["meta"]["spacegroups"]
            for name, matrix in matrices.items():
                stem = Path(template.format(model=model, label=name))
                atomic_write_text(stem.with_suffix(".csv"), pd.DataFrame(matrix, index=labels, columns=labels).to_csv())
                plot_confusion(matrix, labels, f"{MODEL_LABELS[model]} {name}", stem.with_suffix(".png"))
    elif what == "volume":
        errors = volume_errors(members)
        summary = volume_summary(errors)
        atomic_write_text(paths["errors"], errors.to_csv(index=False))
        atomic_write_text(paths["summary"], json.dumps(summary, indent=2))
        plot_volume(errors, summary, paths["figure"])
    elif what == "curves":
        plot_training_curves(predictions, paths["figure"])
    elif what == "topk":
        for model in sorted({m["meta"]["model"] for m in members}):
            table = top_k_table(members, model, range_name)
            atomic_write_text(Path(str(paths["template"]).format(model=model)), table.to_csv(index=False))
    else:
        raise ValueError(f"unknown xrd report {what!r}")
