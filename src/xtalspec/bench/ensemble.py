"""Bench section ``ensemble``: an ensemble trained together (one batched model,
:func:`xtalspec.training.ensemble.train_together`) against its members trained one after another
(:func:`xtalspec.training.loop.train`), in one process on synthetic δ-profiles
(:func:`synthetic_profiles`); the same members, so also their largest loss difference."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.spgnet import N_BINS, build_model
from ..models.stacked import default_conv_mode
from ..training.ensemble import keep_large_buffers, train_together
from ..training.loop import ArrayData, TrainConfig, pick_device, train
from .common import finite


def synthetic_profiles(n_samples: int, n_classes: int = 57, n_bins: int = N_BINS, seed: int = 0,
                       peaks: tuple[int, int] = (20, 300)) -> ArrayData:
    """Sparse δ-profiles shaped like the real ones: 20–300 peaks among 10,001 bins, intensities
    skewed towards weak, the strongest = 1; random class labels and volume z-scores."""
    from ..datasets.spgnet import densify

    rng = np.random.default_rng(seed)
    bins, values = [], []
    for _ in range(n_samples):
        k = int(rng.integers(peaks[0], peaks[1] + 1))
        b = np.sort(rng.choice(n_bins, size=k, replace=False))
        v = rng.random(k) ** 3
        v /= v.max()
        bins.append(b)
        values.append(v.astype(np.float32))
    bins_col, values_col = np.array(bins, dtype=object), np.array(values, dtype=object)
    return ArrayData(make_inputs=lambda r: densify(bins_col, values_col, r, n_bins),
                     labels=rng.integers(0, n_classes, n_samples).astype(np.int64),
                     volume=rng.standard_normal(n_samples).astype(np.float32))


def bench_together_vs_sequential(n_members: int = 6, n_samples: int = 160, epochs: int = 2, batch_size: int = 32,
                                 threads: int = 1, n_classes: int = 57, model: str = "spgnet",
                                 conv_mode: str = "auto", device: str = "cpu", same_allocator: bool = True) -> dict:
    """Wall time of ``n_members`` sequential loop.train runs vs one together run of the same
    members (same seeds, epochs, data, batch size, checkpointing every epoch, no validation).

    One-off costs are paid before timing (torch.optim's first use imports torch._dynamo, ~1 s).
    ``same_allocator``: apply :func:`~xtalspec.training.ensemble.keep_large_buffers` before the
    sequential runs too (it is process-wide), so only the batching is compared; False compares
    what the two CLI commands get (``xrd train`` leaves glibc's defaults alone)."""
    torch.set_num_threads(threads)
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # the first Adam imports torch._dynamo
    if same_allocator:
        keep_large_buffers()
    data = synthetic_profiles(n_samples, n_classes)
    seeds = list(range(1, n_members + 1))
    factory = lambda: build_model(model, n_classes)  # noqa: E731
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, threads=threads, device=device)
    with tempfile.TemporaryDirectory(prefix="xtalspec-bench-") as tmp:
        t0 = time.perf_counter()
        sequential_loss = []
        for seed in seeds:
            history = train(factory(), data, dataclasses.replace(cfg, seed=seed), Path(tmp) / f"seq{seed}")
            sequential_loss.append(history[-1]["loss"])
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, histories = train_together(factory, seeds, data, cfg, Path(tmp) / "together", conv_mode=conv_mode)
        together = time.perf_counter() - t0
    model_samples = n_members * n_samples * epochs
    together_loss = [h[-1]["loss"] for h in histories]
    return {
        "model": model, "n_members": n_members, "n_samples": n_samples, "epochs": epochs, "batch_size": batch_size,
        "threads": threads, "n_classes": n_classes,
        "conv_mode": default_conv_mode(pick_device(device)) if conv_mode == "auto" else conv_mode,
        "device": str(pick_device(device)), "same_allocator": same_allocator,
        "sequential_s": sequential, "together_s": together, "ratio": sequential / together,
        "sequential_model_samples_per_s": model_samples / sequential,
        "together_model_samples_per_s": model_samples / together,
        "max_rel_loss_difference": float(max(abs(a - b) / max(abs(a), 1e-12)
                                             for a, b in zip(sequential_loss, together_loss))),
    }


def section_ensemble(sizes: dict, repeats: int, threads: int, quick: bool = False) -> dict:
    """:func:`bench_together_vs_sequential` called ``sizes["ensemble_repeats"]`` times; the medians
    are reported (``repeats`` is not used: each call is one repeat)."""
    kwargs = {"n_members": sizes["ensemble_members"], "threads": threads}
    if quick:
        kwargs.update(n_samples=32, epochs=1)
    calls = sizes["ensemble_repeats"]
    runs = [dict(bench_together_vs_sequential(**kwargs)) for _ in range(calls)]
    result = dict(runs[0])
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if all(finite(v) for v in values) and len(values) > 1:
            result[key] = statistics.median(values)
    ratios = {k: float(v) for k, v in result.items()
              if ("ratio" in k.lower() or "speedup" in k.lower()) and finite(v)}
    out = {"parameters": kwargs | {"calls": calls, "reported": "median over calls" if calls > 1 else "one call"},
           "results": result, "ratios": ratios}
    if calls > 1:
        out["runs"] = runs
    if not ratios:
        out["note"] = "the function returned no numeric ratio/speedup key"
    return out
