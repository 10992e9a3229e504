"""XANES reports of Carbone et al. 2019 (Phys. Rev. Materials 3, 033604) from saved test-set
predictions and the spectrum data set (no model is run here): Tables I–III, Figures 2 (spectrum
gallery and PCA insets), 3, 5 and 6, each with the paper's values beside ours where it has them.

Conventions
-----------
* **Class-wise F1** — per evaluation (element, model, features, augmentation, test, perturbation,
  fold), ``F1_c = 2 TP / (2 TP + FP + FN)``, identical to ``sklearn.metrics.f1_score(labels=[c],
  average=None, zero_division=np.nan)``: a class predicted but absent from ``y_true`` (or present
  but never predicted) scores 0; a class absent from both ``y_true`` and ``y_pred`` is undefined
  (NaN) in that fold and left out of every mean (``nanmean`` over folds).
* **Macro F1 of a fold** — the mean of the class-wise F1 over the classes *present in y_true* of
  that fold (so an element without S5 sites is scored on T4 and O6 only; a spurious S5 prediction
  still lowers the T4/O6 precision).
* **Mean ± sd** — mean over folds and the sample standard deviation (ddof = 1) over folds (NaN,
  printed as a bare mean, for a single fold).
* **Averages over elements** (Table II "Average", Table III early/late) — the mean over the
  elements present of their fold means; the sd is that of the per-fold element-averaged values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..spectra.xanes_labels import LABELS as CLASSES
from ..utils.atomic import atomic_path, atomic_write_text

ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
EARLY = ("Ti", "V", "Cr", "Mn")
LATE = ("Fe", "Co", "Ni", "Cu")
GROUPS = {"early": EARLY, "late": LATE}
MODELS = ("mlp", "cnn")
MODEL_LABELS = {"mlp": "MLP", "cnn": "CNN"}
KEYS = ["element", "model", "features", "augmentation", "test", "perturbation", "fold"]
CLASS_COLOURS = {"T4": "#1f77b4", "S5": "#2ca02c", "O6": "#d62728"}
# Fig. 3 shades: CNN darker, MLP lighter.
SHADES = {("T4", "cnn"): "#1a4f8a", ("T4", "mlp"): "#7fb0e0",
          ("S5", "cnn"): "#1b7a1b", ("S5", "mlp"): "#8fd48f",
          ("O6", "cnn"): "#a01818", ("O6", "mlp"): "#f08a8a"}
PAPER = "Carbone et al. 2019, Phys. Rev. Materials 3, 033604"

# Table I: number of sites per class (after duplicate removal) in the paper's data set.
PAPER_TABLE1 = {
    "Ti": {"T4": 271, "S5": 359, "O6": 1562, "Total": 2192},
    "V": {"T4": 948, "S5": 412, "O6": 2006, "Total": 3366},
    "Cr": {"T4": 396, "S5": 121, "O6": 902, "Total": 1419},
    "Mn": {"T4": 502, "S5": 657, "O6": 2334, "Total": 3493},
    "Fe": {"T4": 797, "S5": 319, "O6": 1874, "Total": 2990},
    "Co": {"T4": 583, "S5": 227, "O6": 1428, "Total": 2238},
    "Ni": {"T4": 246, "S5": 163, "O6": 1238, "Total": 1647},
    "Cu": {"T4": 290, "S5": 183, "O6": 366, "Total": 839},
    "Total": {"T4": 4033, "S5": 2441, "O6": 11710, "Total": 18184},
}

# Table II: macro F1 as (mean, sd) keyed by (model, features); "pre" = pre-edge region only.
PAPER_TABLE2 = {
    element: {("mlp", "full"): (a, sa), ("cnn", "full"): (b, sb), ("mlp", "pre"): (c, sc), ("cnn", "pre"): (d, sd)}
    for element, (a, sa, b, sb, c, sc, d, sd) in {
        "Ti": (0.83, 0.02, 0.84, 0.02, 0.73, 0.04, 0.78, 0.03),
        "V": (0.86, 0.01, 0.86, 0.02, 0.77, 0.02, 0.79, 0.03),
        "Cr": (0.87, 0.02, 0.87, 0.03, 0.72, 0.04, 0.75, 0.04),
        "Mn": (0.83, 0.02, 0.85, 0.02, 0.62, 0.04, 0.68, 0.03),
        "Fe": (0.85, 0.02, 0.86, 0.03, 0.57, 0.02, 0.63, 0.03),
        "Co": (0.85, 0.03, 0.87, 0.02, 0.59, 0.03, 0.64, 0.03),
        "Ni": (0.87, 0.01, 0.88, 0.03, 0.61, 0.05, 0.66, 0.04),
        "Cu": (0.86, 0.02, 0.86, 0.02, 0.50, 0.04, 0.64, 0.07),
        "Average": (0.85, 0.01, 0.86, 0.01, 0.64, 0.01, 0.70, 0.01),
    }.items()
}

# Table III: class-wise ΔF1 = F1(full) − F1(pre-edge only), (mean, sd), by group and model.
PAPER_TABLE3 = {
    "early": {"mlp": {"T4": (0.09, 0.03), "S5": (0.30, 0.05), "O6": (0.03, 0.01)},
              "cnn": {"T4": (0.07, 0.03), "S5": (0.22, 0.05), "O6": (0.03, 0.01)}},
    "late": {"mlp": {"T4": (0.21, 0.04), "S5": (0.57, 0.05), "O6": (0.10, 0.01)},
             "cnn": {"T4": (0.16, 0.03), "S5": (0.44, 0.07), "O6": (0.08, 0.01)}},
}

COMBOS = [("mlp", "full"), ("cnn", "full"), ("mlp", "pre"), ("cnn", "pre")]
#: the cross-element models (one-hot element input, trained on all elements; same folds)
CROSS_COMBOS = [("mlp_x", "full"), ("cnn_x", "full")]
COMBO_LABELS = {("mlp", "full"): "MLP", ("cnn", "full"): "CNN", ("mlp", "pre"): "Pre-MLP", ("cnn", "pre"): "Pre-CNN",
                ("mlp_x", "full"): "MLP (all elements)", ("cnn_x", "full"): "CNN (all elements)"}
NOT_COMPUTED = "not computed"


# --------------------------------------------------------------------------- helpers


def _elements(values) -> list[str]:
    """Elements in the paper's order, others (alphabetically) after."""
    values = set(values)
    return [e for e in ELEMENTS if e in values] + sorted(values - set(ELEMENTS))


