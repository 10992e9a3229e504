"""Bench section ``ensemble_jobs``: six ``xtalspec xrd train`` commands against one
``xtalspec xrd train-ensemble`` command on the pipeline's XRD data set, as the pipeline runs them
(whole processes), with the largest difference between the members' losses in the two runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .common import NotAvailable


def section_ensemble_jobs(dataset, members: int, epochs: int, threads: int, work_dir) -> dict:
    """As the pipeline runs them: ``members`` sequential ``xtalspec xrd train`` commands against
    one ``xtalspec xrd train-ensemble`` command (SpgNet, range inf, fold 1, CPU, same epochs and
    data), each a fresh process that loads the data set; also the largest difference between a
    member's per-epoch losses in the two runs (0 on CPU: the same members)."""
    import shutil
    import subprocess

    import pandas as pd

    dataset = Path(dataset)
    if not dataset.is_file():
        raise NotAvailable(f"no XRD data set at {dataset}: run `snakemake {dataset}` first or pass --xrd-dataset")
    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)
    seeds = list(range(1, members + 1))
    common = ["--dataset", str(dataset), "--model", "spgnet", "--range", "inf", "--fold", "1", "--epochs",
              str(epochs), "--threads", str(threads), "--device", "cpu"]
    cli = [sys.executable, "-m", "xtalspec.cli", "xrd"]
    env = dict(os.environ, XTALSPEC_GPU_COUNT="0")
    t0 = time.perf_counter()
    for seed in seeds:
        subprocess.run([*cli, "train", *common, "--seed", str(seed), "--out", str(work / "sequential" / f"seed{seed}")],
                       check=True, capture_output=True, env=env)
    sequential_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([*cli, "train-ensemble", *common, "--seeds", *map(str, seeds), "--out", str(work / "together")],
                   check=True, capture_output=True, env=env)
    together_s = time.perf_counter() - t0
    diffs, n_train = [], None
    for seed in seeds:
        alone = pd.read_csv(work / "sequential" / f"seed{seed}" / "history.csv")
        joint = pd.read_csv(work / "together" / f"seed{seed}" / "history.csv")
        diffs.append(float((alone["loss"] - joint["loss"]).abs().max()))
    from ..utils.tables import read_frame

    n_train = int(read_frame(work / "together" / "seed1" / "predictions.parquet")[1]["n_train"])
    shutil.rmtree(work, ignore_errors=True)
    model_samples = members * n_train * epochs
    return {"parameters": {"dataset": str(dataset), "model": "spgnet", "range": "inf", "fold": 1,
                           "members": members, "epochs": epochs, "threads": threads, "device": "cpu",
                           "timed": "whole commands: process start, data loading, training, predictions, writes"},
            "results": {"n_members": members, "n_train": n_train, "sequential_s": sequential_s,
                        "together_s": together_s, "sequential_model_samples_per_s": model_samples / sequential_s,
                        "together_model_samples_per_s": model_samples / together_s,
                        "max_loss_difference": max(diffs)},
            "ratios": {"sequential_over_together": sequential_s / together_s}}

