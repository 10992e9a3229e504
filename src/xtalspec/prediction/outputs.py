"""What predict-xrd and predict-pdf print and write beside the space-group ranking: the
crystal-system ranking and the verdict (:mod:`xtalspec.evaluation.verdicts`), in the text, the
ranking CSV (``crystal_system``, ``verdict``, ``ood_score`` columns), a crystal-system CSV beside
it and a JSON document."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..evaluation.crystal_systems import crystal_system
from ..evaluation.verdicts import Assessment, forward_with_features, member_temperature
from ..evaluation.verdicts import ood_score as _ood_score


def member_probabilities(logits: torch.Tensor, meta: dict) -> np.ndarray:
    """One item's softmax(logits / T), T the checkpoint's temperature (none: T = 1)."""
    t = member_temperature(meta)
    return torch.softmax(logits / t if t else logits, dim=1)[0].numpy()


def outputs_and_score(model, x: torch.Tensor, meta: dict, source=None) -> tuple[dict, float | None]:
    """The model's outputs and, when its checkpoint (``source``) holds an OOD reference, the input's
    OOD score (penultimate features from the same pass)."""
    reference = meta.get("ood_reference")
    if not reference:
        return model(x), None
    out, features = forward_with_features(model, x)
    try:
        score = float(_ood_score(features, reference)[0])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{source or 'a model'}: its out-of-distribution reference cannot be used "
                         f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    return out, score


def with_crystal_system(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking with each space group's ``crystal_system`` beside it."""
    ranking = ranking.copy()
    ranking.insert(list(ranking.columns).index("spacegroup") + 1, "crystal_system",
                   [crystal_system(g) for g in ranking["spacegroup"]])
    return ranking


def verdict_lines(systems: pd.DataFrame | None, assessment: Assessment | None, top: int = 3) -> list[str]:
    """The crystal-system top ``top`` and the verdict, as printed after the ranking."""
    lines = []
    if systems is not None and len(systems):
        best = ", ".join(f"{row.crystal_system} {row.probability:.3f}" for row in systems.head(top).itertuples())
        lines.append(f"crystal systems (sum of their space groups' probabilities): {best}")
    if assessment is not None:
        temperatures = [t for t in assessment.temperatures if t is not None]
        if temperatures:
            shown = sorted({round(t, 3) for t in temperatures})
            lines.append("probabilities calibrated on held-out simulated data (temperature "
                         + ", ".join(f"{t:g}" for t in shown) + ")")
        lines.append(assessment.line)
        lines += [f"note: {note}" for note in assessment.notes if note not in assessment.reason]
    return lines


def ranking_csv(ranking: pd.DataFrame, assessment: Assessment | None) -> pd.DataFrame:
    """The ranking as written: with the verdict and OOD score of the prediction on every row."""
    frame = ranking.copy()
    if assessment is not None:
        frame["verdict"] = assessment.verdict
        frame["ood_score"] = np.nan if assessment.ood_score is None else assessment.ood_score
    return frame


def output_paths(out=None, json_path=None) -> dict[str, Path]:
    """The files a prediction writes: the ranking CSV ``out``, the crystal-system CSV beside it
    (``<stem>_crystal_systems.csv``) and the JSON document (``json_path``, else ``<stem>.json``
    beside ``out``); nothing without ``out`` and ``json_path``."""
    paths = {}
    if out is not None:
        out = Path(out)
        paths["csv"] = out
        paths["systems"] = out.with_name(f"{out.stem}_crystal_systems.csv")
        if json_path is None:
            json_path = out.with_suffix(".json") if out.suffix.lower() != ".json" else out.with_name(
                f"{out.stem}.prediction.json")
    if json_path is not None:
        paths["json"] = Path(json_path)
    return paths


def _plain(value):
    """JSON-safe: NaN and ±inf become null, numpy scalars Python numbers, tensors lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def frame_records(frame: pd.DataFrame | None) -> list[dict]:
    return [] if frame is None else _plain(frame.to_dict(orient="records"))


def json_text(document: dict) -> str:
    return json.dumps(_plain(document), indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def write_outputs(ranking: pd.DataFrame, systems: pd.DataFrame | None, document: dict, out=None,
                  json_path=None) -> dict[str, Path]:
    """Write the ranking CSV, the crystal-system CSV and the JSON document as one (all or none)."""
    from ..utils.atomic import atomic_write_texts

    paths = output_paths(out, json_path)
    texts = {}
    if "csv" in paths:
        texts[paths["csv"]] = ranking.to_csv(index=False)
        texts[paths["systems"]] = (systems if systems is not None else pd.DataFrame()).to_csv(index=False)
    if "json" in paths:
        texts[paths["json"]] = json_text(document)
    if texts:
        atomic_write_texts(texts)
    return paths