def _sd(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def paper_str(mean: float, sd: float) -> str:
    """The paper's notation: 0.83(2) = 0.83 ± 0.02."""
    return f"{mean:.2f}({int(round(sd * 100))})"


def ours_str(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.2f} ± {sd:.2f}" if np.isfinite(sd) else f"{mean:.2f}"


def _cell(mean: float, sd: float, paper: tuple[float, float] | None) -> str:
    text = ours_str(mean, sd)
    return text + (f" (paper {paper_str(*paper)})" if paper is not None else "")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _write_table(frame: pd.DataFrame, markdown: str, out_dir, stem: str) -> pd.DataFrame:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / f"{stem}.csv", frame.to_csv(index=False))
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    return frame


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _not_computed(ax, text: str = NOT_COMPUTED) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#888888"})
    ax.set_xticks([])
    ax.set_yticks([])


def _element_colours(elements) -> dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22"]
    order = list(ELEMENTS) + [e for e in _elements(elements) if e not in ELEMENTS]
    return {e: palette[order.index(e) % len(palette)] for e in elements}


def _scores(predictions: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    return classwise_f1(predictions) if scores is None else scores


def _base(scores: pd.DataFrame) -> pd.DataFrame:
    """The Tables II/III evaluations: shift-augmented models on the unperturbed test split."""
    return scores[(scores["augmentation"] == "shift") & (scores["test"] == "base")]


# --------------------------------------------------------------------------- F1


def classwise_f1(predictions: pd.DataFrame) -> pd.DataFrame:
    """Class-wise and macro F1 per (element, model, features, augmentation, test, perturbation,
    fold), with the class supports ``n_T4``… and the number of test spectra ``n``.

    Counted per group (vectorised), equal to ``f1_score(y_true, y_pred, labels=CLASSES,
    average=None, zero_division=np.nan)`` of each group; see the module docstring for the rules.
    """
    columns = KEYS + ["n"] + [f"n_{c}" for c in CLASSES] + [f"f1_{c}" for c in CLASSES] + ["macro_f1"]
    if predictions is None or len(predictions) == 0:
        return pd.DataFrame(columns=columns)
    frame = predictions[KEYS].copy()
    frame["perturbation"] = frame["perturbation"].astype(float).round(6)
    frame["fold"] = frame["fold"].astype(int)
    y_true = predictions["y_true"].astype(str).to_numpy()
    y_pred = predictions["y_pred"].astype(str).to_numpy()
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = sorted(set(np.unique(values)) - set(CLASSES))
        if unknown:
            raise ValueError(f"{name} has labels outside {CLASSES}: {unknown}")
    counts = []
    for c in CLASSES:
        t, p = y_true == c, y_pred == c
        frame[f"tp_{c}"], frame[f"fp_{c}"], frame[f"fn_{c}"] = t & p, ~t & p, t & ~p
        counts += [f"tp_{c}", f"fp_{c}", f"fn_{c}"]
    grouped = frame.groupby(KEYS, sort=True)
    out = grouped[counts].sum().astype(np.int64)
    out["n"] = grouped.size()
    f1 = []
    for c in CLASSES:
        tp, fp, fn = (out[f"{k}_{c}"].to_numpy(dtype=float) for k in ("tp", "fp", "fn"))
        denominator = 2 * tp + fp + fn
        out[f"n_{c}"] = (tp + fn).astype(np.int64)
        out[f"f1_{c}"] = np.divide(2 * tp, denominator, out=np.full_like(tp, np.nan), where=denominator > 0)
        f1.append(np.where(tp + fn > 0, out[f"f1_{c}"].to_numpy(), np.nan))
    out["macro_f1"] = np.nanmean(np.vstack(f1), axis=0)  # every group has at least one class in y_true
    return out.reset_index()[columns]


# --------------------------------------------------------------------------- Table I


def table1(dataset: pd.DataFrame, meta: dict, out_dir) -> pd.DataFrame:
    """Sites per element and class after duplicate removal, with the counts before removal and
    the rejected sites from ``meta``, beside the paper's Table I. Writes xanes_table1.csv/.md."""
    info = (meta or {}).get("elements", {})
    elements = _elements(set(dataset["element"]) | set(info))
    rows = []
    for element in elements:
        part = dataset[dataset["element"] == element]
        counts = part["label"].astype(str).value_counts()
        before = info.get(element, {}).get("n_before_dedup") or {}
        row = {"element": element}
        row.update({c: int(counts.get(c, 0)) for c in CLASSES})
        row["total"] = int(len(part))
        row.update({f"{c}_before_dedup": (int(before[c]) if c in before else np.nan) for c in CLASSES})
        row["total_before_dedup"] = int(sum(before.values())) if before else np.nan
        rejected = info.get(element, {}).get("n_rejected")
        row["n_rejected"] = int(rejected) if rejected is not None else np.nan
        paper = PAPER_TABLE1.get(element, {})
        row.update({f"paper_{c}": paper.get(c, np.nan) for c in CLASSES})
        row["paper_total"] = paper.get("Total", np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    total = {"element": "Total"}
    for column in table.columns[1:]:
        values = table[column]
        total[column] = values.sum() if values.notna().all() else np.nan
    paper_total = PAPER_TABLE1["Total"] if set(ELEMENTS) <= set(elements) else {}
    total.update({f"paper_{c}": paper_total.get(c, np.nan) for c in CLASSES})
    total["paper_total"] = paper_total.get("Total", np.nan)
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)

    def num(value) -> str:
        return "—" if pd.isna(value) else f"{int(value)}"

    def cell(row, ours: str, paper: str) -> str:
        return num(row[ours]) + ("" if pd.isna(row[paper]) else f" (paper {int(row[paper])})")

    lines = [f"# Table I: XANES sites per absorbing element and class ({PAPER})", "",
             "| Element | T4 | S5 | O6 | Total | Total before duplicate removal | Rejected |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for _, row in table.iterrows():
        cells = [cell(row, c, f"paper_{c}") for c in CLASSES] + [cell(row, "total", "paper_total")]
        before = num(row["total_before_dedup"])
        if not pd.isna(row["total_before_dedup"]):
            before += " (" + ", ".join(f"{c} {num(row[f'{c}_before_dedup'])}" for c in CLASSES) + ")"
        lines.append(f"| {row['element']} | " + " | ".join(cells) + f" | {before} | {num(row['n_rejected'])} |")
    lines += ["", "Ours: sites in the data set after duplicate removal (the models' inputs); before removal and "
              "rejected (failed or unusable spectra) from the data set's metadata. The paper's counts are after "
              "duplicate removal; its Total row is shown only when all eight elements are present."]
    return _write_table(table, "\n".join(lines) + "\n", out_dir, "xanes_table1")


# --------------------------------------------------------------------------- Table II


def _element_average(per_fold: pd.DataFrame, value: str) -> tuple[float, float, int]:
    """Mean over elements of their fold means, sd over folds of the element-averaged value."""
    if per_fold.empty:
        return float("nan"), float("nan"), 0
    element_means = per_fold.groupby("element")[value].apply(_mean)
    fold_means = per_fold.groupby("fold")[value].apply(_mean)
    return _mean(element_means), _sd(fold_means), int(element_means.notna().sum())


def table2(predictions: pd.DataFrame, out_dir, scores: pd.DataFrame | None = None,
           statuses: dict | None = None) -> pd.DataFrame:
    """Macro F1 (mean ± sd over folds) per element of MLP / CNN on the full spectrum and on the
    pre-edge region only (shift-augmented models, unperturbed test split), of the cross-element
    MLP / CNN on the same folds (full spectrum), an Average row, and the paper's Table II beside.
    ``scores`` (a :func:`classwise_f1` result) skips recomputing. ``statuses`` {element: why}
    names elements that were not cross-validated ("too few spectra …"): they get a row saying
    so. Writes xanes_table2.csv/.md."""
    base = _base(_scores(predictions, scores))
    statuses = {e: why for e, why in (statuses or {}).items() if why and why != "ok"}
    elements = _elements(set(base["element"].unique()) | set(statuses))
    combos = COMBOS + [c for c in CROSS_COMBOS if (base["model"] == c[0]).any()]
    rows = []
    for element in elements + ["Average"]:
        row = {"element": element, "status": statuses.get(element, "ok") if element != "Average" else ""}
        for model, features in combos:
            part = base[(base["model"] == model) & (base["features"] == features)]
            prefix = f"{model}_{features}"
            if element == "Average":
                mean, sd, n = _element_average(part, "macro_f1")
                row[f"{prefix}_n_elements"] = n
            else:
                values = part[part["element"] == element]["macro_f1"]
                mean, sd = _mean(values), _sd(values)
                row[f"{prefix}_n_folds"] = int(values.notna().sum())
            paper = PAPER_TABLE2.get(element, {}).get((model, features))
            row.update({f"{prefix}_mean": mean, f"{prefix}_sd": sd,
                        f"{prefix}_paper": paper[0] if paper else np.nan,
                        f"{prefix}_paper_sd": paper[1] if paper else np.nan})
        rows.append(row)
    table = pd.DataFrame(rows)
    lines = [f"# Table II: macro F1 per absorbing element ({PAPER})", "",
             "| Element | " + " | ".join(COMBO_LABELS[c] for c in combos) + " |", "|---|" + "---:|" * len(combos)]
    for _, row in table.iterrows():
        cells = []
        for model, features in combos:
            prefix = f"{model}_{features}"
            paper = PAPER_TABLE2.get(row["element"], {}).get((model, features))
            if row["status"] not in ("ok", "") and not np.isfinite(row[f"{prefix}_mean"]):
                cells.append(row["status"] + (f" (paper {paper_str(*paper)})" if paper else ""))
            else:
                cells.append(_cell(row[f"{prefix}_mean"], row[f"{prefix}_sd"], paper))
        lines.append(f"| {row['element']} | " + " | ".join(cells) + " |")
    scored = _elements(base["element"].unique())
    lines += ["", "Ours: mean ± sd (ddof 1) over bootstrap folds of the macro F1 on each fold's test split "
              "(models trained with energy-shift augmentation, unshifted test spectra). Macro F1 of a fold = mean "
              "class-wise F1 over the classes present in that fold's test labels. Pre-: the pre-edge region only.",
              f"Average: mean over the {len(scored)} element(s) scored ({', '.join(scored) or 'none'}); sd over "
              "folds of the element-averaged macro F1. The paper's Average is over all eight elements."]
    if any(c in combos for c in CROSS_COMBOS):
        lines += ["", "(all elements): one MLP / CNN for every element, the absorbing element a one-hot input beside "
                  "the spectrum (all on the same E − E0 grid), trained on the union of the per-element training "
                  "splits of each fold and scored on each element's test split of that fold — the same folds as the "
                  "per-element models. The paper has no such model."]
    if statuses:
        lines += ["", "Not cross-validated: " + "; ".join(f"{e}: {why}" for e, why in sorted(statuses.items()))
                  + " (their spectra still train the cross-element models)."]
    return _write_table(table, "\n".join(lines) + "\n", out_dir, "xanes_table2")


# --------------------------------------------------------------------------- Table III


def _deltas(base: pd.DataFrame) -> pd.DataFrame:
    """Per (element, model, fold): class-wise F1(full) − F1(pre), NaN where either is undefined."""
    index = ["element", "model", "fold"]
    columns = [f"f1_{c}" for c in CLASSES]
    full = base[base["features"] == "full"][index + columns]
    pre = base[base["features"] == "pre"][index + columns]
    delta = full.merge(pre, on=index, how="inner", suffixes=("_full", "_pre"))
    out = delta[index].copy()
    for c in CLASSES:
        out[c] = delta[f"f1_{c}_full"] - delta[f"f1_{c}_pre"]
    return out


def table3(predictions: pd.DataFrame, out_dir, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Class-wise ΔF1 = F1(full spectrum) − F1(pre-edge only) per model, per element and averaged
    over the early (Ti–Mn) and late (Fe–Cu) elements present, beside the paper's Table III.
    Deltas are taken per fold, averaged over folds (NaN folds skipped) and then over elements;
    the sd is over folds (of the element-averaged delta for the groups). One row per (level,
    group, model, class) with level "group" (early/late) or "element". Writes xanes_table3.csv/.md."""
    deltas = _deltas(_base(_scores(predictions, scores)))
    rows = []
    for group, members in GROUPS.items():
        for model in MODELS:
            part = deltas[(deltas["model"] == model) & deltas["element"].isin(members)]
            present = _elements(part["element"].unique())
            for c in CLASSES:
                mean, sd, n = _element_average(part[["element", "fold", c]], c)
                paper = PAPER_TABLE3[group][model][c]
                rows.append({"level": "group", "group": group, "model": model, "class": c, "delta_mean": mean,
                             "delta_sd": sd, "n_elements": n, "n_folds": int(part["fold"].nunique()),
                             "elements": " ".join(present), "paper": paper[0], "paper_sd": paper[1]})
    for element in _elements(deltas["element"].unique()):
        for model in MODELS:
            part = deltas[(deltas["model"] == model) & (deltas["element"] == element)]
            if part.empty:
                continue
            group = "early" if element in EARLY else "late" if element in LATE else "other"
            for c in CLASSES:
                rows.append({"level": "element", "group": group, "model": model, "class": c,
                             "delta_mean": _mean(part[c]), "delta_sd": _sd(part[c]),
                             "n_elements": 1, "n_folds": int(part[c].notna().sum()), "elements": element,
                             "paper": np.nan, "paper_sd": np.nan})
    table = pd.DataFrame(rows)

    def cells(level_rows: pd.DataFrame, with_paper: bool) -> list[str]:
        out = []
        for model in MODELS:
            for c in CLASSES:
                hit = level_rows[(level_rows["model"] == model) & (level_rows["class"] == c)]
                if hit.empty:
                    out.append("—")
                    continue
                r = hit.iloc[0]
                out.append(_cell(r["delta_mean"], r["delta_sd"],
                                 (r["paper"], r["paper_sd"]) if with_paper else None))
        return out

    head = ("| {} | " + " | ".join(f"pre-{MODEL_LABELS[m]} {c}" for m in MODELS for c in CLASSES) + " |")
    rule = "|---|" + "---:|" * (len(MODELS) * len(CLASSES))
    lines = [f"# Table III: class-wise ΔF1 = F1(full spectrum) − F1(pre-edge only) ({PAPER})", "",
             head.format("Elements"), rule]
    groups = table[table["level"] == "group"]
    for group in GROUPS:
        part = groups[groups["group"] == group]
        present = part["elements"].iloc[0] if len(part) else ""
        label = f"{group.capitalize()} ({present.replace(' ', ', ') or 'none present'})"
        lines.append(f"| {label} | " + " | ".join(cells(part, True)) + " |")
    per_element = table[table["level"] == "element"]
    if len(per_element):
        lines += ["", "Per element:", "", head.format("Element"), rule]
        for element in _elements(per_element["elements"].unique()):
            part = per_element[per_element["elements"] == element]
            lines.append(f"| {element} | " + " | ".join(cells(part, False)) + " |")
    lines += ["", "Ours: per fold the class-wise F1 with the full spectrum minus that with the pre-edge region only "
              "(same fold, shift-augmented models, unshifted test spectra); mean over folds (folds where the class "
              "is absent from both labels and predictions skipped), then over the group's elements present; sd "
              "(ddof 1) over folds of the element-averaged delta. Early: Ti, V, Cr, Mn; late: Fe, Co, Ni, Cu. "
              "Positive: the full spectrum helps."]
    return _write_table(table, "\n".join(lines) + "\n", out_dir, "xanes_table3")


# --------------------------------------------------------------------------- Figure 3


def _figure3_data(base: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (element, model), part in base.groupby(["element", "model"]):
        full, pre = part[part["features"] == "full"], part[part["features"] == "pre"]
        for c in CLASSES:
            rows.append({"element": element, "model": model, "class": c,
                         "full_mean": _mean(full[f"f1_{c}"]), "full_sd": _sd(full[f"f1_{c}"]),
                         "pre_mean": _mean(pre[f"f1_{c}"]), "pre_sd": _sd(pre[f"f1_{c}"]),
                         "n_folds_full": int(full[f"f1_{c}"].notna().sum()),
                         "n_folds_pre": int(pre[f"f1_{c}"].notna().sum())})
    return pd.DataFrame(rows, columns=["element", "model", "class", "full_mean", "full_sd", "pre_mean", "pre_sd",
                                       "n_folds_full", "n_folds_pre"])


def figure3(predictions: pd.DataFrame, path, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper Fig. 3: class-wise F1 per element, CNN (dark) and MLP (light) bars side by side for
    T4 (blue), S5 (green), O6 (red); bar = full spectrum (error bar: sd over folds), gray bar on
    top = pre-edge region only. Returns the plotted means/sds."""
    plt = _pyplot()
    data = _figure3_data(_base(_scores(predictions, scores)))
    elements = _elements(data["element"].unique())
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(elements) + 1.5), 4.2))
    if data.empty:
        _not_computed(ax, "Figure 3: " + NOT_COMPUTED + " (no shift-augmented base-test predictions)")
    width = 0.8
    slots = [(c, m) for c in CLASSES for m in ("cnn", "mlp")]
    step = len(slots) + 1.5
    for i, element in enumerate(elements):
        for k, (c, model) in enumerate(slots):
            hit = data[(data["element"] == element) & (data["model"] == model) & (data["class"] == c)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            x = i * step + k
            if np.isfinite(r["full_mean"]):
                ax.bar(x, r["full_mean"], width, color=SHADES[(c, model)], edgecolor="black", linewidth=0.3,
                       yerr=r["full_sd"] if np.isfinite(r["full_sd"]) else None,
                       error_kw={"elinewidth": 0.8, "capsize": 2}, zorder=2)
            if np.isfinite(r["pre_mean"]):
                ax.bar(x, r["pre_mean"], width * 0.55, color="#7f7f7f", alpha=0.75, zorder=3)
    if elements:
        ax.set_xticks([i * step + (len(slots) - 1) / 2 for i in range(len(elements))], elements)
        ax.set_xlim(-1, (len(elements) - 1) * step + len(slots))
    from matplotlib.patches import Patch

    handles = [Patch(color=SHADES[(c, m)], label=f"{c} {MODEL_LABELS[m]}") for c in CLASSES for m in ("cnn", "mlp")]
    handles.append(Patch(color="#7f7f7f", alpha=0.75, label="pre-edge only"))
    if not data.empty:
        ax.legend(handles=handles, fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("class-wise F1")
    ax.set_title("Fig. 3: F1 per class, full spectrum (bars ± sd over folds) vs pre-edge only (gray)",
                 fontsize=9, pad=40 if not data.empty else 6)
    fig.tight_layout()
    _save(fig, path)
    return data


# --------------------------------------------------------------------------- Figures 5 and 6


def _sweep_data(scores: pd.DataFrame, test: str) -> pd.DataFrame:
    part = scores[(scores["features"] == "full") & (scores["test"] == test)]
    rows = []
    for (model, augmentation, element, value), g in part.groupby(["model", "augmentation", "element", "perturbation"]):
        rows.append({"test": test, "model": model, "augmentation": augmentation, "element": element,
                     "perturbation": value, "macro_f1_mean": _mean(g["macro_f1"]), "macro_f1_sd": _sd(g["macro_f1"]),
                     "n_folds": len(g)})
    return pd.DataFrame(rows, columns=["test", "model", "augmentation", "element", "perturbation", "macro_f1_mean",
                                       "macro_f1_sd", "n_folds"])


def _sweep_figure(data: pd.DataFrame, augmentations: tuple[str, str], column_titles: tuple[str, str],
                  xlabel: str, title: str, path) -> None:
    plt = _pyplot()
    elements = _elements(data["element"].unique())
    colours = _element_colours(elements)
    band = 0.12 if len(elements) <= 3 else 0.06
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), squeeze=False)
    for row, model in enumerate(MODELS):
        for col, augmentation in enumerate(augmentations):
            ax = axes[row, col]
            part = data[(data["model"] == model) & (data["augmentation"] == augmentation)]
            ax.set_title(f"{MODEL_LABELS[model]}, {column_titles[col]}", fontsize=9)
            if part.empty:
                _not_computed(ax)
                continue
            for element in elements:
                line = part[part["element"] == element].sort_values("perturbation")
                if line.empty:
                    continue
                x, y, s = line["perturbation"], line["macro_f1_mean"], line["macro_f1_sd"].fillna(0)
                ax.plot(x, y, "o-", ms=3, lw=1.2, color=colours[element], label=element)
                ax.fill_between(x, y - s, y + s, color=colours[element], alpha=band, lw=0)
            ax.set_ylim(0, 1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("macro F1")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def figure5(predictions: pd.DataFrame, path, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper Fig. 5: macro F1 (mean over folds, band ± sd) vs the energy shift ΔE of the test
    spectra; rows MLP / CNN, columns trained with / without shift augmentation; one line per
    element. Returns the plotted values."""
    data = _sweep_data(_scores(predictions, scores), "shift")
    _sweep_figure(data, ("shift", "none"), ("trained with shift augmentation", "trained without augmentation"),
                  "test energy shift ΔE (eV)", "Fig. 5: robustness to an energy shift of the test spectra", path)
    return data


def figure6(predictions: pd.DataFrame, path, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper Fig. 6: macro F1 vs the Gaussian noise σ added to the test spectra; rows MLP / CNN,
    columns trained with (σ = 0.03) / without noise augmentation; one line per element."""
    data = _sweep_data(_scores(predictions, scores), "noise")
    _sweep_figure(data, ("noise", "none"), ("trained with noise augmentation (σ = 0.03)",
                                            "trained without augmentation"),
                  "test noise σ", "Fig. 6: robustness to noise on the test spectra", path)
    return data


# --------------------------------------------------------------------------- Figure 2


def _spectra(dataset: pd.DataFrame, element: str) -> tuple[np.ndarray, np.ndarray]:
    part = dataset[dataset["element"] == element]
    if part.empty:
        return np.empty((0, 0)), np.empty(0, dtype=object)
    mu = np.stack([np.asarray(m, dtype=float) for m in part["mu"]])
    return mu, part["label"].astype(str).to_numpy()


def _pre_edge_index(meta: dict, element: str, n_points: int) -> int | None:
    value = (meta or {}).get("elements", {}).get(element, {}).get("pre_edge_index")
    return None if value is None else int(min(max(int(value), 0), n_points))


def _grid(meta: dict, element: str, n_points: int) -> tuple[np.ndarray, bool]:
    grid = (meta or {}).get("elements", {}).get(element, {}).get("grid")
    if grid is not None and len(grid) == n_points:
        return np.asarray(grid, dtype=float), True
    return np.arange(n_points, dtype=float), False


def _class_order(labels: np.ndarray) -> list[str]:
    """Most abundant class first, so minority classes are drawn on top."""
    counts = {c: int((labels == c).sum()) for c in CLASSES}
    return sorted((c for c in CLASSES if counts[c]), key=lambda c: -counts[c])


def _class_legend(ax, **kwargs) -> None:
    """Legend with the classes in T4, S5, O6 order (they are drawn most abundant first)."""
    handles, labels = ax.get_legend_handles_labels()
    rank = {c: i for i, c in enumerate(CLASSES)}
    order = sorted(range(len(labels)), key=lambda i: rank.get(labels[i].split(" ")[0], len(CLASSES)))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], **kwargs)


