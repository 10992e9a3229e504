"""Know when not to answer: a crystal-system ranking, an out-of-distribution score and a verdict
per prediction.

* **Crystal-system ranking** — the probability of a crystal system is the sum of the (calibrated,
  ensemble-mean) probabilities of the model's space groups in it; a model unsure between
  P4/mmm and P4/mbm is still sure the crystal is tetragonal.
* **Out-of-distribution score** — the distance, in the model's penultimate feature space (the
  input of the last Linear layer), from an input to its k-th nearest neighbour in a stored sample
  of training features (after Sun et al. 2022, "Out-of-distribution detection with deep nearest
  neighbors", but by default without their L2 normalisation, see :func:`ood_reference`): the
  features are projected on their leading principal components (plus the norm of what the
  projection leaves out, so that a feature vector off that subspace still moves away), and the
  distance is divided by the 95th percentile of the same distance for
  held-out training items. A score near or below 1 is like the training data; the outside
  threshold is a stated quantile (99 %) of the scores of held-out simulated (validation) items.
  With an ensemble, the score is the mean of the members' scores (each member has its own feature
  space and reference).
* **Verdict** — ``outside`` when the OOD score is above the outside threshold (the input is unlike
  anything the model was trained on; its ranking means little), else ``confident`` when the
  calibrated top-1 probability is at least the confidence threshold — the lowest threshold at
  which, on held-out simulated data, the predictions above it were right at least
  ``target_accuracy`` (90 %) of the time (the largest coverage at that accuracy) — else
  ``uncertain``. A model without calibration in its checkpoint gets ``uncertain``, with the note
  "model has no calibration".

:func:`calibrate_members` does all of the fitting in one call for a training script:
temperature, references, thresholds, ECE before and after, reliability tables;
:func:`member_meta` gives the entries to store in member ``i``'s checkpoint ``meta``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .calibration import (ensemble_probabilities, expected_calibration_error, fit_temperature,
                          negative_log_likelihood, reliability_table, _labels_array, _logits_array)
from .crystal_systems import SYSTEM_NAMES, crystal_system

VERDICTS = ("confident", "uncertain", "outside")
NO_CALIBRATION = "model has no calibration"
REFERENCE_METHOD = "knn-penultimate-v1"


# --------------------------------------------------------------------------- crystal systems

def crystal_system_probabilities(spacegroups: Sequence, probs) -> tuple[list[str], np.ndarray]:
    """(system names, (…, systems) summed probabilities) for probabilities over ``spacegroups``
    (last axis). Only systems with at least one of the model's classes are listed, in order of
    increasing symmetry; a class that is not a space-group number counts as "unknown"."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[-1] != len(spacegroups):
        raise ValueError(f"{probs.shape[-1]} probabilities for {len(spacegroups)} space groups")
    systems = [crystal_system(g) or "unknown" for g in spacegroups]
    names = [s for s in (*SYSTEM_NAMES, "unknown") if s in systems]
    matrix = np.zeros((len(spacegroups), len(names)))
    matrix[np.arange(len(spacegroups)), [names.index(s) for s in systems]] = 1.0
    return names, probs @ matrix


