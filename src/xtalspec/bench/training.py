"""Bench section ``training``: training samples/s of every model family.

Timed Adam steps (zero_grad, forward, the training module's loss, backward, step) on one synthetic
batch of the real shape and batch size, after warm-up steps, median over repeats; the repeats
cycle through the models so that a busy machine slows all alike. :data:`TRAINING_MODELS` says
where each model's real training lives and what its synthetic batch imitates.
"""

from __future__ import annotations

import math
import statistics
import time

from ..spectra.pdf import MODEL_POINTS
from ..spectra.xrd import N_BINS
from .common import limited_threads

#: model -> (where its real training lives, what the synthetic batch imitates)
TRAINING_MODELS = {
    "spgnet": f"training/xrd.py + loop.py: δ-profiles (32, {N_BINS}), 12 groups, cross-entropy, Adam 1e-3",
    "spgvolnet": f"training/xrd.py + loop.py: δ-profiles (32, {N_BINS}), 12 groups, CE + MAE(volume z), Adam 1e-3",
    "pdfnet": f"training/pdf.py + loop.py: PDFs (64, {MODEL_POINTS}), 45 groups, class-weighted CE, Adam 5e-4",
    "xanes_mlp": "training/xanes.py: spectra (32, 100), 3 classes, cross-entropy, Adam 1e-3",
    "xanes_cnn": "training/xanes.py: spectra (32, 100), 3 classes, cross-entropy, Adam 1e-3",
    "mofnet": "training/mof.py: patterns (128, 2251), 189 MOFs, cross-entropy, Adam 1e-3",
    "elemnet": "training/compositions.py: element fractions (32, 86), MAE, Adam 1e-4",
    "irnet17": "training/compositions.py: element fractions (32, 86), MAE, Adam 1e-4",
    "padnet": f"training/padnet.py + loop.py: lab patterns (32, {N_BINS}), 12 groups, cross-entropy, Adam 1e-3",
}


def sparse_profiles(batch: int, n_bins: int, generator, peaks: int = 120):
    """δ-profile-like inputs: mostly zeros, ``peaks`` random bins per row with heights in (0, 1]."""
    import torch

    x = torch.zeros(batch, n_bins)
    cols = torch.randint(0, n_bins, (batch, peaks), generator=generator)
    x.scatter_(1, cols, torch.rand(batch, peaks, generator=generator))
    return x / x.amax(dim=1, keepdim=True).clamp_min(1e-6)


def lab_patterns(batch: int, n_bins: int, generator):
    """Rendered-pattern-like inputs: broadened peaks on a smooth background, max-normalised."""
    import torch
    import torch.nn.functional as F

    peaks = sparse_profiles(batch, n_bins, generator)
    kernel = torch.exp(-0.5 * (torch.arange(-30, 31, dtype=torch.float32) / 6.0) ** 2).view(1, 1, -1)
    broadened = F.conv1d(peaks.unsqueeze(1), kernel, padding=30).squeeze(1)
    grid = torch.linspace(0, 1, n_bins)
    background = 0.5 * torch.rand(batch, 1, generator=generator) * (1.0 - grid) ** 2
    x = broadened + background
    return x / x.amax(dim=1, keepdim=True)


