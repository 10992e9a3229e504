"""Validation on measured data: run a predictor over a labelled set of measured files.

``LABELS.csv`` lists one file a row (``file``, relative to the CSV's folder, and ``label``: the
space group number for XRD and PDF, T4 / S5 / O6 for XANES) and the options the predictor needs:
``wavelength`` (XRD; ``CuKa``, … or Å), ``peak_list`` (XRD, optional: true/false), ``radiation``
(PDF, optional), ``element`` (XANES). Other columns (compound, notes, …) are carried along.

Every file gets a row: what the predictor ranked first, the rank of the true label (none when it
is not among the ranked classes), whether the true label is one of the model's classes at all,
the crystal system (XRD, PDF: of the top space group, and first in the crystal-system ranking of
summed probabilities), the verdict (XRD, PDF: confident, uncertain or outside; see
:mod:`xtalspec.evaluation.verdicts`), the seconds it took — or the error that stopped it (a file
that cannot be read counts as wrong; it is never left out). The summary gives top-k accuracy over
all files and over the files whose label the model knows, crystal-system accuracy, accuracy
against coverage by verdict (and what the files whose label the model does not know were
called), the errors and the timing. This is how the development set in ``resources/measured``
is scored, and how a user checks xtalspec on their own lab's data.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .crystal_systems import SYSTEMS as _SYSTEMS, crystal_system  # noqa: F401  (re-exported)

KINDS = ("xrd", "pdf", "xanes")
TOP_K = {"xrd": (1, 3, 5), "pdf": (1, 3, 6), "xanes": (1, 2)}


def read_labels(path) -> pd.DataFrame:
    """The rows of a ``LABELS.csv`` (``#`` lines are comments) with ``path`` resolved against its folder."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(line for line in handle if line.strip() and not line.lstrip().startswith("#")))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: a labels file needs the columns 'file' and 'label'")
    frame = pd.DataFrame(rows)
    frame["path"] = [str(p if Path(p).is_absolute() else path.parent / p) for p in frame["file"]]
    return frame


def _truthy(value) -> bool | None:
    text = str(value or "").strip().lower()
    return None if not text else text in ("1", "true", "yes", "y")


def _rank_xrd(row, models):
    from ..prediction.xrd import DEPLOY_MODELS_DIR, predict_pattern

    result = predict_pattern(row["path"], row.get("wavelength") or None, models or DEPLOY_MODELS_DIR, top=10_000,
                             peak_list=_truthy(row.get("peak_list")))
    ranking = result.ranking
    return [int(s) for s in ranking["spacegroup"]], ranking["p_ensemble"].to_numpy(float), _verdict_fields(result)


def _rank_pdf(row, models):
    from ..prediction.pdf import DEFAULT_MODELS_DIR, predict_pdf

    radiation = (row.get("radiation") or "").strip() or None
    result = predict_pdf(row["path"], models or DEFAULT_MODELS_DIR, top=10_000,
                         radiation=radiation if radiation in ("x-ray", "neutron") else None)
    return ([int(s) for s in result.ranking["spacegroup"]], result.ranking["p_mean"].to_numpy(float),
            _verdict_fields(result))


def _rank_xanes(row, models):
    from ..prediction.xanes import DEFAULT_MODELS_DIR, predict_xanes

    result = predict_xanes(row["path"], row["element"], models or DEFAULT_MODELS_DIR)
    table = result.table
    mean = table[[f"p_{c}" for c in result.classes]].to_numpy(float).mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    return [result.classes[i] for i in order], mean[order], {}


def _verdict_fields(result) -> dict:
    """A prediction's verdict, OOD score and the crystal system first in its crystal-system ranking."""
    assessment, systems = result.assessment, result.crystal_systems
    score = assessment.ood_score if assessment is not None else None
    return {"verdict": assessment.verdict if assessment is not None else None,
            "ood_score": np.nan if score is None else score,
            "predicted_system_by_sum": systems["crystal_system"].iloc[0] if systems is not None and len(systems)
            else None}


_RANKERS = {"xrd": _rank_xrd, "pdf": _rank_pdf, "xanes": _rank_xanes}


def _same(a, b, kind: str) -> bool:
    if kind == "xanes":
        return str(a).strip().upper() == str(b).strip().upper()
    try:
        return int(a) == int(b)
    except (TypeError, ValueError):
        return False


def validate(kind: str, labels_path, models=None) -> tuple[pd.DataFrame, dict]:
    """(one row per file, summary) of predictor ``kind`` on the files of ``labels_path``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    labels = read_labels(labels_path)
    rows = []
    for _, row in labels.iterrows():
        record = {"file": row["file"], "label": row["label"], **{k: row[k] for k in row.index
                                                                  if k not in ("file", "label", "path")}}
        start = time.perf_counter()
        extras = {}
        try:
            ranked, probabilities, extras = _RANKERS[kind](row, models)
        except (ValueError, OSError, RuntimeError) as exc:
            record |= {"status": "error", "reason": str(exc).splitlines()[0][:300], "predicted": None,
                       "p_predicted": np.nan, "rank": None, "in_classes": None, "top": ""}
        else:
            hits = [i for i, c in enumerate(ranked) if _same(c, row["label"], kind)]
            record |= {"status": "ok", "reason": "", "predicted": ranked[0], "p_predicted": float(probabilities[0]),
                       "rank": hits[0] + 1 if hits else None, "in_classes": bool(hits),
                       "top": ";".join(str(c) for c in ranked[:6])}
        if kind != "xanes":
            record["system"] = crystal_system(row["label"])
            record["predicted_system"] = crystal_system(record["predicted"])
            record["predicted_system_by_sum"] = extras.get("predicted_system_by_sum")
            record["verdict"] = extras.get("verdict")
            record["ood_score"] = extras.get("ood_score", np.nan)
        record["seconds"] = round(time.perf_counter() - start, 3)
        rows.append(record)
    per_file = pd.DataFrame(rows)
    return per_file, summarise(per_file, kind)


def _accuracy(frame: pd.DataFrame, k: int) -> float | None:
    if not len(frame):
        return None
    ranks = pd.to_numeric(frame["rank"], errors="coerce")
    return float((ranks <= k).sum() / len(frame))


def summarise(per_file: pd.DataFrame, kind: str) -> dict:
    ok = per_file[per_file["status"] == "ok"]
    known = ok[ok["in_classes"].astype(bool)]
    summary = {
        "kind": kind, "n_files": len(per_file), "n_read": len(ok), "n_errors": int((per_file["status"] == "error").sum()),
        "n_label_in_classes": len(known),
        "top_k_all": {k: _accuracy(per_file, k) for k in TOP_K[kind]},
        "top_k_in_classes": {k: _accuracy(known, k) for k in TOP_K[kind]},
        "median_seconds": float(per_file["seconds"].median()) if len(per_file) else None,
    }
    if kind != "xanes":
        same = per_file["system"].notna() & (per_file["system"] == per_file["predicted_system"])
        summary["crystal_system_top1_all"] = float(same.sum() / len(per_file)) if len(per_file) else None
        if "predicted_system_by_sum" in per_file:
            same = per_file["system"].notna() & (per_file["system"] == per_file["predicted_system_by_sum"])
            summary["crystal_system_by_sum_top1_all"] = float(same.sum() / len(per_file)) if len(per_file) else None
    if "verdict" in per_file:
        summary["verdicts"] = verdict_summary(per_file)
    return summary


def verdict_summary(per_file: pd.DataFrame) -> dict:
    """Accuracy against coverage by verdict, over the files that were read: the count and top-1
    accuracy of each verdict, the top-1 accuracy among the confident files and among the
    confident or uncertain ones (with the share of files each covers), and what the files whose
    label is not among the model's classes were called (they should be uncertain or outside)."""
    ok = per_file[per_file["status"] == "ok"]
    verdicts = ok["verdict"].fillna("none")
    top1 = pd.to_numeric(ok["rank"], errors="coerce") == 1

    def accuracy(mask) -> float | None:
        return float(top1[mask].mean()) if mask.any() else None

    confident, answered = verdicts == "confident", verdicts.isin(["confident", "uncertain"])
    unknown = ~ok["in_classes"].astype(bool)
    names = ["confident", "uncertain", "outside"] + sorted(set(verdicts) - {"confident", "uncertain", "outside"})
    return {
        "n_read": len(ok),
        "by_verdict": {v: {"n": int((verdicts == v).sum()), "top1": accuracy(verdicts == v)} for v in names},
        "top1_confident": accuracy(confident),
        "coverage_confident": float(confident.mean()) if len(ok) else None,
        "top1_confident_or_uncertain": accuracy(answered),
        "coverage_confident_or_uncertain": float(answered.mean()) if len(ok) else None,
        "top1_all_read": accuracy(pd.Series(True, index=ok.index)),
        "label_not_in_classes": {"n": int(unknown.sum()),
                                 **{v: int((verdicts[unknown] == v).sum()) for v in names}},
    }


def markdown(per_file: pd.DataFrame, summary: dict) -> str:
    def pct(value):
        return "–" if value is None else f"{100 * value:.0f} %"

    ks = list(summary["top_k_all"])
    lines = [f"# Validation on measured data: {summary['kind']}", "",
             f"{summary['n_files']} files, {summary['n_read']} read, {summary['n_errors']} not read (counted as "
             f"wrong); the true label is among the model's classes for {summary['n_label_in_classes']}.", "",
             "| files | " + " | ".join(f"top-{k}" for k in ks) + " |", "|---|" + "---:|" * len(ks),
             "| all | " + " | ".join(pct(summary["top_k_all"][k]) for k in ks) + " |",
             "| label among the model's classes | " + " | ".join(pct(summary["top_k_in_classes"][k]) for k in ks) + " |"]
    if "crystal_system_top1_all" in summary:
        line = f"Crystal system right (top-1, all files): {pct(summary['crystal_system_top1_all'])}"
        if "crystal_system_by_sum_top1_all" in summary:
            line += (f" from the top space group; {pct(summary['crystal_system_by_sum_top1_all'])} from the "
                     f"crystal-system ranking (summed probabilities)")
        lines += ["", line + "."]
    if summary.get("verdicts"):
        lines += ["", *verdict_markdown(summary["verdicts"])]
    lines += ["", f"Median time per file: {summary['median_seconds']:.2f} s." if summary["median_seconds"] else "", "",
              "| file | label | predicted | rank of the label | verdict | status |", "|---|---|---|---:|---|---|"]
    for _, row in per_file.iterrows():
        rank = "–" if pd.isna(row["rank"]) or row["rank"] is None else int(row["rank"])
        status = row["status"] if row["status"] == "ok" else f"error: {row['reason'][:80]}"
        verdict = row.get("verdict")
        verdict = verdict if isinstance(verdict, str) and verdict else "–"
        lines.append(f"| {row['file']} | {row['label']} | {row['predicted'] if row['predicted'] is not None else '–'} "
                     f"| {rank} | {verdict} | {status} |")
    return "\n".join(lines) + "\n"


def verdict_markdown(verdicts: dict) -> list[str]:
    """The accuracy-against-coverage table of :func:`verdict_summary`."""
    def pct(value):
        return "–" if value is None else f"{100 * value:.0f} %"

    n, by = verdicts["n_read"], verdicts["by_verdict"]
    lines = ["Accuracy against coverage by verdict (files read):", "",
             "| verdict | files | share of files read | top-1 |", "|---|---:|---:|---:|"]
    for name, entry in by.items():
        lines.append(f"| {name} | {entry['n']} | {pct(entry['n'] / n if n else None)} | {pct(entry['top1'])} |")
    lines.append(f"| confident + uncertain | {by['confident']['n'] + by['uncertain']['n']} | "
                 f"{pct(verdicts['coverage_confident_or_uncertain'])} | "
                 f"{pct(verdicts['top1_confident_or_uncertain'])} |")
    unknown = verdicts["label_not_in_classes"]
    if unknown["n"]:
        lines += ["", f"Of the {unknown['n']} files whose label is not among the model's classes, "
                      f"{unknown['uncertain']} were marked uncertain and {unknown['outside']} outside "
                      f"({unknown['confident']} confident)."]
    return lines


def write_validation(per_file: pd.DataFrame, summary: dict, csv_path, md_path, json_path) -> None:
    import json

    from ..utils.atomic import atomic_write_texts

    atomic_write_texts({csv_path: per_file.to_csv(index=False), md_path: markdown(per_file, summary),
                        json_path: json.dumps(summary, indent=1, default=str) + "\n"})