def _pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    n = min(2, x.shape[0], x.shape[1]) if x.ndim == 2 else 0
    if n < 1 or x.shape[0] < 2:
        return np.empty((len(x), 0)), np.empty(0)
    pca = PCA(n_components=n).fit(x)
    return pca.transform(x), pca.explained_variance_ratio_


def figure_pca(dataset: pd.DataFrame, meta: dict, path, csv_path=None) -> pd.DataFrame:
    """Paper Fig. 2 insets: per element a 2-component PCA (fitted on that element's max-scaled
    spectra, centred, not standardised) of the full spectra and of the pre-edge region (the first
    ``pre_edge_index`` points), scattered by class. Returns and writes (``csv_path``, default
    ``<path stem>_explained_variance.csv``) the explained-variance ratios."""
    plt = _pyplot()
    elements = _elements(dataset["element"].unique())
    ncols = max(1, min(4, len(elements)))
    blocks = max(1, math.ceil(len(elements) / ncols))
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=(3.2 * ncols, 5.6 * blocks), squeeze=False)
    rows = []
    for i, element in enumerate(elements):
        mu, labels = _spectra(dataset, element)
        cut = _pre_edge_index(meta, element, mu.shape[1])
        regions = [("full", mu), ("pre_edge", mu[:, :cut] if cut is not None else None)]
        for r, (region, x) in enumerate(regions):
            ax = axes[2 * (i // ncols) + r, i % ncols]
            title = f"{element}, {'full spectrum' if region == 'full' else 'pre-edge region'}"
            if x is None:
                ax.set_title(title, fontsize=9)
                _not_computed(ax, "no pre_edge_index in meta")
                continue
            scores, ratio = _pca(x)
            rows.append({"element": element, "region": region, "n_spectra": int(x.shape[0]),
                         "n_points": int(x.shape[1]),
                         "pc1": float(ratio[0]) if len(ratio) > 0 else np.nan,
                         "pc2": float(ratio[1]) if len(ratio) > 1 else np.nan})
            if scores.shape[1] == 0:
                ax.set_title(title, fontsize=9)
                _not_computed(ax, "too few spectra / points for PCA")
                continue
            if scores.shape[1] == 1:
                scores = np.column_stack([scores[:, 0], np.zeros(len(scores))])
            for c in _class_order(labels):
                sel = labels == c
                ax.scatter(scores[sel, 0], scores[sel, 1], s=4, alpha=0.5, color=CLASS_COLOURS[c],
                           label=f"{c} ({int(sel.sum())})", lw=0)
            ax.set_title(f"{title} ({x.shape[1]} pts)", fontsize=9)
            ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f} %)", fontsize=8)
            ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f} %)" if len(ratio) > 1 else "PC2 (—)", fontsize=8)
            ax.tick_params(labelsize=7)
            _class_legend(ax, fontsize=6, markerscale=2)
    for j in range(len(elements), ncols * blocks):
        for r in range(2):
            axes[2 * (j // ncols) + r, j % ncols].axis("off")
    if not elements:
        _not_computed(axes[0, 0], "no spectra")
    fig.suptitle("Fig. 2 insets: PCA of the spectra per element (T4 blue, S5 green, O6 red)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    table = pd.DataFrame(rows, columns=["element", "region", "n_spectra", "n_points", "pc1", "pc2"])
    path = Path(path)
    csv_path = Path(csv_path) if csv_path is not None else path.with_name(f"{path.stem}_explained_variance.csv")
    atomic_write_text(csv_path, table.to_csv(index=False))
    return table


def figure_gallery(dataset: pd.DataFrame, meta: dict, path) -> pd.DataFrame:
    """Paper Fig. 2: per element all spectra vs energy, coloured by class with opacity ∝ 1/count
    of the class (clipped to [0.01, 0.8]), the class means as thick lines and the pre-edge cutoff
    as a dashed vertical line. Returns per element and class the count and the opacity used."""
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    elements = _elements(dataset["element"].unique())
    ncols = max(1, min(4, len(elements)))
    nrows = max(1, math.ceil(len(elements) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    rows = []
    for i, element in enumerate(elements):
        ax = axes[i // ncols, i % ncols]
        mu, labels = _spectra(dataset, element)
        grid, absolute = _grid(meta, element, mu.shape[1])
        for c in _class_order(labels):
            sel = mu[labels == c]
            alpha = float(np.clip(10.0 / len(sel), 0.01, 0.8))
            rows.append({"element": element, "class": c, "count": int(len(sel)), "alpha": alpha})
            segments = np.stack([np.broadcast_to(grid, sel.shape), sel], axis=-1)
            ax.add_collection(LineCollection(segments, colors=CLASS_COLOURS[c], alpha=alpha, linewidths=0.6))
            ax.plot(grid, sel.mean(axis=0), color=CLASS_COLOURS[c], lw=1.8, label=f"{c} ({len(sel)})")
        cut = _pre_edge_index(meta, element, mu.shape[1])
        if cut is not None and 0 < cut < len(grid):
            ax.axvline(0.5 * (grid[cut - 1] + grid[cut]), color="black", ls="--", lw=1, label="pre-edge cutoff")
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(min(0.0, float(mu.min())) if mu.size else 0.0, 1.05)
        ax.set_title(f"{element} K-edge ({len(mu)} spectra)", fontsize=9)
        relative = bool((meta or {}).get("elements", {}).get(element, {}).get("grid_relative"))
        ax.set_xlabel(("E − E0 (eV)" if relative else "energy (eV)") if absolute else "grid index", fontsize=8)
        ax.set_ylabel("μ (scaled to max 1)", fontsize=8)
        ax.tick_params(labelsize=7)
        _class_legend(ax, fontsize=6, loc="lower right")
    for j in range(len(elements), nrows * ncols):
        axes[j // ncols, j % ncols].axis("off")
    if not elements:
        _not_computed(axes[0, 0], "no spectra")
    fig.suptitle("Fig. 2: XANES spectra per element (opacity ∝ 1 / class count; thick: class mean)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return pd.DataFrame(rows, columns=["element", "class", "count", "alpha"])


# --------------------------------------------------------------------------- everything


def summary(scores: pd.DataFrame) -> dict:
    """Our average macro F1 (MLP / CNN, full / pre) beside the paper's Table II Average."""
    base = _base(scores)
    out = {}
    for model, features in COMBOS + CROSS_COMBOS:
        part = base[(base["model"] == model) & (base["features"] == features)]
        if part.empty and (model, features) in CROSS_COMBOS:
            continue
        mean, sd, n = _element_average(part, "macro_f1")
        paper = PAPER_TABLE2["Average"].get((model, features), (np.nan, np.nan))
        out[f"{model}_{features}"] = {"ours": mean, "ours_sd": sd, "n_elements": n,
                                      "elements": _elements(part["element"].unique()),
                                      "n_folds": int(part["fold"].nunique()), "paper": paper[0], "paper_sd": paper[1]}
    return out


def write_all(predictions: pd.DataFrame, dataset: pd.DataFrame, meta: dict, tables_dir, figures_dir,
              provenance: dict, statuses: dict | None = None) -> dict:
    """All tables (CSV + Markdown) and figures (PNG), the per-fold scores and the figures' data
    as CSV, and ``xanes_summary.json`` (average macro F1 beside the paper's, provenance, files).
    ``statuses``: {element: why} of elements that were not cross-validated. Returns the summary."""
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    scores = classwise_f1(predictions)
    written = []

    def table(name: str, frame: pd.DataFrame) -> None:
        atomic_write_text(tables_dir / name, frame.to_csv(index=False))
        written.append(tables_dir / name)

    table("xanes_classwise_f1.csv", scores)
    table1(dataset, meta, tables_dir)
    table2(predictions, tables_dir, scores=scores, statuses=statuses)
    table3(predictions, tables_dir, scores=scores)
    written += [tables_dir / f"xanes_table{k}.{ext}" for k in (1, 2, 3) for ext in ("csv", "md")]
    table("xanes_fig3_classwise.csv", figure3(predictions, figures_dir / "xanes_fig3_f1.png", scores=scores))
    table("xanes_fig5_shift.csv", figure5(predictions, figures_dir / "xanes_fig5_shift.png", scores=scores))
    table("xanes_fig6_noise.csv", figure6(predictions, figures_dir / "xanes_fig6_noise.png", scores=scores))
    figure_pca(dataset, meta, figures_dir / "xanes_fig2_pca.png", csv_path=tables_dir / "xanes_pca_variance.csv")
    written.append(tables_dir / "xanes_pca_variance.csv")
    table("xanes_fig2_gallery.csv", figure_gallery(dataset, meta, figures_dir / "xanes_fig2_gallery.png"))
    written += [figures_dir / name for name in ("xanes_fig3_f1.png", "xanes_fig5_shift.png", "xanes_fig6_noise.png",
                                                "xanes_fig2_pca.png", "xanes_fig2_gallery.png")]
    result = {"paper": PAPER, "average_macro_f1": summary(scores), "not_cross_validated": statuses or {},
              "tests_present": sorted(scores["test"].unique().tolist()),
              "f1_rules": "class-wise F1 = 2TP/(2TP+FP+FN), NaN (skipped) for a class absent from labels and "
                          "predictions of a fold; macro F1 = mean over the classes present in the fold's labels; "
                          "sd over folds with ddof 1",
              "provenance": provenance, "files": sorted(str(p) for p in written)}
    result = _json_safe(result)
    atomic_write_text(tables_dir / "xanes_summary.json", json.dumps(result, indent=2) + "\n")
    return result
