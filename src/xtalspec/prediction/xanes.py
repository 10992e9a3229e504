"""Coordination (T4 / S5 / O6) of the absorbing 3d-metal sites from a measured K-edge XANES:
read the file, check it holds the element's K edge and find E0 near the tabulated edge,
normalise (Athena-style), align the edge
with the training spectra's median E0, and classify with the element's MLP and CNN
(:mod:`xtalspec.spectra.xanes_measured` has the rules of each step)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..models.xanes import BUNDLE_JSON
from ..spectra.xanes_measured import (K_EDGES, XanesError, XanesFileError, align_to_model, canonical_element,
                                      grid_coverage, normalise, read_xanes)
from ..utils.atomic import atomic_write_texts

DEFAULT_MODELS_DIR = "results/xanes/models"


@dataclasses.dataclass
class XanesPrediction:
    """Per-model class probabilities of one measured spectrum, with what was done to it."""

    source: str
    element: str
    bundle: str
    classes: list[str]
    probabilities: dict[str, np.ndarray]  # model kind -> (n_classes,)
    e0_measured: float
    e0_model: float
    shift_ev: float
    edge_step: float
    coverage: float
    details: dict = dataclasses.field(default_factory=dict)  # reader and normalisation info

    @property
    def labels(self) -> dict[str, str]:
        """The most probable class per model."""
        return {kind: self.classes[int(np.argmax(p))] for kind, p in self.probabilities.items()}

    @property
    def table(self) -> pd.DataFrame:
        """One row per model: model, p_<class>…, label."""
        rows = [{"model": kind, **{f"p_{c}": float(v) for c, v in zip(self.classes, p)}, "label": self.labels[kind]}
                for kind, p in self.probabilities.items()]
        return pd.DataFrame(rows, columns=["model", *[f"p_{c}" for c in self.classes], "label"])

    @property
    def text(self) -> str:
        head = (f"{self.source}: {self.element} K edge at E0 = {self.e0_measured:.1f} eV, edge step "
                f"{self.edge_step:.3g}; shifted {self.shift_ev:+.1f} eV onto the models' E0 = "
                f"{self.e0_model:.1f} eV (grid coverage {self.coverage:.0%})")
        lines = [head, "", self.table.to_string(index=False, float_format="%.3f")]
        if len(set(self.labels.values())) > 1:
            lines += ["", "note: the models disagree"]
        return "\n".join(lines)

    def sidecar(self) -> dict:
        """The provenance written next to the CSV."""
        return {"file": self.source, "element": self.element, "bundle": self.bundle,
                "e0_measured_ev": self.e0_measured, "e0_model_ev": self.e0_model, "shift_ev": self.shift_ev,
                "edge_step": self.edge_step, "grid_coverage": self.coverage, "labels": self.labels,
                **self.details}

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """CSV (model, p_T4, p_S5, p_O6, label) at ``path`` and a JSON sidecar beside it
        (``path`` with suffix ``.json``; ``<stem>.meta.json`` if ``path`` already ends in .json)."""
        path = Path(path)
        side = path.with_suffix(".json") if path.suffix != ".json" else path.with_name(path.stem + ".meta.json")
        atomic_write_texts({path: self.table.to_csv(index=False, float_format="%.6f"),
                            side: json.dumps(self.sidecar(), indent=1, default=_jsonable) + "\n"})
        return path, side


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def find_bundle(models_dir: str | Path, element: str) -> Path:
    """``models_dir/<element>``; FileNotFoundError listing the elements that have a bundle."""
    root = Path(models_dir)
    directory = root / element
    if (directory / BUNDLE_JSON).is_file():
        return directory
    found = sorted(p.parent.name for p in root.glob(f"*/{BUNDLE_JSON}")) if root.is_dir() else []
    have = ", ".join(found) if found else "none (train them with the XANES workflow first)"
    raise FileNotFoundError(f"no XANES model bundle for {element} in {root}; bundles found for: {have}")


def _prepare(path: Path, element: str):
    """(energy, normalised μ, E0, details) of a measured file, every problem naming the file.

    The reader checks the file against ``element`` (XDI header, energies reaching the K-edge
    window) and finds E0 in that window (:func:`find_edge`); then the spectrum is normalised."""
    energy, mu, info = read_xanes(path, element)
    e0 = info["e0"]
    try:
        norm, norm_info = normalise(energy, mu, e0)
    except XanesError as exc:
        raise XanesFileError(path, str(exc)) from None
    return energy, norm, e0, {"reader": info, "normalisation": norm_info}


def predict_xanes(path: str | Path, element: str, models_dir: str | Path = DEFAULT_MODELS_DIR) -> XanesPrediction:
    """Class probabilities of the measured spectrum in ``path`` from the ``element`` bundle's MLP and CNN."""
    from ..models.xanes import class_probabilities, load_bundle, standardise

    element = canonical_element(element)
    path = Path(path)
    energy, norm, e0, details = _prepare(path, element)
    directory = find_bundle(models_dir, element)
    meta, models = load_bundle(directory)
    if meta.get("element", element) != element or meta.get("features", "full") != "full":
        raise ValueError(f"{directory}: bundle is for {meta.get('element')} ({meta.get('features')} spectrum), "
                         f"need {element} (full spectrum)")
    try:
        x, shift = align_to_model(energy, norm, meta, e0=e0)
    except XanesError as exc:
        raise XanesFileError(path, str(exc)) from None
    x = standardise(x[None, :], meta)
    probabilities = {kind: class_probabilities(model, x)[0] for kind, model in models.items()}
    details["bundle_meta"] = {k: meta.get(k) for k in ("element", "n_train", "counts", "e0_definition", "provenance")
                              if k in meta}
    details["tabulated_edge_ev"] = K_EDGES[element]
    details["alignment"] = ("edge to the training median E0, refined against the training spectra"
                            if meta.get("templates") is not None else "edge to the training median E0")
    return XanesPrediction(str(path), element, str(directory), list(meta["classes"]), probabilities, e0,
                           float(meta["e0"]), shift, details["normalisation"]["edge_step"],
                           grid_coverage(energy, shift, meta["grid"]), details)
