"""``xtalspec mof …``: one-to-one MOF identification from powder XRD (paper 001).

``patterns`` builds the library of theoretical patterns, ``train`` the CNN of one library size,
``baselines`` the five classical models on the same data, ``report`` Fig. 3a/3b, the NCA map and
the class activation maps (:func:`xtalspec.evaluation.mof_reports.write_report`). Data, seeds and
the measured-pattern inputs: :mod:`xtalspec.datasets.mof_library`.
"""

from __future__ import annotations

import json
import logging
import time

from ..utils.gpu_slots import wants_gpu
from .main import config_device

log = logging.getLogger("xtalspec.mof")

#: default names under ``mof train --out-dir DIR``
TRAIN_FILES = {"model": "model.pt", "predictions": "predictions.parquet", "history": "history.csv",
               "test_patterns": "test_patterns.parquet"}



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
    from ..evaluation.mof_reports import KS
    from ..evaluation.report_io import output_paths
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
    paths = output_paths(TRAIN_FILES, args.out_dir, model=args.model, predictions=args.predictions,
                         history=args.history, test_patterns=args.test_patterns)
    with atomic_path(paths["model"]) as tmp:
        torch.save(model.cpu().state_dict(), tmp)
    predictions = predictions_frame(probs, data, "cnn")
    topk = topk_from_ranks(predictions["true_rank"], KS)
    architecture = {"n_points": model.n_points, "n_classes": model.n_classes, "padding": model.padding}
    meta = _meta(args, data, "cnn", cfg, {"architecture": architecture, "train": model_cfg, "seconds": round(seconds, 1),
                                          "topk": topk, "history_last": history[-1] if history else None})
    write_frame(predictions, meta, paths["predictions"])
    history_frame = pd.DataFrame(history)
    history_frame["noise_source"] = data.noise_source
    atomic_write_text(paths["history"], history_frame.to_csv(index=False))
    test = pd.DataFrame({"row": range(len(data.y_test)), "true_class": data.y_test, "true_id": [data.ids[i] for i in
                         data.y_test], "test_source": data.test_source, "pattern": list(data.x_test)})
    write_frame(test, {"test_digest": data.test_digest, "test_kind": data.test_kind,
                       "test_description": data.test_description, "noise_source": data.noise_source,
                       "library_size": len(data.ids)}, paths["test_patterns"])
    print(json.dumps({"library_size": len(data.ids), "noise_source": data.noise_source, "seconds": round(seconds, 1),
                      "top1": topk[1], "top5": topk[5]}))
    return 0


def cmd_baselines(args) -> int:
    import pandas as pd

    from ..datasets.mof_library import predictions_frame, topk_from_ranks
    from ..evaluation.mof_reports import KS
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


def cmd_report(args) -> int:
    from ..evaluation.mof_reports import REPORT_FILES, write_report
    from ..evaluation.report_io import output_paths

    paths = output_paths(REPORT_FILES, args.out_dir, **{key: getattr(args, key) for key in REPORT_FILES})
    summary = write_report(args.cnn, args.baselines, args.model, args.test_patterns, paths,
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
    from ..evaluation.mof_reports import REPORT_FILES

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
    p.add_argument("--out-dir", default=None, help="folder for model.pt, predictions.parquet, history.csv, "
                                                   "test_patterns.parquet (unless given one by one)")
    p.add_argument("--model", default=None, help="the trained CNN (state dict)")
    p.add_argument("--predictions", default=None, help="test-set predictions (Parquet)")
    p.add_argument("--history", default=None, help="training history (CSV)")
    p.add_argument("--test-patterns", default=None, help="the test patterns (Parquet, for the report)")
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
    p.add_argument("--out-dir", default=None, help="folder of every report file under its default name "
                                                   "(unless the files are given one by one)")
    for key, name in REPORT_FILES.items():
        p.add_argument(f"--{key.replace('_', '-')}", default=None, help=f"default OUT_DIR/{name}")
    p.add_argument("--nca-mofs", type=int, default=10)
    p.add_argument("--cam-mofs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_report)