def training_case(name: str, seed: int = 0) -> dict:
    """{model, step: zero-arg callable returning the loss, batch_size, input_shape, optimiser lr}."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name in ("spgnet", "spgvolnet", "padnet"):
        from ..models.padnet import build_padnet
        from ..models.spgnet import N_BINS, build_model
        from ..training.loop import loss_terms

        n_classes, batch = 12, 32
        if name == "padnet":
            model, x = build_padnet(n_classes), lab_patterns(batch, N_BINS, g)
        else:
            model, x = build_model(name, n_classes), sparse_profiles(batch, N_BINS, g)
        y = torch.randint(0, n_classes, (batch,), generator=g)
        v = torch.randn(batch, generator=g) if name == "spgvolnet" else None
        return {"model": model, "lr": 1e-3, "batch_size": batch, "input_shape": [batch, N_BINS],
                "n_outputs": n_classes, "loss": lambda: loss_terms(model(x), y, v, 1.0)["loss"]}
    if name == "pdfnet":
        from ..models.pdfnet import N_POINTS, PDFNet
        from ..training.loop import loss_terms

        n_classes, batch = 45, 64
        model = PDFNet(n_classes)
        x = torch.randn(batch, N_POINTS, generator=g)
        y = torch.randint(0, n_classes, (batch,), generator=g)
        weights = 0.5 + torch.rand(n_classes, generator=g)
        return {"model": model, "lr": 5e-4, "batch_size": batch, "input_shape": [batch, N_POINTS],
                "n_outputs": n_classes, "loss": lambda: loss_terms(model(x), y, None, 1.0, weights)["loss"]}
    if name in ("xanes_mlp", "xanes_cnn"):
        from ..models.xanes import CLASSES, build_model
        from ..spectra.xanes_grid import N_POINTS

        batch = 32
        model = build_model(name.split("_")[1], N_POINTS, len(CLASSES))
        x = torch.randn(batch, N_POINTS, generator=g)
        y = torch.randint(0, len(CLASSES), (batch,), generator=g)
        loss_fn = torch.nn.CrossEntropyLoss()
        return {"model": model, "lr": 1e-3, "batch_size": batch, "input_shape": [batch, N_POINTS],
                "n_outputs": len(CLASSES), "loss": lambda: loss_fn(model(x), y)}
    if name == "mofnet":
        from ..models.mofnet import N_POINTS, MofCNN

        n_classes, batch = 189, 128
        model = MofCNN(N_POINTS, n_classes)
        x = lab_patterns(batch, N_POINTS, g)
        y = torch.randint(0, n_classes, (batch,), generator=g)
        return {"model": model, "lr": 1e-3, "batch_size": batch, "input_shape": [batch, N_POINTS],
                "n_outputs": n_classes, "loss": lambda: F.cross_entropy(model(x).float(), y)}
    if name in ("elemnet", "irnet17"):
        from ..models.elemnet import build_regressor

        n_inputs, batch = 86, 32
        model = build_regressor(name, n_inputs)
        x = torch.zeros(batch, n_inputs)
        for row in range(batch):  # 2-4 elements per composition, fractions summing to 1
            k = int(torch.randint(2, 5, (1,), generator=g))
            cols = torch.randperm(n_inputs, generator=g)[:k]
            share = torch.rand(k, generator=g) + 0.1
            x[row, cols] = share / share.sum()
        y = -2.0 * torch.rand(batch, generator=g)
        return {"model": model, "lr": 1e-4, "batch_size": batch, "input_shape": [batch, n_inputs],
                "n_outputs": 1, "loss": lambda: (model(x) - y).abs().mean()}
    raise ValueError(f"unknown model {name!r}; choose from {sorted(TRAINING_MODELS)}")


def bench_training(models=tuple(TRAINING_MODELS), warmup: int = 2, steps: int = 3, repeats: int = 5,
                   threads: int = 1) -> dict:
    """Per model: median over repeats of the seconds per optimiser step (each repeat the mean over
    ``steps`` steps), as samples/s = batch / that; the repeats cycle through the models."""
    import torch

    cases, errors = {}, {}
    for name in models:
        try:
            case = training_case(name)
            case["model"].train()
            case["optimiser"] = torch.optim.Adam(case["model"].parameters(), lr=case["lr"])
            cases[name] = case
        except Exception as exc:  # one model that cannot be built does not stop the others
            errors[name] = f"{type(exc).__name__}: {exc}"

    def step(case):
        case["optimiser"].zero_grad(set_to_none=True)
        loss = case["loss"]()
        loss.backward()
        case["optimiser"].step()
        return loss

    times = {name: [] for name in cases}
    with limited_threads(threads):
        for name, case in list(cases.items()):
            try:
                for _ in range(max(1, warmup)):
                    loss = step(case)
                if not math.isfinite(float(loss)):
                    raise FloatingPointError(f"loss {float(loss)}")
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                del cases[name], times[name]
        for _ in range(repeats):
            for name, case in cases.items():
                start = time.perf_counter()
                for _ in range(steps):
                    step(case)
                times[name].append((time.perf_counter() - start) / steps)
    rows = {}
    for name, case in cases.items():
        median = statistics.median(times[name])
        rows[name] = {
            "batch_size": case["batch_size"], "input_shape": case["input_shape"], "n_outputs": case["n_outputs"],
            "parameters": int(sum(p.numel() for p in case["model"].parameters())), "lr": case["lr"],
            "ms_per_step": 1000.0 * median, "ms_per_step_min": 1000.0 * min(times[name]),
            "ms_per_step_max": 1000.0 * max(times[name]), "samples_per_s": case["batch_size"] / median,
            "imitates": TRAINING_MODELS[name],
        }
    if "spgnet" in rows:
        for row in rows.values():
            row["vs_spgnet"] = row["samples_per_s"] / rows["spgnet"]["samples_per_s"]
    return {"models": rows, "errors": errors}


def section_training(sizes: dict, repeats: int, threads: int) -> dict:
    params = {"models": list(TRAINING_MODELS), "warmup_steps": sizes["train_warmup"],
              "steps_per_repeat": sizes["train_steps"], "repeats": repeats, "torch_threads": threads,
              "device": "cpu", "timed": "zero_grad, forward, the training module's loss, backward, Adam step; "
                                      "one synthetic batch of the real shape already in memory (no data loading)"}
    result = bench_training(warmup=sizes["train_warmup"], steps=sizes["train_steps"], repeats=repeats,
                            threads=threads)
    out = {"parameters": params, "results": result["models"],
           "ratios": {f"{name}_vs_spgnet": row["vs_spgnet"] for name, row in result["models"].items()
                      if "vs_spgnet" in row and name != "spgnet"}}
    if result["errors"]:
        out["model_errors"] = result["errors"]
        if not result["models"]:
            raise RuntimeError(f"no model could be trained: {result['errors']}")
    return out

