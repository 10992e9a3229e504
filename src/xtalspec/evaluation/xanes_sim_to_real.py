"""How alike are FEFF and measured K-edge XANES, and which preprocessing makes them alike?
(``xtalspec xanes sim-to-real``; issue 17.)

For every *choice* (a :class:`~xtalspec.spectra.xanes_matching.Preprocessing` and the training
shifts) the FEFF spectra of the cache become a data set through the workflow's own code
(:func:`xtalspec.datasets.xanes_spectra.dataset_from_frames`) and the measured files of the
development set become model inputs through ``predict-xanes``' own code
(:func:`xtalspec.prediction.xanes.model_input`). Then, per choice:

(a) **distances** — for each measured spectrum (model input, before standardisation) the mean
    |Δμ| over the grid to the nearest FEFF spectrum of the same element and the same class
    (``d_same``) and to the nearest of another class (``d_other``); ``nn_correct`` = the
    fraction of files with ``d_same < d_other`` (a nearest-neighbour classifier's accuracy);
(b) **accuracy on the development set** of models trained on the cache with that
    preprocessing: the per-element MLP and CNN (trained as ``xtalspec xanes bundle`` trains
    them, on every spectrum of the element) and, on the relative grid, the cross-element MLP
    and CNN (one-hot element input, trained on all elements), each with ``n_seeds`` seeds;
    accuracy = mean over seeds (± sd), balanced accuracy = mean over the classes present of
    their recall. The per-file table has the seed-averaged probabilities.

The choices come in groups: ``cumulative`` (each row adds one change to the row above, from the
old pipeline to the chosen one), ``one at a time`` (one change on top of the shared relative
grid with nothing else), ``drop one`` (the chosen preprocessing without one of its changes) and
``widths`` (the broadening widths around the chosen ones). The chosen one is
:class:`~xtalspec.spectra.xanes_matching.Preprocessing`'s defaults with shifts ±1…±4 eV. The development set is 21/24 O6: a
constant "O6" scores 88 % accuracy and 33 % balanced accuracy, so balanced accuracy and the T4 /
S5 recalls matter more than accuracy.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..spectra.xanes_labels import LABELS as CLASSES
from ..spectra.xanes_matching import LEGACY, Preprocessing

log = logging.getLogger(__name__)

OLD_SHIFTS = [-2.0, -1.0, 1.0, 2.0]
WIDE_SHIFTS = [-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0]
#: the old pipeline: absolute per-element grid, E0 by xanes_grid.edge_energy, divided by the maximum
OLD = dict(LEGACY)
#: the shared relative grid alone (find_edge E0 for both, no broadening, divided by the maximum)
RELATIVE = {"energy_axis": "relative", "normalisation": "max", "lorentz_factor": 0.0, "gauss_fwhm_ev": 0.0,
            "e0_rule": "max_slope"}


@dataclasses.dataclass
class Choice:
    name: str
    group: str
    what: str
    pp: dict
    shifts: list

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.pp)


def default_choices(final: dict | None = None, final_shifts: list | None = None) -> list[Choice]:
    """The comparison's rows (see the module docstring). ``final`` is the chosen preprocessing
    (default: :class:`Preprocessing`'s defaults) and ``final_shifts`` its training shifts."""
    final = dict(final or Preprocessing().as_dict())
    final_shifts = list(final_shifts or WIDE_SHIFTS)
    norm = {"normalisation": final["normalisation"]}
    other_norm = {"normalisation": "step" if final["normalisation"] == "max" else "max"}
    lor = {"lorentz_factor": final["lorentz_factor"]}
    gau = {"gauss_fwhm_ev": final["gauss_fwhm_ev"]}
    e0 = {"e0_rule": final["e0_rule"]}
    chosen = RELATIVE | norm | e0 | lor | gau
    shifts = f"{final_shifts[0]:g}…{final_shifts[-1]:+g} eV"
    rows = [
        Choice("old", "cumulative", "old pipeline: absolute grid, FEFF E0 by max slope (3-point), measured moved "
               "onto the median FEFF E0 and refined against the training spectra, / max", OLD, OLD_SHIFTS),
        Choice("relative", "cumulative", "+ one E0 rule (find_edge max slope) for both, grid E − own E0",
               RELATIVE | norm, OLD_SHIFTS),
        Choice(f"+E0 {e0['e0_rule']}", "cumulative", f"+ E0 rule {e0['e0_rule']}", RELATIVE | norm | e0, OLD_SHIFTS),
        Choice("+lorentz", "cumulative", f"+ Lorentzian {lor['lorentz_factor']:g} × K width on FEFF",
               RELATIVE | norm | e0 | lor, OLD_SHIFTS),
        Choice("+gauss", "cumulative", f"+ Gaussian {gau['gauss_fwhm_ev']:g} eV FWHM on FEFF", chosen, OLD_SHIFTS),
        Choice("chosen", "cumulative", f"+ training shifts {shifts} = the chosen preprocessing", chosen, final_shifts),
        Choice(f"rel+{other_norm['normalisation']}", "one at a time",
               f"relative, normalisation {other_norm['normalisation']}", RELATIVE | other_norm, OLD_SHIFTS),
        Choice(f"rel+E0 {e0['e0_rule']}", "one at a time", f"relative + E0 rule {e0['e0_rule']}", RELATIVE | norm | e0,
               OLD_SHIFTS),
        Choice("rel+lorentz", "one at a time", "relative + Lorentzian", RELATIVE | norm | lor, OLD_SHIFTS),
        Choice("rel+gauss", "one at a time", "relative + Gaussian", RELATIVE | norm | gau, OLD_SHIFTS),
        Choice("rel+wide shifts", "one at a time", f"relative + shifts {shifts}", RELATIVE | norm, final_shifts),
        Choice("old+lorentz+gauss", "one at a time", "old pipeline + both broadenings on FEFF", OLD | lor | gau,
               OLD_SHIFTS),
        Choice(f"chosen, {other_norm['normalisation']}", "drop one",
               f"… normalisation {other_norm['normalisation']} instead", chosen | other_norm, final_shifts),
        Choice("chosen −E0 rule", "drop one", "… E0 at the maximum slope" if e0["e0_rule"] != "max_slope"
               else "… E0 at the half step", chosen | {"e0_rule": "half_step" if e0["e0_rule"] == "max_slope"
                                                       else "max_slope"}, final_shifts),
        Choice("chosen −lorentz", "drop one", "… no Lorentzian", chosen | {"lorentz_factor": 0.0}, final_shifts),
        Choice("chosen −gauss", "drop one", "… no Gaussian", chosen | {"gauss_fwhm_ev": 0.0}, final_shifts),
        Choice("chosen −wide shifts", "drop one", "… shifts ±1, ±2 eV", chosen, OLD_SHIFTS),
    ]
    for factor in (1.0, 2.0, 3.0, 6.0):
        if factor != final["lorentz_factor"]:
            rows.append(Choice(f"lorentz {factor:g}×", "widths", f"chosen, Lorentzian {factor:g} × K width",
                               chosen | {"lorentz_factor": factor}, final_shifts))
    for fwhm in (1.5, 4.5):
        if fwhm != final["gauss_fwhm_ev"]:
            rows.append(Choice(f"gauss {fwhm:g} eV", "widths", f"chosen, Gaussian {fwhm:g} eV FWHM",
                               chosen | {"gauss_fwhm_ev": fwhm}, final_shifts))
    return rows


# --------------------------------------------------------------------------- data


def read_caches(paths) -> pd.DataFrame:
    """The rows of one or more FEFF spectra caches, each site once (the first file's row wins)."""
    from ..datasets.xanes_cache import read_cache

    frames = [read_cache(p) for p in paths]
    cache = pd.concat(frames, ignore_index=True).drop_duplicates("site_key", keep="first")
    return cache.sort_values("site_key").reset_index(drop=True)


def cache_spectra(cache: pd.DataFrame) -> pd.DataFrame:
    """Every element's cache rows in FEFF-shard form (the data set's input)."""
    from ..datasets.xanes_cache import element_spectra

    return pd.concat([element_spectra(cache, e) for e in sorted(cache["element"].unique())], ignore_index=True)


def read_development_set(labels_path) -> list[dict]:
    """One dict per row of LABELS.csv: file, element, label, compound, energy, mu, e0 (or error)."""
    from ..evaluation.validation import read_labels
    from ..spectra.xanes_measured import XanesError, read_xanes

    out = []
    for _, row in read_labels(labels_path).iterrows():
        record = {"file": row["file"], "element": str(row["element"]).strip(), "label": str(row["label"]).strip(),
                  "compound": row.get("compound", "")}
        try:
            energy, mu, info = read_xanes(row["path"], record["element"])
            record |= {"energy": energy, "mu": mu, "e0": info["e0"], "error": ""}
        except (XanesError, OSError, ValueError) as exc:
            record |= {"energy": None, "mu": None, "e0": np.nan, "error": str(exc).splitlines()[0][:200]}
        out.append(record)
    return out


# --------------------------------------------------------------------------- one choice


def _metrics(y_true: list[str], y_pred: list[str]) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else np.nan}
    recalls = {}
    for c in CLASSES:
        mask = y_true == c
        recalls[c] = float((y_pred[mask] == c).mean()) if mask.any() else np.nan
        out[f"recall_{c}"] = recalls[c]
    present = [v for v in recalls.values() if np.isfinite(v)]
    out["balanced_accuracy"] = float(np.mean(present)) if present else np.nan
    return out


