"""``xtalspec mof …``: one-to-one MOF identification from powder XRD (paper 001).

``patterns`` builds the library of theoretical patterns, ``train`` the CNN of one library size,
``baselines`` the five classical models on the same data, ``report`` Fig. 3a/3b, the NCA map and
the class activation maps. Data, seeds and the measured-pattern inputs:
:mod:`xtalspec.datasets.mof_library`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..utils.gpu_slots import wants_gpu
from .main import config_device

log = logging.getLogger("xtalspec.mof")

#: the paper's CNN, top-1 … top-5 on its 30 measured patterns (1,012-MOF library; Table S6)
PAPER_CNN_TOPK_ALL = {1: 56.7, 2: 76.7, 3: 90.0, 4: 93.3, 5: 96.7}
KS = (1, 2, 3, 4, 5)


def _json_arg(text: str | None) -> dict:
    return json.loads(text) if text else {}


def _blas_threads(threads: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads))


def cmd_patterns(args) -> int:
    from ..datasets.mof_library import write_library

    summary = write_library(args.structures, args.out, args.rejects, max_mofs=args.max_mofs, seed=args.seed,
                            fwhm=args.fwhm, measured_test=args.measured_test)
    print(json.dumps(summary))
    return 0


def _run_data(args, cfg: dict):
    from ..datasets.mof_library import build_run_data, load_library

    library, _ = load_library(args.library)
    return build_run_data(library, args.size, cfg, measured_noise=args.measured_noise,
                          measured_test=args.measured_test, seed=args.seed)


def _meta(args, data, model: str, cfg: dict, extra: dict | None = None) -> dict:
    return data.meta() | {"model": model, "library": str(args.library), "config": cfg} | (extra or {})


@wants_gpu(device_of=config_device)
def cmd_train(args) -> int:
    import pandas as pd
    import torch

    from ..datasets.mof_library import predictions_frame, topk_from_ranks
    from ..training.mof import predict_proba, train_cnn
    from ..utils.atomic import atomic_path, atomic_write_text
    from ..utils.tables import write_frame

    cfg = _json_arg(args.config)
    train_cfg = dict(cfg.get("train") or {})
    threads = int(args.threads or train_cfg.get("threads", 1))
    train_cfg["threads"] = threads
    torch.set_num_threads(threads)
    with _blas_threads(threads):
        data = _run_data(args, cfg)
        log.info("size %d: %d training, %d validation, %d test patterns; %s", len(data.ids), len(data.y_train),
                 len(data.y_val), len(data.y_test), data.noise_source)
        start = time.monotonic()
        model_cfg = {k: train_cfg[k] for k in ("epochs", "batch_size", "lr", "threads", "device") if k in train_cfg}
        model_cfg |= {"seed": args.seed, "n_classes": len(data.ids)}
        model, history = train_cnn(data.x_train, data.y_train, data.x_val, data.y_val, model_cfg)
        seconds = time.monotonic() - start
        probs = predict_proba(model, data.x_test)
    out = Path(args.out_dir)
    with atomic_path(out / "model.pt") as tmp:
        torch.save(model.cpu().state_dict(), tmp)
    predictions = predictions_frame(probs, data, "cnn")
    topk = topk_from_ranks(predictions["true_rank"], KS)
    architecture = {"n_points": model.n_points, "n_classes": model.n_classes, "padding": model.padding}
    meta = _meta(args, data, "cnn", cfg, {"architecture": architecture, "train": model_cfg, "seconds": round(seconds, 1),
                                          "topk": topk, "history_last": history[-1] if history else None})
    write_frame(predictions, meta, out / "predictions.parquet")
    history_frame = pd.DataFrame(history)
    history_frame["noise_source"] = data.noise_source
    atomic_write_text(out / "history.csv", history_frame.to_csv(index=False))
    test = pd.DataFrame({"row": range(len(data.y_test)), "true_class": data.y_test, "true_id": [data.ids[i] for i in
                         data.y_test], "test_source": data.test_source, "pattern": list(data.x_test)})
    write_frame(test, {"test_digest": data.test_digest, "test_kind": data.test_kind,
                       "test_description": data.test_description, "noise_source": data.noise_source,
                       "library_size": len(data.ids)}, out / "test_patterns.parquet")
    print(json.dumps({"library_size": len(data.ids), "noise_source": data.noise_source, "seconds": round(seconds, 1),
                      "top1": topk[1], "top5": topk[5]}))
    return 0


def cmd_baselines(args) -> int:
    import pandas as pd

    from ..datasets.mof_library import predictions_frame, topk_from_ranks
    from ..training.mof import BASELINE_NAMES, baselines
    from ..utils.tables import write_frame

    cfg = _json_arg(args.config)
    base_cfg = dict(cfg.get("baselines") or {})
    threads = int(args.threads or base_cfg.get("threads", 1))
    base_cfg["threads"] = threads
    with _blas_threads(threads):
        data = _run_data(args, cfg)
        frames, seconds, topk = [], {}, {}
        for name in base_cfg.get("models", BASELINE_NAMES):
            start = time.monotonic()
            probs = baselines(data.x_train, data.y_train, data.x_test,
                              base_cfg | {"models": [name], "seed": args.seed, "n_classes": len(data.ids)})[name]
            seconds[name] = round(time.monotonic() - start, 1)
            frame = predictions_frame(probs, data, name)
            topk[name] = topk_from_ranks(frame["true_rank"], KS)
            frames.append(frame)
            log.info("%s: %.1f s, top-1 %.3f, top-5 %.3f", name, seconds[name], topk[name][1], topk[name][5])
    write_frame(pd.concat(frames, ignore_index=True), _meta(args, data, "baselines", cfg,
                                                            {"seconds": seconds, "topk": topk}), args.out)
    print(json.dumps({name: {"top1": t[1], "top5": t[5], "seconds": seconds[name]} for name, t in topk.items()}))
    return 0


# --------------------------------------------------------------------------- report


def _read_runs(paths) -> list[tuple[object, dict]]:
    from ..utils.tables import read_frame

    return [read_frame(p) for p in paths]


def _noise_label(metas) -> str:
    labels = sorted({m["noise_source"] for m in metas})
    return " + ".join(labels)


def _append(path: Path, lines: list[str]) -> None:
    from ..utils.atomic import atomic_write_text

    atomic_write_text(path, path.read_text() + "\n".join(lines) + "\n")


def _model_scores(frame, k_max: int = 5):
    """({model: scores}, labels) for the top-k helpers, from the stored ranks (``rank_scores``)."""
    from ..datasets.mof_library import rank_scores

    out, labels = {}, None
    for model, part in frame.groupby("model", sort=False):
        out[model], labels = rank_scores(part["true_rank"].to_numpy(), k_max)
    return out, labels


def write_report(cnn_paths, baseline_paths, model_path, test_path, out_dir, nca_mofs: int = 10, cam_mofs: int = 4,
                 seed: int = 0) -> dict:
    """Fig. 3a (largest library), Fig. 3b (every library size), NCA map and CAMs into ``out_dir``."""
    import numpy as np
    import pandas as pd
    import torch

    from ..datasets.mof_library import topk_from_ranks
    from ..evaluation import mof_reports as mr
    from ..models.mofnet import MofCNN
    from ..utils.atomic import atomic_write_text
    from ..utils.tables import read_frame

    out = Path(out_dir)
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
    mr.topk_table({m: scores[m] for m in order if m in scores}, y, KS, out, noise, stem="mof_topk")
    paper = ", ".join(f"top-{k} {v}" for k, v in PAPER_CNN_TOPK_ALL.items())
    _append(out / "mof_topk.md", ["", library_note, test_note, f"Paper CNN, all ranks (Table S6): {paper} %."])

    # Fig. 3b: top-1 / top-5 against library size
    results = []
    for size, entry in sorted(runs.items()):
        for part in entry["frames"]:
            for model, rows in part.groupby("model", sort=False):
                topk = topk_from_ranks(rows["true_rank"], (1, 5))
                results.append({"library_size": size, "model": model, "top1": topk[1], "top5": topk[5]})
    curve = mr.library_size_curve(results, out, noise, stem="mof_library_size")
    _append(out / "mof_library_size.md", ["", f"Library sizes: {', '.join(map(str, sorted(runs)))} MOFs, each the "
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
    mr.nca_map(patterns[rows], classes[rows], out / "mof_nca.png", seed=seed, names=names, noise_source=noise)

    cnn_meta = next(m for m in runs[largest]["metas"] if m["model"] == "cnn")
    architecture = cnn_meta["architecture"]
    model = MofCNN(architecture["n_points"], architecture["n_classes"], padding=architecture["padding"])
    model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    model.eval()
    cnn_rows = frame[frame["model"] == "cnn"].set_index("row")
    cam_rows = [int(np.flatnonzero(classes == c)[0]) for c in chosen[: int(cam_mofs)]]
    titles = [f"{test['true_id'].iloc[r]} — CNN top-1: {cnn_rows.loc[r, 'predicted_id']}, true rank "
              f"{cnn_rows.loc[r, 'true_rank']}" for r in cam_rows]
    cam = mr.cam_figure(model, patterns[cam_rows], classes[cam_rows], titles, out / "mof_cam.png",
                        noise_source=noise, n_show=len(cam_rows))
    cam["noise_source"] = noise
    atomic_write_text(out / "mof_cam.csv", cam.to_csv(index=False))

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
    atomic_write_text(out / "mof_summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    return summary


def cmd_report(args) -> int:
    summary = write_report(args.cnn, args.baselines, args.model, args.test_patterns, args.out_dir,
                           nca_mofs=args.nca_mofs, cam_mofs=args.cam_mofs, seed=args.seed)
    print(json.dumps({"noise_source": summary["noise_source"], "topk_largest": summary["topk_largest"]}))
    return 0


# --------------------------------------------------------------------------- parser


def _add_run_inputs(p) -> None:
    p.add_argument("--library", required=True, help="library Parquet of `xtalspec mof patterns`")
    p.add_argument("--size", type=int, required=True, help="library size: the first SIZE MOFs of the library order")
    p.add_argument("--config", default=None, help='JSON {"augment": …, "test": …, "denoise": …, "train"/"baselines": …}')
    p.add_argument("--measured-noise", default=None, help="folder of measured patterns whose baselines are the noise")
    p.add_argument("--measured-test", default=None, help="CSV file,mof_id of measured test patterns")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch / BLAS threads (default: the config's)")


def register(sub) -> None:
    mof = sub.add_parser("mof", help="MOF identification from powder XRD: library, CNN, baselines, reports")
    msub = mof.add_subparsers(dest="mof_command", required=True)

    p = msub.add_parser("patterns", help="library of theoretical powder patterns (Cu Kα, 2θ 5–50°, 2251 points)")
    p.add_argument("--structures", nargs="+", required=True, help="structure shards")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--max-mofs", type=int, default=None, help="library size (default: every structure)")
    p.add_argument("--seed", type=int, default=0, help="seed of the library order")
    p.add_argument("--fwhm", type=float, default=0.1, help="peak FWHM, degrees 2θ")
    p.add_argument("--measured-test", default=None, help="CSV file,mof_id: these MOFs are placed first")
    p.set_defaults(func=cmd_patterns)

    p = msub.add_parser("train", help="CNN of one library size on noise-augmented patterns")
    _add_run_inputs(p)
    p.add_argument("--out-dir", required=True, help="model.pt, predictions.parquet, history.csv, test_patterns.parquet")
    p.set_defaults(func=cmd_train)

    p = msub.add_parser("baselines", help="naive Bayes, kNN, logistic regression, random forest, SVM on the same data")
    _add_run_inputs(p)
    p.add_argument("--out", required=True, help="predictions Parquet (all baselines)")
    p.set_defaults(func=cmd_baselines)

    p = msub.add_parser("report", help="Fig. 3a/3b tables and charts, NCA map, class activation maps")
    p.add_argument("--cnn", nargs="+", required=True, help="CNN predictions of every library size")
    p.add_argument("--baselines", nargs="*", default=[], help="baseline predictions of every library size")
    p.add_argument("--model", required=True, help="CNN model.pt of the largest library size")
    p.add_argument("--test-patterns", required=True, help="test_patterns.parquet of the largest library size")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--nca-mofs", type=int, default=10)
    p.add_argument("--cam-mofs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_report)
