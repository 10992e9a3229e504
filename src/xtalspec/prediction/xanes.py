"""Coordination (T4 / S5 / O6) of the absorbing 3d-metal sites from a measured K-edge XANES:
read the file, check it holds the element's K edge and find E0 near the tabulated edge, turn it
into a model input with the preprocessing the bundle's training spectra had
(:func:`xtalspec.spectra.xanes_matching.prepare`: the same E0 rule, edge-step normalisation
and relative grid as the FEFF spectra, without the broadening that only simulations need), and
classify with the element's MLP and CNN and with the cross-element MLP and CNN
(``<models>/cross``, one-hot element input), when those bundles exist.

Bundles made before the shared preprocessing (no ``preprocessing`` in ``bundle.json``: an
absolute per-element grid) get the old treatment: Athena normalisation, the edge moved onto the
training spectra's median E0 and refined against them
(:func:`xtalspec.spectra.xanes_measured.align_to_model`), divided by the maximum."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..models.xanes import BUNDLE_JSON
from ..spectra.xanes_measured import (K_EDGES, MIN_COVERAGE, XanesError, XanesFileError, align_to_model,
                                      canonical_element, grid_coverage, normalise, read_xanes)
from ..utils.atomic import atomic_write_texts

DEFAULT_MODELS_DIR = "results/xanes/models"
CROSS_DIR = "cross"  # the cross-element bundle's folder under the models folder
MODEL_NAMES = {"mlp": "MLP (per element)", "cnn": "CNN (per element)", "mlp_x": "MLP (all elements)",
               "cnn_x": "CNN (all elements)"}


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
        if self.details.get("grid_relative"):
            grid = self.details["grid_ev"]
            head = (f"{self.source}: {self.element} K edge at E0 = {self.e0_measured:.1f} eV, edge step "
                    f"{self.edge_step:.3g}; on E − E0 = {grid[0]:+.1f}…{grid[1]:+.1f} eV as the training spectra "
                    f"(grid coverage {self.coverage:.0%})")
        else:
            head = (f"{self.source}: {self.element} K edge at E0 = {self.e0_measured:.1f} eV, edge step "
                    f"{self.edge_step:.3g}; shifted {self.shift_ev:+.1f} eV onto the models' E0 = "
                    f"{self.e0_model:.1f} eV (grid coverage {self.coverage:.0%})")
        lines = [head, "", self.table.to_string(index=False, float_format="%.3f")]
        lines += [f"  {kind}: {MODEL_NAMES[kind]}" for kind in self.probabilities if kind in MODEL_NAMES]
        if len(set(self.labels.values())) > 1:
            lines += ["", "note: the models disagree"]
        for note in self.details.get("notes", []):
            lines += [f"note: {note}"]
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


def _found(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob(f"*/{BUNDLE_JSON}") if p.parent.name != CROSS_DIR) \
        if root.is_dir() else []


def find_bundle(models_dir: str | Path, element: str) -> Path:
    """``models_dir/<element>``; FileNotFoundError listing the elements that have a bundle."""
    root = Path(models_dir)
    directory = root / element
    if (directory / BUNDLE_JSON).is_file():
        return directory
    found = _found(root)
    have = ", ".join(found) if found else "none (train them with the XANES workflow first)"
    raise FileNotFoundError(f"no XANES model bundle for {element} in {root}; bundles found for: {have}")


def model_input(energy, mu, element: str, meta: dict, e0: float) -> tuple[np.ndarray, dict]:
    """(the bundle's input for a measured spectrum, info) — the one code path shared with the
    FEFF training spectra when the bundle records its ``preprocessing`` (relative grid); the old
    alignment otherwise. ``info``: ``shift_ev``, ``coverage``, ``edge_step``, ``normalisation``.
    XanesError when the spectrum cannot be prepared or covers too little of the grid."""
    from ..spectra.xanes_matching import Preprocessing, prepare

    if meta.get("grid_relative"):
        pp = Preprocessing.from_dict(meta["preprocessing"])
        x, info = prepare(energy, mu, element, pp, simulated=False)
        if info["coverage"] < MIN_COVERAGE:
            grid = pp.offsets
            raise XanesError(f"the data cover {info['coverage']:.0%} of the model grid E0 {grid[0]:+.1f}…"
                             f"{grid[-1]:+.1f} eV (E0 = {info['e0']:.1f} eV); need {MIN_COVERAGE:.0%}")
        return x, {"shift_ev": 0.0, "coverage": float(info["coverage"]), "edge_step": float(info["edge_step"]),
                   "e0_prepared": float(info["e0"]),
                   "normalisation": {k: info[k] for k in ("edge_step", "pre_degree", "post_degree", "pre_range",
                                                          "post_range")}}
    norm, norm_info = normalise(energy, mu, e0)
    x, shift = align_to_model(energy, norm, meta, e0=e0)
    return x, {"shift_ev": float(shift), "coverage": grid_coverage(energy, shift, meta["grid"]),
               "edge_step": float(norm_info["edge_step"]), "normalisation": norm_info}


def _load(directory: Path):
    from ..models.xanes import load_bundle

    return load_bundle(directory)


def predict_xanes(path: str | Path, element: str, models_dir: str | Path = DEFAULT_MODELS_DIR,
                  cross: bool = True) -> XanesPrediction:
    """Class probabilities of the measured spectrum in ``path`` from the ``element`` bundle's MLP
    and CNN (``mlp``, ``cnn``) and, with ``cross`` and a cross-element bundle in
    ``models_dir/cross`` that knows the element, from the cross-element MLP and CNN (``mlp_x``,
    ``cnn_x``). FileNotFoundError when neither exists; an element bundle that was not trained
    (too few spectra) leaves the cross-element models alone, with a note."""
    from ..models.xanes import class_probabilities, standardise

    element = canonical_element(element)
    path = Path(path)
    energy, mu, info = read_xanes(path, element)
    e0 = info["e0"]
    details = {"reader": info, "notes": []}
    root = Path(models_dir)
    bundles = []
    if (root / element / BUNDLE_JSON).is_file():
        meta, models = _load(root / element)
        if meta.get("element", element) != element or meta.get("features", "full") != "full":
            raise ValueError(f"{root / element}: bundle is for {meta.get('element')} ({meta.get('features')} spectrum), "
                             f"need {element} (full spectrum)")
        if meta.get("trained", True) and models:
            bundles.append((root / element, meta, models, ""))
        else:
            details["notes"].append(f"no per-element {element} model: {meta.get('status', 'not trained')}")
    cross_dir = root / CROSS_DIR
    if cross and (cross_dir / BUNDLE_JSON).is_file():
        meta, models = _load(cross_dir)
        if element in (meta.get("elements") or []):
            bundles.append((cross_dir, meta, models, "_x"))
        else:
            details["notes"].append(f"the cross-element model was not trained on {element}")
    if not bundles:
        if details["notes"]:
            found = ", ".join(_found(root)) or "none"
            raise FileNotFoundError(f"no usable XANES model for {element} in {root}: " + "; ".join(details["notes"])
                                    + f"; bundles found for: {found}")
        find_bundle(models_dir, element)  # raises, listing the bundles there
    probabilities, used = {}, {}
    for directory, meta, models, suffix in bundles:
        try:
            x, prep = model_input(energy, mu, element, meta, e0)
        except XanesError as exc:
            raise XanesFileError(path, str(exc)) from None
        z = standardise(x[None, :], meta, element if meta.get("elements") else None)
        for kind, model in models.items():
            probabilities[kind + suffix] = class_probabilities(model, z)[0]
        used[str(directory)] = {"prep": prep, "meta": meta}
    first = next(iter(used.values()))
    prep, meta = first["prep"], first["meta"]
    details["normalisation"] = prep["normalisation"]
    details["bundle_meta"] = {str(d): {k: u["meta"].get(k) for k in ("element", "elements", "n_train", "counts",
                                                                    "e0_definition", "preprocessing", "provenance")
                                       if k in u["meta"]} for d, u in used.items()}
    details["tabulated_edge_ev"] = K_EDGES[element]
    if meta.get("grid_relative"):
        details["grid_relative"] = True
        details["e0_grid_ev"] = prep["e0_prepared"]  # the E0 of the preprocessing rule (e0_rule), grid origin
        details["grid_ev"] = [float(meta["grid"][0]), float(meta["grid"][-1])]
        details["alignment"] = (f"each spectrum on E − its own E0 (e0_rule {meta['preprocessing']['e0_rule']}), "
                                "as the FEFF training spectra")
    else:
        details["alignment"] = ("edge to the training median E0, refined against the training spectra"
                                if meta.get("templates") is not None else "edge to the training median E0")
    e0_model = float(meta["e0"]) if meta.get("e0") is not None else float("nan")
    return XanesPrediction(str(path), element, ";".join(used), list(meta["classes"]), probabilities, e0,
                           e0_model, prep["shift_ev"], prep["edge_step"], prep["coverage"], details)