def _feff_cv(dataset: pd.DataFrame, meta: dict, cfg: dict, n_folds: int) -> dict:
    """FEFF-vs-FEFF: the cross-element MLP on ``n_folds`` of the workflow's bootstrap folds
    (:func:`xtalspec.training.xanes.train_cross`), macro F1 pooled over elements and folds — how
    much of the classes' difference the preprocessing leaves in the simulations."""
    from sklearn.metrics import f1_score

    from ..training.xanes import train_cross

    predictions, _ = train_cross(dataset, meta, "mlp", cfg | {"n_folds": n_folds, "seed": 0})
    if predictions.empty:
        return {"feff_cv_macro_f1": np.nan}
    f1 = f1_score(predictions["y_true"], predictions["y_pred"], labels=list(CLASSES), average="macro",
                  zero_division=0)
    return {"feff_cv_macro_f1": float(f1)}


def evaluate_choice(choice: Choice, spectra: pd.DataFrame, measured: list[dict], n_seeds: int = 3,
                    train_cfg: dict | None = None, cross: bool = True, cv_folds: int = 5) -> tuple[dict, pd.DataFrame]:
    """(summary row, per-file rows) of one choice (module docstring); ``cv_folds`` > 0 adds the
    FEFF-vs-FEFF macro F1 of the cross-element MLP (``feff_cv_macro_f1``, relative grid only)."""
    from ..datasets.xanes_spectra import dataset_from_frames
    from ..models.xanes import class_probabilities, standardise
    from ..prediction.xanes import model_input
    from ..spectra.xanes_measured import XanesError
    from ..training.xanes import train_bundle, train_cross_bundle

    start = time.monotonic()
    pp = choice.preprocessing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset, _, meta = dataset_from_frames(spectra, preprocessing=pp)
    cfg = dict(train_cfg or {}) | {"shifts_ev": list(choice.shifts)}
    dev_elements = sorted({m["element"] for m in measured})
    per_file = {i: {"file": m["file"], "element": m["element"], "label": m["label"], "error": m["error"]}
                for i, m in enumerate(measured)}
    probs: dict[str, dict[int, list]] = {}
    accuracies: dict[str, list] = {}
    inputs: dict[int, np.ndarray] = {}
    for seed in range(n_seeds):
        bundles = {}
        for element in dev_elements:
            if (dataset["element"] == element).any():
                meta_b, models = train_bundle(dataset, meta, element, cfg | {"seed": seed})
                if models:
                    bundles[element] = (meta_b, models, None)
        cross_bundle = None
        if cross and pp.energy_axis == "relative":
            cross_bundle = train_cross_bundle(dataset, meta, cfg | {"seed": seed})
        seed_pred: dict[str, dict[int, str]] = {}
        for i, m in enumerate(measured):
            if m["energy"] is None:
                continue
            targets = []
            if m["element"] in bundles:
                targets.append((bundles[m["element"]][0], bundles[m["element"]][1], ""))
            if cross_bundle is not None and m["element"] in cross_bundle[0]["elements"]:
                targets.append((cross_bundle[0], cross_bundle[1], "_x"))
            for meta_b, models, suffix in targets:
                try:
                    x, prep = model_input(m["energy"], m["mu"], m["element"], meta_b, m["e0"])
                except XanesError as exc:
                    per_file[i]["error"] = str(exc)[:200]
                    continue
                if suffix == "" and seed == 0:
                    inputs[i] = x
                    per_file[i]["e0_used"] = prep.get("e0_prepared", m["e0"])
                z = standardise(x[None, :], meta_b, m["element"] if suffix else None)
                for kind, model in models.items():
                    p = class_probabilities(model, z)[0]
                    probs.setdefault(kind + suffix, {}).setdefault(i, []).append(p)
                    seed_pred.setdefault(kind + suffix, {})[i] = CLASSES[int(np.argmax(p))]
        for name, pred in seed_pred.items():
            labels = [measured[i]["label"] for i in range(len(measured))]
            predicted = [pred.get(i, "none") for i in range(len(measured))]  # unread files count as wrong
            accuracies.setdefault(name, []).append(_metrics(labels, predicted))
    # (a) distances to the nearest FEFF spectrum of the same element, same / other class
    d_same, d_other = [], []
    for i, x in inputs.items():
        m = measured[i]
        part = dataset[dataset["element"] == m["element"]]
        feff = np.stack(part["mu"].to_numpy()).astype(np.float64)
        distance = np.abs(feff - x).mean(axis=1)
        same = part["label"].to_numpy() == m["label"]
        if same.any() and (~same).any():
            per_file[i] |= {"d_same": float(distance[same].min()), "d_other": float(distance[~same].min()),
                            "nearest_label": str(part["label"].to_numpy()[int(np.argmin(distance))])}
            d_same.append(per_file[i]["d_same"])
            d_other.append(per_file[i]["d_other"])
    d_same, d_other = np.array(d_same), np.array(d_other)
    summary = {"choice": choice.name, "group": choice.group, "what": choice.what,
               "preprocessing": pp.as_dict(), "shifts_ev": list(choice.shifts),
               "n_files": len(measured), "n_distance": int(len(d_same)),
               "d_same": float(d_same.mean()) if len(d_same) else np.nan,
               "d_other": float(d_other.mean()) if len(d_other) else np.nan,
               "d_ratio": float(np.mean(d_same / d_other)) if len(d_same) else np.nan,
               "nn_correct": float(np.mean(d_same < d_other)) if len(d_same) else np.nan,
               "n_seeds": n_seeds, "n_feff": int(len(dataset))}
    for name, runs in accuracies.items():
        for key in ("accuracy", "balanced_accuracy", "recall_T4", "recall_S5", "recall_O6"):
            values = np.array([r[key] for r in runs], float)
            summary[f"{name}_{key}"] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            if key in ("accuracy", "balanced_accuracy"):
                summary[f"{name}_{key}_sd"] = float(np.nanstd(values, ddof=1)) if len(values) > 1 else np.nan
    rows = []
    for i, record in per_file.items():
        row = {"choice": choice.name, **record}
        for name, by_file in probs.items():
            if i in by_file:
                mean = np.mean(by_file[i], axis=0)
                row |= {f"{name}_p_{c}": float(v) for c, v in zip(CLASSES, mean)}
                row[f"{name}_label"] = CLASSES[int(np.argmax(mean))]
        rows.append(row)
    if cv_folds and pp.energy_axis == "relative":
        summary |= _feff_cv(dataset, meta, cfg, cv_folds)
    summary["seconds"] = round(time.monotonic() - start, 1)
    log.info("sim-to-real %s: %s", choice.name, {k: summary[k] for k in ("d_same", "d_other", "nn_correct")})
    return summary, pd.DataFrame(rows)