def crystal_system_ranking(spacegroups: Sequence, probs) -> pd.DataFrame:
    """The crystal systems ranked by the sum of their space groups' probabilities: ``rank``,
    ``crystal_system``, ``probability``, ``n_spacegroups`` (the model's classes in it) and
    ``top_spacegroup`` (its most probable space group). ``probs``: one item's (classes,)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1:
        raise ValueError("crystal_system_ranking takes one item's probabilities (classes,)")
    names, summed = crystal_system_probabilities(spacegroups, probs)
    systems = np.array([crystal_system(g) or "unknown" for g in spacegroups])
    order = np.argsort(-summed, kind="stable")
    rows = []
    for rank, j in enumerate(order, 1):
        members = np.flatnonzero(systems == names[j])
        best = members[np.argmax(probs[members])]
        rows.append({"rank": rank, "crystal_system": names[j], "probability": float(summed[j]),
                     "n_spacegroups": len(members), "top_spacegroup": spacegroups[best]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- features

def forward_with_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The model's outputs and its penultimate features (the input of the last Linear layer that
    makes the logits) from one forward pass. Models with ``forward_features`` (SpgNet, SpgVolNet,
    PDFNet) use it; any other model gets a hook on the last Linear of its ``classifier`` (or, without
    one, its last Linear)."""
    if hasattr(model, "forward_features"):
        return model.forward_features(x)
    holder = model.classifier if isinstance(getattr(model, "classifier", None), torch.nn.Module) else model
    linears = [m for m in holder.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise TypeError(f"{type(model).__name__} has no Linear layer to take penultimate features from")
    captured = []
    handle = linears[-1].register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    try:
        out = model(x)
    finally:
        handle.remove()
    return out, captured[-1]


def feature_extractor(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function input batch → penultimate features (n, width) of ``model``."""
    return lambda x: forward_with_features(model, x)[1]


# --------------------------------------------------------------------------- out-of-distribution score

def _features(features) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        f = features.detach().to("cpu", torch.float32)
    else:
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if f.ndim == 1:
        f = f[None]
    if f.ndim != 2:
        raise ValueError(f"features must be (items, width); got shape {tuple(f.shape)}")
    if not torch.isfinite(f).all():
        raise ValueError("features contain non-finite values")
    return f


def _l2(f: torch.Tensor) -> torch.Tensor:
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _project(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    centred = x - mean
    z = centred @ components.T
    residual = (centred - z @ components).norm(dim=1, keepdim=True)
    return torch.cat([z, residual], dim=1)


def _kth_distance(query: torch.Tensor, reference: torch.Tensor, k: int, exclude_self: bool = False,
                  chunk: int = 1024) -> torch.Tensor:
    k = min(k, len(reference) - (1 if exclude_self else 0))
    out = []
    for start in range(0, len(query), chunk):
        d = torch.cdist(query[start:start + chunk].double(), reference.double(),
                        compute_mode="donot_use_mm_for_euclid_dist")
        out.append(d.topk(k + (1 if exclude_self else 0), dim=1, largest=False).values[:, -1])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


NORMALISATIONS = ("none", "l2")


def _normalised(f: torch.Tensor, normalise: str) -> torch.Tensor:
    return _l2(f) if normalise == "l2" else f


def ood_reference(features, k: int = 5, quantile: float = 0.95, max_reference: int = 2000,
                  n_components: int = 64, held_out_fraction: float = 0.2, seed: int = 0,
                  normalise: str = "none") -> dict:
    """A compact, ``weights_only``-loadable reference for :func:`ood_score` from training features
    (items, width): a random sample of at most ``max_reference`` items (optionally L2-normalised,
    ``normalise="l2"``; projected on at most ``n_components`` principal components plus the
    residual norm) and the ``quantile`` of the k-th-nearest-neighbour distances of held-out
    training items (``held_out_fraction`` of them, at most 1000; with fewer than 10, leave-one-out
    distances within the sample) as the scale. Deterministic for a ``seed``.

    The features are not normalised by default: the size of the activations is itself a sign of
    an unfamiliar input (noise drives the ReLU features of these CNNs far above those of any
    training pattern), which L2 normalisation would throw away."""
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}")
    f = _features(features)
    n = len(f)
    if k < 1:
        raise ValueError("k must be at least 1")
    if n < k + 2:
        raise ValueError(f"{n} training items are too few for a k = {k} nearest-neighbour reference")
    if not 0 < quantile <= 1:
        raise ValueError("quantile must be in (0, 1]")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_hold = min(int(n * held_out_fraction), 1000)
    if n_hold < 10 or n - n_hold < k + 1:
        n_hold = 0
    held, kept = order[:n_hold], order[n_hold:][:max_reference]
    x = _normalised(f[kept.sort().values], normalise)
    mean = x.mean(dim=0)
    m = max(0, min(n_components, len(x) - 1, x.shape[1]))
    if m:
        _, _, vh = torch.linalg.svd((x - mean).double(), full_matrices=False)
        components = vh[:m].float().contiguous()
    else:
        components = torch.zeros(0, x.shape[1])
    reference = _project(x, mean, components)
    if n_hold:
        distances = _kth_distance(_project(_normalised(f[held], normalise), mean, components), reference, k)
    else:
        distances = _kth_distance(reference, reference, k, exclude_self=True)
    scale = float(torch.quantile(distances, quantile))
    if not scale > 1e-9:
        scale = max(float(distances.max()), 1e-9)
    return {"method": REFERENCE_METHOD, "normalise": normalise, "k": int(k), "quantile": float(quantile),
            "scale": scale, "mean": mean.contiguous(), "components": components, "reference": reference.contiguous(),
            "n_train": int(n), "n_reference": int(len(x)), "n_held_out": int(n_hold)}


def ood_score(features, reference: dict) -> np.ndarray:
    """The OOD score of each item of ``features`` (items, width): its k-th-nearest-neighbour
    distance to the reference sample divided by the reference's scale (≈ 1 at the 95th
    percentile of held-out training items)."""
    if not isinstance(reference, dict) or reference.get("method") != REFERENCE_METHOD:
        raise ValueError("not an OOD reference made by xtalspec.evaluation.verdicts.ood_reference")
    f = _features(features)
    mean = torch.as_tensor(reference["mean"], dtype=torch.float32)
    if f.shape[1] != mean.shape[0]:
        raise ValueError(f"features of width {f.shape[1]} for a reference of width {mean.shape[0]}")
    x = _normalised(f, reference.get("normalise", "none"))
    z = _project(x, mean, torch.as_tensor(reference["components"], dtype=torch.float32))
    distances = _kth_distance(z, torch.as_tensor(reference["reference"], dtype=torch.float32), int(reference["k"]))
    return (distances / float(reference["scale"])).numpy()


def ensemble_ood_score(member_features: Sequence, references: Sequence[dict | None]) -> np.ndarray | None:
    """The mean over the members that have a reference of their OOD scores, (items,); None when
    no member has one."""
    scores = [ood_score(f, r) for f, r in zip(member_features, references) if r is not None]
    return np.mean(scores, axis=0) if scores else None


# --------------------------------------------------------------------------- thresholds and verdicts

def choose_thresholds(confidences, correct, ood_scores=None, target_accuracy: float = 0.9,
                      ood_quantile: float = 0.99) -> dict:
    """Verdict thresholds from held-out simulated data (calibrated top-1 ``confidences``, whether
    the top-1 was ``correct``, and the items' OOD scores, all in-distribution):

    * ``ood_threshold``: the ``ood_quantile`` of the OOD scores (an observed score; an input is
      outside when its score is above it); None without scores;
    * ``confidence_threshold``: among the items that are not outside, the lowest confidence c such
      that the items with confidence ≥ c are right at least ``target_accuracy`` of the time —
      the largest coverage at the target accuracy; ``inf`` when no c reaches it.

    Returns the thresholds and what they achieve on these data: ``coverage`` (share of all items
    that are confident), ``accuracy`` (top-1 among them), ``fraction_outside``, ``accuracy_all``."""
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    right = np.asarray(correct, dtype=bool).ravel()
    if len(conf) != len(right) or not len(conf):
        raise ValueError("confidences and correct must be equally long and not empty")
    if not 0 < target_accuracy <= 1 or not 0 < ood_quantile <= 1:
        raise ValueError("target_accuracy and ood_quantile must be in (0, 1]")
    ood_threshold, inside = None, np.ones(len(conf), bool)
    if ood_scores is not None:
        scores = np.asarray(ood_scores, dtype=np.float64).ravel()
        if len(scores) != len(conf):
            raise ValueError("ood_scores must be as long as confidences")
        finite = scores[np.isfinite(scores)]
        if len(finite):
            ood_threshold = float(np.quantile(finite, ood_quantile, method="higher"))
            inside = ~(scores > ood_threshold)
    c, ok = conf[inside], right[inside]
    order = np.argsort(-c, kind="stable")
    c, ok = c[order], ok[order]
    accuracy = np.cumsum(ok) / np.arange(1, len(c) + 1)
    group_end = np.r_[c[1:] != c[:-1], True] if len(c) else np.zeros(0, bool)  # a threshold takes all ties
    meets = np.flatnonzero(group_end & (accuracy >= target_accuracy - 1e-12))
    if len(meets):
        i = meets[-1]
        threshold, n_confident, achieved = float(c[i]), int(i + 1), float(accuracy[i])
    else:
        threshold, n_confident, achieved = math.inf, 0, None
    return {"confidence_threshold": threshold, "ood_threshold": ood_threshold,
            "target_accuracy": float(target_accuracy), "ood_quantile": float(ood_quantile),
            "coverage": n_confident / len(conf), "accuracy": achieved, "n_confident": n_confident,
            "n_calibration": int(len(conf)), "fraction_outside": float(1 - inside.mean()),
            "accuracy_all": float(right.mean())}


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def verdict(top_probability: float, ood_score: float | None, thresholds: dict | None) -> str:
    """``outside`` if the OOD score is above the outside threshold, else ``confident`` if the
    calibrated top-1 probability is at least the confidence threshold, else ``uncertain``
    (also without thresholds: a model without calibration). A missing OOD score skips the
    outside test."""
    if not thresholds:
        return "uncertain"
    ood_t, score = thresholds.get("ood_threshold"), _finite(ood_score)
    if ood_t is not None and score is not None and score > float(ood_t):
        return "outside"
    conf_t = thresholds.get("confidence_threshold")
    if conf_t is not None and top_probability is not None and float(top_probability) >= float(conf_t):
        return "confident"
    return "uncertain"


def verdict_reason(top_probability: float, ood_score: float | None, thresholds: dict | None) -> str:
    """Why :func:`verdict` says what it says, in a few words."""
    if not thresholds:
        return NO_CALIBRATION
    ood_t, score = _finite(thresholds.get("ood_threshold")), _finite(ood_score)
    ratio = None if ood_t is None or score is None else score / ood_t if ood_t > 0 else math.inf
    if verdict(top_probability, ood_score, thresholds) == "outside":
        return f"distance {ratio:.1f} × the outside threshold: unlike the training data"
    conf_t = float(thresholds.get("confidence_threshold", math.inf))
    target = thresholds.get("target_accuracy")
    if not math.isfinite(conf_t):
        parts = [f"top p {top_probability:.2f}; no confidence reached "
                 f"{100 * target:.0f} % accuracy in calibration" if target else f"top p {top_probability:.2f}"]
    else:
        parts = [f"top p {top_probability:.2f} {'≥' if top_probability >= conf_t else '<'} {conf_t:.2f}"]
    if ratio is not None:
        parts.append(f"distance {ratio:.1f} of the outside threshold")
    elif ood_t is None:
        parts.append("no out-of-distribution threshold")
    else:
        parts.append("no out-of-distribution reference")
    return "; ".join(parts)


def member_temperature(meta: dict) -> float | None:
    """A member's stored temperature, or None (no calibration, or not a positive number)."""
    t = _finite((meta or {}).get("temperature"))
    return t if t is not None and t > 0 else None


@dataclasses.dataclass
class Assessment:
    """The verdict on one prediction and what it rests on."""

    verdict: str
    reason: str
    top_probability: float
    ood_score: float | None
    thresholds: dict | None
    temperatures: list
    notes: list

    @property
    def line(self) -> str:
        return f"verdict: {self.verdict} ({self.reason})"

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "verdict_reason": self.reason, "top_probability": self.top_probability,
                "ood_score": self.ood_score, "thresholds": self.thresholds, "temperatures": self.temperatures,
                "notes": self.notes}


def assess(top_probability: float, metas: Sequence[dict], member_ood_scores: Sequence[float | None]) -> Assessment:
    """The verdict on a prediction of the models whose checkpoint metadata are ``metas`` (each
    model's probabilities already divided by its temperature), from the mean of the members' OOD
    scores and the first member's verdict thresholds."""
    temperatures = [member_temperature(m) for m in metas]
    thresholds = next((dict(m["verdict_thresholds"]) for m in metas
                       if isinstance(m.get("verdict_thresholds"), dict) and m["verdict_thresholds"]), None)
    scores = [s for s in member_ood_scores if _finite(s) is not None]
    score = float(np.mean(scores)) if scores else None
    notes = []
    if thresholds is None or all(t is None for t in temperatures):
        notes.append(NO_CALIBRATION)
        thresholds = None
    else:
        if any(t is None for t in temperatures):
            notes.append(f"{sum(t is None for t in temperatures)} of {len(metas)} models have no temperature")
        if len(scores) < len(metas):
            notes.append(f"{len(metas) - len(scores)} of {len(metas)} models have no out-of-distribution reference")
        n_cal = thresholds.get("n_members")
        if n_cal and int(n_cal) != len(metas):
            notes.append(f"thresholds were chosen for an ensemble of {int(n_cal)}, used with {len(metas)}")
    return Assessment(verdict(top_probability, score, thresholds), verdict_reason(top_probability, score, thresholds),
                      float(top_probability), score, thresholds, temperatures, notes)


# --------------------------------------------------------------------------- calibration in one call

def calibrate_members(member_logits_val, labels_val, member_features_val=None, member_features_train=None, *,
                      target_accuracy: float = 0.9, ood_quantile: float = 0.99, k: int = 5, n_bins: int = 15,
                      fit_fraction: float = 0.5, seed: int = 0, max_reference: int = 2000,
                      normalise: str = "none") -> dict:
    """Everything a training script stores after training an ensemble, from its held-out
    (validation) simulated data:

    * ``member_logits_val``: (members, items, classes) or one model's (items, classes);
    * ``labels_val``: the items' class indices;
    * ``member_features_val`` / ``member_features_train``: per member, its penultimate features of
      the validation / training items (:func:`forward_with_features`); optional (no OOD score then).

    The validation items are split at random (``seed``) into a part that fits the temperature
    (``fit_fraction``) and a part that measures the ECE before and after and chooses the verdict
    thresholds, so the reported numbers are on data the temperature never saw (with fewer than 4
    items both parts are all items). Returns ``temperature``, ``ood_reference`` (a list, one per
    member, or None), ``verdict_thresholds``, ``ece_before``, ``ece_after``, ``nll_before``,
    ``nll_after``, ``reliability_before`` / ``reliability_after`` (DataFrames), ``n_fit``,
    ``n_eval``. :func:`member_meta` picks member i's entries for its checkpoint."""
    logits = _logits_array(member_logits_val)
    n_members, n, n_classes = logits.shape
    labels = _labels_array(labels_val, n, n_classes)
    order = np.random.default_rng(seed).permutation(n)
    n_fit = int(round(n * fit_fraction))
    if n < 4 or n_fit < 2 or n - n_fit < 2:
        fit_idx = eval_idx = np.arange(n)
        split = "all items fit the temperature and measure it (too few for a split)"
    else:
        fit_idx, eval_idx = np.sort(order[:n_fit]), np.sort(order[n_fit:])
        split = f"{len(fit_idx)} items fit the temperature; the other {len(eval_idx)} measure it and set the thresholds"
    temperature = fit_temperature(logits[:, fit_idx], labels[fit_idx])
    before = ensemble_probabilities(logits[:, eval_idx])
    after = ensemble_probabilities(logits[:, eval_idx], temperature)
    y = labels[eval_idx]

    references, scores = None, None
    if member_features_train is not None:
        if len(member_features_train) != n_members:
            raise ValueError(f"training features of {len(member_features_train)} members for {n_members} members")
        references = [ood_reference(f, k=k, seed=seed, max_reference=max_reference, normalise=normalise)
                      for f in member_features_train]
        if member_features_val is not None:
            if len(member_features_val) != n_members:
                raise ValueError(f"validation features of {len(member_features_val)} members for {n_members} members")
            scores = ensemble_ood_score(member_features_val, references)
            if len(scores) != n:
                raise ValueError(f"validation features of {len(scores)} items for {n} items")
    thresholds = choose_thresholds(after.max(axis=1), after.argmax(axis=1) == y,
                                   None if scores is None else scores[eval_idx], target_accuracy, ood_quantile)
    thresholds |= {"n_members": int(n_members), "temperature": float(temperature)}
    return {"temperature": float(temperature), "ood_reference": references, "verdict_thresholds": thresholds,
            "ece_before": expected_calibration_error(before, y, n_bins),
            "ece_after": expected_calibration_error(after, y, n_bins),
            "nll_before": negative_log_likelihood(logits[:, eval_idx], y),
            "nll_after": negative_log_likelihood(logits[:, eval_idx], y, temperature),
            "reliability_before": reliability_table(before, y, n_bins),
            "reliability_after": reliability_table(after, y, n_bins),
            "n_fit": int(len(fit_idx)), "n_eval": int(len(eval_idx)), "n_members": int(n_members), "split": split}


def member_meta(calibration: dict, index: int) -> dict:
    """The entries of member ``index``'s checkpoint ``meta`` (``weights_only``-loadable):
    ``temperature``, ``verdict_thresholds``, ``ood_reference`` (when made) and a ``calibration``
    summary (ECE and NLL before and after)."""
    out = {"temperature": float(calibration["temperature"]),
           "verdict_thresholds": dict(calibration["verdict_thresholds"]),
           "calibration": {k: float(calibration[k]) for k in ("ece_before", "ece_after", "nll_before", "nll_after")}
           | {"n_fit": int(calibration["n_fit"]), "n_eval": int(calibration["n_eval"])}}
    if calibration.get("ood_reference"):
        out["ood_reference"] = calibration["ood_reference"][index]
    return out


def calibration_markdown(calibration: dict, figure_name: str | None = None) -> str:
    """The calibration report: temperature, ECE and NLL before and after, the verdict thresholds
    and the coverage and accuracy they reach on held-out simulated data."""
    t = calibration["verdict_thresholds"]

    def pct(v):
        return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"

    conf_t = t["confidence_threshold"]
    lines = ["# Calibration on held-out simulated data", "",
             f"Temperature T = {calibration['temperature']:.3f} (one for the {calibration['n_members']} "
             f"member(s), fitted on the NLL of the ensemble-mean probability); {calibration['split']}.", "",
             "| | before | after |", "|---|---:|---:|",
             f"| expected calibration error (top-1, {len(calibration['reliability_after'])} bins) | "
             f"{pct(calibration['ece_before'])} | {pct(calibration['ece_after'])} |",
             f"| negative log-likelihood | {calibration['nll_before']:.4f} | {calibration['nll_after']:.4f} |", "",
             "Verdict thresholds:", "",
             f"* confident: calibrated top-1 probability ≥ "
             f"{conf_t:.3f}" if math.isfinite(conf_t) else
             f"* confident: never (no confidence threshold reaches {pct(t['target_accuracy'])} top-1 accuracy)",
             f"  — chosen for {pct(t['target_accuracy'])} top-1 accuracy: {pct(t['coverage'])} of the held-out "
             f"items are confident, {pct(t['accuracy'])} of them right (all items: {pct(t['accuracy_all'])}).",
             (f"* outside: out-of-distribution score > {t['ood_threshold']:.3f} (the {pct(t['ood_quantile'])} "
              f"quantile of held-out simulated items; {pct(t['fraction_outside'])} of them are above it)"
              if t.get("ood_threshold") is not None else "* outside: no out-of-distribution reference"),
             "* uncertain: everything else."]
    if figure_name:
        lines += ["", f"![reliability diagram]({figure_name})"]
    return "\n".join(lines) + "\n"


def write_calibration_report(calibration: dict, md_path=None, figure_path=None, csv_path=None) -> list[Path]:
    """Write the calibration report (Markdown), the reliability diagram (PNG/SVG) and the
    reliability tables (CSV, before and after), each atomically; any of them may be left out."""
    from ..utils.atomic import atomic_write_text
    from .calibration import plot_reliability

    written = []
    if figure_path is not None:
        written.append(plot_reliability(calibration["reliability_before"], calibration["reliability_after"],
                                        figure_path))
    if csv_path is not None:
        table = pd.concat([calibration["reliability_before"].assign(calibration="before"),
                           calibration["reliability_after"].assign(calibration="after")])
        written.append(atomic_write_text(csv_path, table.to_csv(index=False)))
    if md_path is not None:
        name = None
        if figure_path is not None:
            figure, md = Path(figure_path).resolve(), Path(md_path).resolve()
            name = figure.name if figure.parent == md.parent else str(figure)
        written.append(atomic_write_text(md_path, calibration_markdown(calibration, name)))
    return written


__all__ = ["Assessment", "NO_CALIBRATION", "VERDICTS", "assess", "calibrate_members", "calibration_markdown",
           "choose_thresholds", "crystal_system_probabilities", "crystal_system_ranking", "ensemble_ood_score",
           "feature_extractor", "forward_with_features", "member_meta", "member_temperature", "ood_reference",
           "ood_score", "verdict", "verdict_reason", "write_calibration_report"]
