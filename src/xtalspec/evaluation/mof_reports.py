"""Reports of paper 001 (one-to-one MOF identification from powder XRD): top-k accuracies of the
CNN and the baselines (Fig. 3a), accuracy against library size (Fig. 3b), an NCA map of measured
(or test) patterns, and Grad-CAM class activation maps of the last conv layer.

Every table and figure carries the ``noise_source`` of the training data ("measured baseline
noise" or "synthetic noise", see :mod:`xtalspec.datasets.mof_patterns`) when the caller gives
it. Accuracies are fractions in the inputs and in the CSVs (``accuracy``), percentages in the
Markdown tables and the figures. The paper reports, for its CNN on the 30 measured patterns of 10
MOFs with a 1,012-MOF library, top-1 56.7 % and top-5 96.7 %; its baselines (naive Bayes, kNN,
logistic regression, random forest, SVM) stay below 50 % for top-1 to top-5 (no exact values
given, so none are drawn). :func:`write_report` (``xtalspec mof report``) writes all of them and a
JSON summary to the paths it is given.

Grad-CAM (:func:`grad_cam`): for the input pattern ``x`` and class ``c``, ``A = features(x)``
(the last conv layer's activations, K channels × L positions), ``α_k = mean_l ∂y_c/∂A_kl``
(``y_c`` the logit, before softmax), ``cam = ReLU(Σ_k α_k A_k)`` (L values), upsampled to the
input length by linear interpolation with ``align_corners=False`` (position ``l`` of the maps
is centred on input point ``(l + ½)·n_points/L − ½``). The raw map is returned; figures scale it
to a maximum of 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..datasets.mof_patterns import TWO_THETA
from ..utils.atomic import atomic_write_text
from .classification import top_k_accuracy
from .report_io import markdown_table, pyplot, save_png

PAPER = "paper 001 (MOF identification from powder XRD, CNN on 2θ 5–50°, Cu Kα)"
#: the paper's CNN on its 30 measured patterns (10 MOFs), library of 1,012 MOFs (percent)
PAPER_CNN_TOPK = {1: 56.7, 5: 96.7}
PAPER_LIBRARY_SIZE = 1012
PAPER_BASELINE_NOTE = "paper: every baseline < 50 % from top-1 to top-5 (no exact values)"
MODEL_LABELS = {"cnn": "CNN", "naive_bayes": "Naive Bayes", "knn": "kNN", "logistic_regression": "Logistic regression",
                "random_forest": "Random forest", "svm": "SVM"}
COLOURS = {"cnn": "#1f77b4", "naive_bayes": "#ff7f0e", "knn": "#2ca02c", "logistic_regression": "#d62728",
           "random_forest": "#9467bd", "svm": "#8c564b"}


def _label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def _colour(model: str, i: int) -> str:
    return COLOURS.get(model, f"C{i % 10}")


_pyplot, _save, _markdown = pyplot, save_png, markdown_table


def _stem_paths(out_dir, stem: str, paths: dict | None) -> dict[str, Path]:
    paths = dict(paths or {})
    return {ext: Path(paths[ext]) if paths.get(ext) else Path(out_dir) / f"{stem}.{ext}" for ext in ("csv", "md", "png")}


def _pct(value) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


# --------------------------------------------------------------------------- Fig. 3a


def topk_table(probabilities_by_model: dict[str, np.ndarray], y_true: np.ndarray, ks=(1, 2, 3, 4, 5),
               out_dir=".", noise_source: str = "", stem: str = "mof_topk", paths: dict | None = None) -> pd.DataFrame:
    """Top-k accuracies of every model, with the paper's CNN (top-1, top-5) beside.

    Writes ``{stem}.csv`` (long: model, label, source, k, accuracy, accuracy_percent, n_test,
    noise_source), ``{stem}.md`` (models × k in percent) and ``{stem}.png`` (grouped bars, the
    paper's CNN hatched); ``paths`` ({"csv", "md", "png"}) gives whole paths instead. Returns the
    long table.
    """
    paths = _stem_paths(out_dir, stem, paths)
    y_true = np.asarray(y_true)
    ks = [int(k) for k in ks]
    rows = []
    for model, probs in probabilities_by_model.items():
        probs = np.asarray(probs)
        if probs.shape[0] != len(y_true):
            raise ValueError(f"{model}: {probs.shape[0]} probability rows for {len(y_true)} labels")
        for k in ks:
            acc = top_k_accuracy(probs, y_true, k)
            rows.append({"model": model, "label": _label(model), "source": "this run", "k": k, "accuracy": acc,
                         "accuracy_percent": round(100 * acc, 2), "n_test": len(y_true), "noise_source": noise_source})
    for k, value in PAPER_CNN_TOPK.items():
        rows.append({"model": "cnn", "label": "CNN (paper)", "source": "paper", "k": k, "accuracy": value / 100,
                     "accuracy_percent": value, "n_test": 30, "noise_source": "measured baseline noise (paper)"})
    frame = pd.DataFrame(rows)
    atomic_write_text(paths["csv"], frame.to_csv(index=False))

    wide = frame.pivot_table(index="label", columns="k", values="accuracy", sort=False)
    table = pd.DataFrame({"Model": wide.index,
                          **{f"Top-{k}": [_pct(v) for v in wide.get(k, pd.Series(np.nan, wide.index))] for k in ks}})
    text = [f"# Top-k identification accuracy (%) — {len(y_true)} test patterns", "",
            f"Training noise: **{noise_source or 'not stated'}**.", "", _markdown(table), "",
            f"Paper: {PAPER}; CNN on 30 measured patterns, 1,012-MOF library. {PAPER_BASELINE_NOTE}."]
    atomic_write_text(paths["md"], "\n".join(text) + "\n")

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    ours = [m for m in probabilities_by_model]
    n_bars = len(ours) + 1
    width = 0.8 / n_bars
    x = np.arange(len(ks))
    for i, model in enumerate(ours):
        values = [100 * top_k_accuracy(np.asarray(probabilities_by_model[model]), y_true, k) for k in ks]
        ax.bar(x + (i - (n_bars - 1) / 2) * width, values, width, label=_label(model), color=_colour(model, i))
    paper = [PAPER_CNN_TOPK.get(k, np.nan) for k in ks]
    ax.bar(x + (n_bars - 1) / 2 * width, paper, width, label="CNN (paper)", facecolor="white",
           edgecolor=COLOURS["cnn"], hatch="//")
    ax.axhline(50, color="grey", lw=0.8, ls=":", label="paper baselines < 50 %")
    ax.set_xticks(x, [f"Top-{k}" for k in ks])
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"MOF identification, {len(y_true)} test patterns — training noise: {noise_source or 'n/a'}",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    _save(fig, paths["png"])
    return frame


# --------------------------------------------------------------------------- Fig. 3b


def library_size_curve(results: list[dict], out_dir=".", noise_source: str = "",
                       stem: str = "mof_library_size", paths: dict | None = None) -> pd.DataFrame:
    """Top-1 / top-5 accuracy (fractions) against library size for each model.

    ``results``: dicts with ``library_size``, ``model``, ``top1``, ``top5``. Writes
    ``{stem}.csv``, ``{stem}.md`` and ``{stem}.png`` (top-1 solid, top-5 dashed; the paper's CNN
    at 1,012 MOFs as open markers); ``paths`` ({"csv", "md", "png"}) gives whole paths instead.
    Returns the table sorted by model and library size.
    """
    paths = _stem_paths(out_dir, stem, paths)
    frame = pd.DataFrame(results, columns=["library_size", "model", "top1", "top5"])
    frame = frame.sort_values(["model", "library_size"], kind="stable").reset_index(drop=True)
    frame["noise_source"] = noise_source
    atomic_write_text(paths["csv"], frame.to_csv(index=False))
    table = pd.DataFrame({"Model": [_label(m) for m in frame["model"]], "Library size": frame["library_size"],
                          "Top-1 (%)": [_pct(v) for v in frame["top1"]],
                          "Top-5 (%)": [_pct(v) for v in frame["top5"]]})
    text = ["# Accuracy against library size", "", f"Training noise: **{noise_source or 'not stated'}**.", "",
            _markdown(table), "",
            f"Paper: CNN top-1 {PAPER_CNN_TOPK[1]} %, top-5 {PAPER_CNN_TOPK[5]} % at {PAPER_LIBRARY_SIZE} MOFs; "
            "top-5 stays high from 189 to 1,012 MOFs."]
    atomic_write_text(paths["md"], "\n".join(text) + "\n")

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for i, (model, part) in enumerate(frame.groupby("model", sort=False)):
        colour = _colour(model, i)
        ax.plot(part["library_size"], 100 * part["top1"], "-o", color=colour, label=f"{_label(model)} top-1")
        ax.plot(part["library_size"], 100 * part["top5"], "--s", color=colour, label=f"{_label(model)} top-5")
    ax.plot([PAPER_LIBRARY_SIZE], [PAPER_CNN_TOPK[1]], "o", mfc="none", mec="k", ms=9, label="CNN paper top-1")
    ax.plot([PAPER_LIBRARY_SIZE], [PAPER_CNN_TOPK[5]], "s", mfc="none", mec="k", ms=9, label="CNN paper top-5")
    ax.set_xlabel("library size (MOFs)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Accuracy vs library size — training noise: {noise_source or 'n/a'}", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    _save(fig, paths["png"])
    return frame


# --------------------------------------------------------------------------- NCA map


def nca_map(features_or_patterns: np.ndarray, labels, path, seed: int = 0, names: dict | None = None,
            noise_source: str = "", pca_components: int | None = 50, csv_path=None) -> np.ndarray:
    """2-D NeighborhoodComponentsAnalysis embedding (n, 2) of patterns or features, scattered
    coloured by label (``names`` maps labels to legend text), written to ``path`` (PNG) with the
    coordinates in ``csv_path`` (default: ``path`` with suffix ``.csv``). Inputs are first reduced to at most
    ``pca_components`` principal components (fewer than samples − 1; ``None`` skips) so that NCA
    on 2,251-point patterns stays quick; NCA uses ``random_state=seed``."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    x = np.asarray(features_or_patterns, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels)
    if pca_components and x.shape[1] > pca_components:
        n_comp = int(max(2, min(pca_components, x.shape[0] - 1)))
        x = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    nca = NeighborhoodComponentsAnalysis(n_components=2, random_state=seed, max_iter=200)
    embedding = nca.fit_transform(x, labels)
    path = Path(path)
    text_labels = [str((names or {}).get(v, v)) for v in labels]
    frame = pd.DataFrame({"label": labels, "name": text_labels, "nca1": embedding[:, 0], "nca2": embedding[:, 1],
                          "noise_source": noise_source})
    atomic_write_text(Path(csv_path) if csv_path else path.with_suffix(".csv"), frame.to_csv(index=False))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, value in enumerate(dict.fromkeys(labels.tolist())):
        rows = labels == value
        ax.scatter(embedding[rows, 0], embedding[rows, 1], s=28, color=f"C{i % 10}",
                   marker="osD^v<>p*h"[i // 10 % 10], label=str((names or {}).get(value, value)))
    ax.set_xlabel("NCA 1")
    ax.set_ylabel("NCA 2")
    ax.set_title(f"NCA map, {len(labels)} patterns" + (f" — {noise_source}" if noise_source else ""), fontsize=9)
    if len(set(labels.tolist())) <= 20:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    return embedding


# --------------------------------------------------------------------------- Grad-CAM


def grad_cam(model: torch.nn.Module, x, target_class: int) -> np.ndarray:
    """Grad-CAM heat map (n_points,) of one pattern ``x`` (n_points,) for ``target_class``
    (definition in the module docstring). ``model`` needs ``features(x)`` and
    ``classify(features)``; it is run in eval mode, float32, on its own device, and put back in
    its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device).reshape(1, -1)
    n_points = xt.shape[-1]
    try:
        with torch.enable_grad():
            features = model.features(xt)
            if not features.requires_grad:
                features.requires_grad_(True)
            logit = model.classify(features)[0, int(target_class)]
            (grads,) = torch.autograd.grad(logit, features, allow_unused=True)
        if grads is None:
            grads = torch.zeros_like(features)
        weights = grads[0].mean(dim=-1)  # (K,)
        cam = torch.relu((weights[:, None] * features[0].detach()).sum(dim=0))  # (L,)
        cam = F.interpolate(cam[None, None], size=n_points, mode="linear", align_corners=False)[0, 0]
    finally:
        model.train(was_training)
    return cam.detach().float().cpu().numpy()


def cam_figure(model: torch.nn.Module, patterns: np.ndarray, classes, names, path, two_theta: np.ndarray = TWO_THETA,
               noise_source: str = "", n_show: int = 4, csv_path=None) -> pd.DataFrame:
    """Patterns (black) with their Grad-CAM maps (scaled to max 1, filled) for the first
    ``n_show`` (4) patterns; ``classes`` are the target class indices, ``names`` the titles.
    Writes ``path`` (PNG) and the curves to ``csv_path`` (default: ``path`` with suffix ``.csv``;
    two_theta, then ``pattern_i`` / ``cam_i``). Returns that table."""
    patterns = np.atleast_2d(np.asarray(patterns, dtype=np.float32))[:n_show]
    classes, names = list(classes)[:n_show], list(names)[:n_show]
    columns = {"two_theta": two_theta}
    plt = _pyplot()
    fig, axes = plt.subplots(len(patterns), 1, figsize=(8, 1.9 * len(patterns) + 0.4), sharex=True, squeeze=False)
    for i, (pattern, cls, name) in enumerate(zip(patterns, classes, names)):
        cam = grad_cam(model, pattern, int(cls))
        scaled = cam / cam.max() if cam.max() > 0 else cam
        columns[f"pattern_{i}"], columns[f"cam_{i}"] = pattern, cam
        ax = axes[i, 0]
        ax.fill_between(two_theta, 0, scaled, color="#d62728", alpha=0.35, lw=0, label="Grad-CAM (max 1)")
        ax.plot(two_theta, pattern / max(float(pattern.max()), 1e-12), color="k", lw=0.7, label="pattern")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("rel.")
        ax.set_title(f"{name} (class {int(cls)})", fontsize=9)
        if i == 0:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("2θ (°), Cu Kα")
    title = "Class activation maps, last conv layer" + (f" — {noise_source}" if noise_source else "")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    frame = pd.DataFrame(columns)
    atomic_write_text(Path(csv_path) if csv_path else Path(path).with_suffix(".csv"), frame.to_csv(index=False))
    return frame


# --------------------------------------------------------------------------- xtalspec mof report

#: the paper's CNN, top-1 … top-5 on its 30 measured patterns (1,012-MOF library; Table S6)
PAPER_CNN_TOPK_ALL = {1: 56.7, 2: 76.7, 3: 90.0, 4: 93.3, 5: 96.7}
KS = (1, 2, 3, 4, 5)

#: default names of the report's files (``xtalspec mof report --out-dir DIR``)
REPORT_FILES = {"topk_md": "mof_topk.md", "topk_csv": "mof_topk.csv", "topk_png": "mof_topk.png",
                "size_md": "mof_library_size.md", "size_csv": "mof_library_size.csv",
                "size_png": "mof_library_size.png", "nca_png": "mof_nca.png", "nca_csv": "mof_nca.csv",
                "cam_png": "mof_cam.png", "cam_csv": "mof_cam.csv", "summary": "mof_summary.json"}


def _read_runs(paths) -> list[tuple[object, dict]]:
    from ..utils.tables import read_frame

    return [read_frame(p) for p in paths]


def _noise_label(metas) -> str:
    labels = sorted({m["noise_source"] for m in metas})
    return " + ".join(labels)


def _append(path: Path, lines: list[str]) -> None:
    path = Path(path)
    atomic_write_text(path, path.read_text() + "\n".join(lines) + "\n")


def _model_scores(frame, k_max: int = 5):
    """({model: scores}, labels) for the top-k helpers, from the stored ranks (``rank_scores``)."""
    from ..datasets.mof_library import rank_scores

    out, labels = {}, None
    for model, part in frame.groupby("model", sort=False):
        out[model], labels = rank_scores(part["true_rank"].to_numpy(), k_max)
    return out, labels


def write_report(cnn_paths, baseline_paths, model_path, test_path, paths: dict, nca_mofs: int = 10, cam_mofs: int = 4,
                 seed: int = 0) -> dict:
    """``xtalspec mof report``: Fig. 3a (largest library), Fig. 3b (every library size), NCA map,
    CAMs and a JSON summary, into ``paths`` (the keys of :data:`REPORT_FILES`). Returns the summary."""
    from ..datasets.mof_library import topk_from_ranks
    from ..models.mofnet import MofCNN
    from ..utils.tables import read_frame

    runs = {}
    for frame, meta in _read_runs(cnn_paths) + _read_runs(baseline_paths):
        size = int(meta["library_size"])
        entry = runs.setdefault(size, {"frames": [], "metas": []})
        entry["frames"].append(frame)
        entry["metas"].append(meta)
    for size, entry in runs.items():
        digests = {m["test_digest"] for m in entry["metas"]}
        if len(digests) != 1:
            raise ValueError(f"library size {size}: the CNN and baseline runs saw different test sets ({digests}); "
                             "rerun them with the same settings")
    all_metas = [m for e in runs.values() for m in e["metas"]]
    noise = _noise_label(all_metas)
    largest = max(runs)
    frame = pd.concat(runs[largest]["frames"], ignore_index=True)
    meta = runs[largest]["metas"][0]
    test_note = f"Test set: {meta['test_description']}; FFT-denoised as in the paper ({meta['fft_denoised']} filtered)."
    library_note = (f"Library: {largest} MOFs (paper: 1,012); training data: {meta['settings']['augment']['n_variants']} "
                    f"noisy variants per MOF (paper 72), 4:1 train/validation.")

    # Fig. 3a: top-1 … top-5 of every model at the largest library size
    scores, y = _model_scores(frame)
    order = ["cnn"] + [m for m in scores if m != "cnn"]
    topk_table({m: scores[m] for m in order if m in scores}, y, KS, noise_source=noise,
               paths={"csv": paths["topk_csv"], "md": paths["topk_md"], "png": paths["topk_png"]})
    paper = ", ".join(f"top-{k} {v}" for k, v in PAPER_CNN_TOPK_ALL.items())
    _append(paths["topk_md"], ["", library_note, test_note, f"Paper CNN, all ranks (Table S6): {paper} %."])

    # Fig. 3b: top-1 / top-5 against library size
    results = []
    for size, entry in sorted(runs.items()):
        for part in entry["frames"]:
            for model, rows in part.groupby("model", sort=False):
                topk = topk_from_ranks(rows["true_rank"], (1, 5))
                results.append({"library_size": size, "model": model, "top1": topk[1], "top5": topk[5]})
    curve = library_size_curve(results, noise_source=noise,
                               paths={"csv": paths["size_csv"], "md": paths["size_md"], "png": paths["size_png"]})
    _append(paths["size_md"], ["", f"Library sizes: {', '.join(map(str, sorted(runs)))} MOFs, each the "
                                          "first MOFs of the seeded library order.", test_note])

    # NCA map and CAMs of the largest library's test patterns
    test, test_meta = read_frame(test_path)
    if test_meta["test_digest"] != meta["test_digest"]:
        raise ValueError(f"{test_path}: test patterns of another run than {cnn_paths[-1]}")
    patterns = np.stack(test["pattern"].to_numpy()).astype(np.float32)
    classes = test["true_class"].to_numpy()
    chosen = list(dict.fromkeys(classes.tolist()))[: max(2, int(nca_mofs))]
    rows = np.flatnonzero(np.isin(classes, chosen))
    names = dict(zip(test["true_class"], test["true_id"]))
    nca_map(patterns[rows], classes[rows], paths["nca_png"], seed=seed, names=names, noise_source=noise,
            csv_path=paths["nca_csv"])

    cnn_meta = next(m for m in runs[largest]["metas"] if m["model"] == "cnn")
    architecture = cnn_meta["architecture"]
    model = MofCNN(architecture["n_points"], architecture["n_classes"], padding=architecture["padding"])
    model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    model.eval()
    cnn_rows = frame[frame["model"] == "cnn"].set_index("row")
    cam_rows = [int(np.flatnonzero(classes == c)[0]) for c in chosen[: int(cam_mofs)]]
    titles = [f"{test['true_id'].iloc[r]} — CNN top-1: {cnn_rows.loc[r, 'predicted_id']}, true rank "
              f"{cnn_rows.loc[r, 'true_rank']}" for r in cam_rows]
    cam = cam_figure(model, patterns[cam_rows], classes[cam_rows], titles, paths["cam_png"], csv_path=paths["cam_csv"],
                        noise_source=noise, n_show=len(cam_rows))
    cam["noise_source"] = noise
    atomic_write_text(paths["cam_csv"], cam.to_csv(index=False))

    summary = {
        "noise_source": noise, "test_kind": meta["test_kind"], "test_description": meta["test_description"],
        "largest_library": largest, "library_sizes": sorted(runs),
        "topk_largest": {m: topk_from_ranks(rows["true_rank"], KS) for m, rows in frame.groupby("model", sort=False)},
        "library_size_curve": curve.drop(columns="noise_source").to_dict(orient="records"),
        "paper": {"cnn_topk_percent": PAPER_CNN_TOPK_ALL, "library_size": 1012,
                  "baselines": "every baseline < 50 % from top-1 to top-5", "test": "30 measured patterns of 10 MOFs"},
        "cam_mofs": [test["true_id"].iloc[r] for r in cam_rows], "nca_mofs": [names[c] for c in chosen],
        "inputs": {"cnn": [str(p) for p in cnn_paths], "baselines": [str(p) for p in baseline_paths],
                   "model": str(model_path), "test_patterns": str(test_path)},
    }
    atomic_write_text(paths["summary"], json.dumps(summary, indent=1, default=float) + "\n")
    return summary