# --------------------------------------------------------------------------- the report


def _pct(value, sd=None) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    text = f"{100 * value:.0f}"
    return text + (f" ± {100 * sd:.0f}" if sd is not None and np.isfinite(sd) else "") + " %"


MODEL_COLUMNS = (("mlp", "MLP"), ("cnn", "CNN"), ("mlp_x", "MLP×"), ("cnn_x", "CNN×"))


def markdown(summary: pd.DataFrame, per_file: pd.DataFrame, chosen: str, sources: dict) -> str:
    lines = ["# XANES sim-to-real: FEFF cache vs the measured development set", "",
             f"FEFF spectra: {sources.get('n_feff_sites')} cached sites ({sources.get('caches')}); measured: "
             f"{sources.get('n_files')} files of {sources.get('labels')} ({sources.get('class_counts')}). "
             "A constant \"O6\" would score 88 % accuracy and 33 % balanced accuracy here.", "",
             "(a) distances: mean over measured files of the mean |Δμ| on the model grid to the nearest FEFF spectrum "
             "of the same element and class (d_same) and of another class (d_other); NN = fraction of files whose "
             "nearest FEFF spectrum has the right class. (b) accuracy / balanced accuracy (mean recall of O6, T4, S5) "
             "on the measured files of models trained on the cache with that preprocessing: per-element MLP, CNN and "
             f"the cross-element MLP×, CNN× (relative grid only); mean ± sd over {int(summary['n_seeds'].iloc[0])} "
             "seeds. FEFF CV F1: the cross-element MLP cross-validated on the FEFF spectra themselves (5 of the "
             "workflow's bootstrap folds, macro F1 pooled over elements): what the preprocessing leaves of the "
             "simulated classes' differences (broadening smooths them away).", ""]
    head = ("| group | choice | what | d_same | d_other | NN | "
            + " | ".join(f"{label} acc / bal" for _, label in MODEL_COLUMNS) + " | FEFF CV F1 (MLP×) |")
    lines += [head, "|---|---|---|---:|---:|---:|" + "---:|" * len(MODEL_COLUMNS) + "---:|"]
    for _, row in summary.iterrows():
        cells = []
        for name, _ in MODEL_COLUMNS:
            acc = row.get(f"{name}_accuracy", np.nan)
            bal = row.get(f"{name}_balanced_accuracy", np.nan)
            cells.append("—" if not np.isfinite(acc) else f"{_pct(acc, row.get(f'{name}_accuracy_sd'))} / {_pct(bal)}")
        mark = " **(default)**" if row["choice"] == chosen else ""
        cv = row.get("feff_cv_macro_f1", np.nan)
        lines.append(f"| {row['group']} | {row['choice']}{mark} | {row['what']} | {row['d_same']:.3f} | "
                     f"{row['d_other']:.3f} | {_pct(row['nn_correct'])} | " + " | ".join(cells)
                     + f" | {'—' if not np.isfinite(cv) else f'{cv:.2f}'} |")
    for label, name in (("old", "old"), ("chosen", chosen)):
        part = per_file[per_file["choice"] == name]
        if part.empty:
            continue
        lines += ["", f"Per file, {label} preprocessing ({name}; seed-averaged probabilities):", "",
                  "| file | element | label | " + " | ".join(l for _, l in MODEL_COLUMNS) + " | nearest FEFF | d_same | d_other |",
                  "|---|---|---|" + "---|" * len(MODEL_COLUMNS) + "---|---:|---:|"]
        for _, row in part.iterrows():
            cells = []
            for model, _ in MODEL_COLUMNS:
                value = row.get(f"{model}_label")
                if isinstance(value, str):
                    ok = "✓" if value == row["label"] else "✗"
                    cells.append(f"{value} {ok} ({row.get(f'{model}_p_{value}', np.nan):.2f})")
                else:
                    cells.append("—")
            d_same, d_other = row.get("d_same", np.nan), row.get("d_other", np.nan)
            nearest = row.get("nearest_label")
            lines.append(f"| {row['file']} | {row['element']} | {row['label']} | " + " | ".join(cells)
                         + f" | {nearest if isinstance(nearest, str) else '—'} | "
                         f"{d_same:.3f} | {d_other:.3f} |")
    lines += ["", "Not computable here: a larger FMS radius (the cache holds FEFF `fast` spectra, FMS 5 Å; new FEFF "
              "runs are outside this comparison)."]
    return "\n".join(lines) + "\n"


def run_comparison(caches, labels_path, out_md, out_csv, per_file_csv=None, n_seeds: int = 3,
                   train_cfg: dict | None = None, choices: list[Choice] | None = None, names=None,
                   chosen: str = "chosen") -> pd.DataFrame:
    """Evaluate every choice, write the Markdown table, the summary CSV and the per-file CSV."""
    from ..utils.atomic import atomic_write_text

    cache = read_caches(caches)
    spectra = cache_spectra(cache)
    measured = read_development_set(labels_path)
    choices = choices or default_choices()
    if names:
        choices = [c for c in choices if c.name in set(names)]
    counts = pd.Series([m["label"] for m in measured]).value_counts().to_dict()
    sources = {"caches": ", ".join(str(c) for c in caches), "n_feff_sites": len(cache), "labels": str(labels_path),
               "n_files": len(measured), "class_counts": ", ".join(f"{k} {v}" for k, v in counts.items())}
    out_csv = Path(out_csv)
    summaries, files = [], []
    for choice in choices:  # the tables are rewritten after every choice (a long run can be read as it goes)
        summary, per_file = evaluate_choice(choice, spectra, measured, n_seeds=n_seeds, train_cfg=train_cfg)
        summaries.append(summary)
        files.append(per_file)
        log.info("%s done in %.0f s", choice.name, summary["seconds"])
        summary = pd.DataFrame(summaries)
        per_file = pd.concat(files, ignore_index=True)
        flat = summary.copy()
        flat["preprocessing"] = flat["preprocessing"].map(lambda d: ";".join(f"{k}={v}" for k, v in d.items()))
        flat["shifts_ev"] = flat["shifts_ev"].map(lambda v: " ".join(f"{s:g}" for s in v))
        atomic_write_text(out_csv, flat.to_csv(index=False))
        atomic_write_text(Path(per_file_csv) if per_file_csv else out_csv.with_name(out_csv.stem + "_per_file.csv"),
                          per_file.to_csv(index=False))
        atomic_write_text(out_md, markdown(summary, per_file, chosen, sources))
    return summary
