"""``xtalspec bench``: the project's speed measurements in one run, on one machine.

Sections (``--skip`` leaves any out; each records its parameters; one that fails records its
error and the run goes on):

* ``xrd``       δ-profile (:func:`~xtalspec.spectra.xrd.delta_profile`) against pymatgen's
                XRDCalculator on AMCSD structures (:mod:`xtalspec.bench_xrd`)
* ``powder``    laboratory powder pattern against pymatgen on small CoRE MOFs
                (:mod:`xtalspec.bench_powder`)
* ``pdf``       PDFs per second, and against diffpy PDFfit2 when installed (:mod:`xtalspec.bench_pdf`)
* ``feff``      FEFF ``fast`` against ``reference`` on one site (:mod:`xtalspec.bench_xanes`), both
                run now in a scratch folder; slow, so only with ``--feff``
* ``training``  training samples/s of every model family: timed Adam steps (forward, the
                training module's loss, backward, step) on synthetic batches of the real shapes and
                batch sizes, after warm-up steps, median over repeats; the repeats cycle through
                the models so that a busy machine slows all alike
* ``ensemble``  an ensemble trained together against its members one after another
                (:func:`xtalspec.training.ensemble.bench_together_vs_sequential`, when present)
* ``rules``     wall times of the last pipeline run from Snakemake's ``benchmark:`` files under
                ``<out-dir>/rules`` (reads files only): per rule (its wildcard instances together),
                jobs, total, median and max seconds; per stage (the first folder) totals

Ratios (ours against a reference, together against sequential, a model against SpgNet) are the
numbers to compare between machines; absolute times are shown beside them. numpy/BLAS and torch
run with ``--threads`` threads (default 1). Writes ``<out-dir>/benchmarks.json`` and
``<out-dir>/benchmarks.md`` (atomic renames).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

log = logging.getLogger("xtalspec.bench")

SECTIONS = ("xrd", "powder", "pdf", "feff", "training", "ensemble", "ensemble_jobs", "rules")
TITLES = {
    "xrd": "δ-profile vs pymatgen XRDCalculator",
    "powder": "Powder pattern vs pymatgen XRDCalculator",
    "pdf": "PDF vs diffpy PDFfit2",
    "feff": "FEFF fast vs reference preset",
    "training": "Training samples/s per model family",
    "ensemble": "Ensemble trained together vs sequentially",
    "ensemble_jobs": "Six `xrd train` jobs vs one `xrd train-ensemble` job on the pipeline's XRD data set",
    "rules": "Pipeline rules (Snakemake benchmark files of the last run)",
}
#: sizes of the default run (~5 min on a 2-core machine) and of --quick (tests)
SIZES = {
    "default": {"repeats": 5, "xrd_structures": 40, "powder_structures": 10, "pdf_structures": 40,
                "train_warmup": 2, "train_steps": 4, "ensemble_members": 6, "ensemble_repeats": 3,
                "ensemble_job_epochs": 2},
    "quick": {"repeats": 2, "xrd_structures": 4, "powder_structures": 1, "pdf_structures": 4,
              "train_warmup": 1, "train_steps": 1, "ensemble_members": 2, "ensemble_repeats": 1,
              "ensemble_job_epochs": 1},
}
FEFF_SITE = "rutile_Ti_O6"


# --------------------------------------------------------------------------- helpers


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _jsonable(value):
    """numpy scalars/arrays, tuples and paths to plain JSON; NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


@contextlib.contextmanager
def _threads(n: int):
    """numpy/BLAS (threadpoolctl, where installed) and torch limited to ``n`` threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def machine_info(threads: int) -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "threads": threads}
    with contextlib.suppress(AttributeError, OSError):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("numpy", "torch", "pymatgen", "diffpy.pdffit2", "snakemake"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    info["versions"] = versions
    return info


# --------------------------------------------------------------------------- spectra sections


def section_xrd(sizes: dict, repeats: int, threads: int) -> dict:
    from .bench_xrd import amcsd_structures, bench_delta_vs_pymatgen

    n = sizes["xrd_structures"]
    params = {"n_structures": n, "repeats": repeats, "structures": "AMCSD (larixite), CIF cells, seed 1",
              "pymatgen": "XRDCalculator().get_pattern, 2θ 10–110° (Cu Kα)", "numpy_threads": 1}
    result = bench_delta_vs_pymatgen(amcsd_structures(n), repeats=repeats)
    return {"parameters": params, "results": result,
            "ratios": {"pymatgen_over_delta_profile": result["speedup"]}}


def section_powder(sizes: dict, repeats: int, threads: int) -> dict:
    from .bench_powder import SMALL_MOF_IDS, TWO_THETA, WAVELENGTH, bench_powder_vs_pymatgen, small_mofs

    ids = SMALL_MOF_IDS[: sizes["powder_structures"]]
    structures = small_mofs(ids)
    if not structures:
        raise RuntimeError(f"none of the CoRE MOF ids {list(ids)} could be read")
    rows = bench_powder_vs_pymatgen(structures, repeats=repeats)
    params = {"structures": list(structures), "repeats": repeats, "wavelength_A": WAVELENGTH,
              "two_theta": list(TWO_THETA), "timing": "mean over calls filling 50 ms, median over repeats",
              "numpy_threads": 1}
    ratios = {"pymatgen_over_sticks": statistics.median(r["ratio_sticks"] for r in rows),
              "pymatgen_over_pattern": statistics.median(r["ratio_pattern"] for r in rows)}
    results = {"rows": rows, "median_ms_pymatgen": statistics.median(r["ms_pymatgen"] for r in rows),
               "median_ms_sticks": statistics.median(r["ms_sticks"] for r in rows),
               "median_ms_pattern": statistics.median(r["ms_pattern"] for r in rows)}
    return {"parameters": params, "results": results, "ratios": ratios}


def section_pdf(sizes: dict, repeats: int, threads: int) -> dict:
    from .bench_pdf import amcsd_structures, bench_pdf, pdffit2_available
    from .spectra import pdf as pdfmod

    n = sizes["pdf_structures"]
    params = {"n_structures": n, "repeats": repeats, "cell": "standard primitive",
              "settings": {"rmax": pdfmod.RMAX, "rstep": pdfmod.RSTEP, "qmax": pdfmod.QMAX,
                           "qdamp": pdfmod.QDAMP, "qbroad": pdfmod.QBROAD, "uiso": pdfmod.UISO},
              "pdffit2": pdffit2_available(), "numpy_threads": 1}
    result = bench_pdf(amcsd_structures(n), repeats=repeats)
    ratios = {"pdffit2_over_ours": result["speedup"]} if "speedup" in result else {}
    out = {"parameters": params, "results": result, "ratios": ratios}
    if not ratios:
        out["note"] = "diffpy.pdffit2 not installed: only our structures/s (pip install -e '.[test]')"
    return out


def section_feff(sizes: dict, repeats: int, threads: int, site: str = FEFF_SITE) -> dict:
    import tempfile

    from .bench_xanes import SITES, run
    from .spectra.feff import PRESETS

    names = [s[0] for s in SITES]
    if site not in names:
        raise ValueError(f"unknown FEFF benchmark site {site!r}; choose from {names}")
    with tempfile.TemporaryDirectory(prefix="xtalspec-bench-feff-") as work:  # both presets run now
        rows = run(Path(work), [site], ("reference", "fast"), log=lambda m: log.info("feff: %s", m))
    row = rows[0]
    params = {"site": site, "presets": {p: PRESETS[p] for p in ("reference", "fast")},
              "runs": "reference then fast, once each, scratch folder (no cached results)",
              "similarity": "Pearson r of mu(E) after the best rigid shift of the fast spectrum (±5 eV)"}
    if "speedup" not in row:
        raise RuntimeError(f"FEFF did not give both spectra: {row}")
    return {"parameters": params, "results": row,
            "ratios": {"reference_over_fast": row["reference_s"] / max(row["fast_s"], 1e-9)}}


# --------------------------------------------------------------------------- training


#: model -> (where its real training lives, what the synthetic batch imitates)
TRAINING_MODELS = {
    "spgnet": "training/xrd.py + loop.py: δ-profiles (32, 10001), 12 groups, cross-entropy, Adam 1e-3",
    "spgvolnet": "training/xrd.py + loop.py: δ-profiles (32, 10001), 12 groups, CE + MAE(volume z), Adam 1e-3",
    "pdfnet": "training/pdf.py + loop.py: PDFs (64, 209), 45 groups, class-weighted CE, Adam 5e-4",
    "xanes_mlp": "training/xanes.py: spectra (32, 100), 3 classes, cross-entropy, Adam 1e-3",
    "xanes_cnn": "training/xanes.py: spectra (32, 100), 3 classes, cross-entropy, Adam 1e-3",
    "mofnet": "training/mof.py: patterns (128, 2251), 189 MOFs, cross-entropy, Adam 1e-3",
    "elemnet": "training/compositions.py: element fractions (32, 86), MAE, Adam 1e-4",
    "irnet17": "training/compositions.py: element fractions (32, 86), MAE, Adam 1e-4",
    "padnet": "training/padnet.py + loop.py: lab patterns (32, 10001), 12 groups, cross-entropy, Adam 1e-3",
}


def _profiles(batch: int, n_bins: int, generator, peaks: int = 120):
    """δ-profile-like inputs: mostly zeros, ``peaks`` random bins per row with heights in (0, 1]."""
    import torch

    x = torch.zeros(batch, n_bins)
    cols = torch.randint(0, n_bins, (batch, peaks), generator=generator)
    x.scatter_(1, cols, torch.rand(batch, peaks, generator=generator))
    return x / x.amax(dim=1, keepdim=True).clamp_min(1e-6)


def _lab_patterns(batch: int, n_bins: int, generator):
    """Rendered-pattern-like inputs: broadened peaks on a smooth background, max-normalised."""
    import torch
    import torch.nn.functional as F

    peaks = _profiles(batch, n_bins, generator)
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
        from .models.padnet import build_padnet
        from .models.spgnet import N_BINS, build_model
        from .training.loop import loss_terms

        n_classes, batch = 12, 32
        if name == "padnet":
            model, x = build_padnet(n_classes), _lab_patterns(batch, N_BINS, g)
        else:
            model, x = build_model(name, n_classes), _profiles(batch, N_BINS, g)
        y = torch.randint(0, n_classes, (batch,), generator=g)
        v = torch.randn(batch, generator=g) if name == "spgvolnet" else None
        return {"model": model, "lr": 1e-3, "batch_size": batch, "input_shape": [batch, N_BINS],
                "n_outputs": n_classes, "loss": lambda: loss_terms(model(x), y, v, 1.0)["loss"]}
    if name == "pdfnet":
        from .models.pdfnet import N_POINTS, PDFNet
        from .training.loop import loss_terms

        n_classes, batch = 45, 64
        model = PDFNet(n_classes)
        x = torch.randn(batch, N_POINTS, generator=g)
        y = torch.randint(0, n_classes, (batch,), generator=g)
        weights = 0.5 + torch.rand(n_classes, generator=g)
        return {"model": model, "lr": 5e-4, "batch_size": batch, "input_shape": [batch, N_POINTS],
                "n_outputs": n_classes, "loss": lambda: loss_terms(model(x), y, None, 1.0, weights)["loss"]}
    if name in ("xanes_mlp", "xanes_cnn"):
        from .models.xanes import CLASSES, build_model
        from .spectra.xanes_grid import N_POINTS

        batch = 32
        model = build_model(name.split("_")[1], N_POINTS, len(CLASSES))
        x = torch.randn(batch, N_POINTS, generator=g)
        y = torch.randint(0, len(CLASSES), (batch,), generator=g)
        loss_fn = torch.nn.CrossEntropyLoss()
        return {"model": model, "lr": 1e-3, "batch_size": batch, "input_shape": [batch, N_POINTS],
                "n_outputs": len(CLASSES), "loss": lambda: loss_fn(model(x), y)}
    if name == "mofnet":
        from .models.mofnet import N_POINTS, MofCNN

        n_classes, batch = 189, 128
        model = MofCNN(N_POINTS, n_classes)
        x = _lab_patterns(batch, N_POINTS, g)
        y = torch.randint(0, n_classes, (batch,), generator=g)
        return {"model": model, "lr": 1e-3, "batch_size": batch, "input_shape": [batch, N_POINTS],
                "n_outputs": n_classes, "loss": lambda: F.cross_entropy(model(x).float(), y)}
    if name in ("elemnet", "irnet17"):
        from .models.elemnet import build_regressor

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
    with _threads(threads):
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


# --------------------------------------------------------------------------- ensemble


class NotAvailable(Exception):
    """A section whose code is not (yet) in this installation."""


def section_ensemble(sizes: dict, repeats: int, threads: int, quick: bool = False) -> dict:
    """:func:`xtalspec.training.ensemble.bench_together_vs_sequential`; when it takes no
    ``repeats`` it is called ``sizes["ensemble_repeats"]`` times and the medians are reported."""
    import inspect

    try:
        from .training.ensemble import bench_together_vs_sequential
    except ImportError as exc:
        raise NotAvailable(f"xtalspec.training.ensemble.bench_together_vs_sequential not importable ({exc})")
    wanted = {"n_members": sizes["ensemble_members"], "threads": threads, "repeats": repeats, "quick": quick}
    if quick:
        wanted.update(n_samples=32, epochs=1)
    signature = inspect.signature(bench_together_vs_sequential)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    kwargs = {k: v for k, v in wanted.items() if takes_any or k in signature.parameters}
    calls = 1 if "repeats" in kwargs else sizes["ensemble_repeats"]
    runs = [dict(bench_together_vs_sequential(**kwargs)) for _ in range(calls)]
    result = dict(runs[0])
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if all(_finite(v) for v in values) and len(values) > 1:
            result[key] = statistics.median(values)
    ratios = {k: float(v) for k, v in result.items()
              if ("ratio" in k.lower() or "speedup" in k.lower()) and _finite(v)}
    out = {"parameters": kwargs | {"calls": calls, "reported": "median over calls" if calls > 1 else "one call"},
           "results": result, "ratios": ratios}
    if calls > 1:
        out["runs"] = runs
    if not ratios:
        out["note"] = "the function returned no numeric ratio/speedup key"
    return out


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
    from .utils.tables import read_frame

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


# --------------------------------------------------------------------------- pipeline rules


def read_benchmark_tsv(path) -> list[dict]:
    """Rows of one Snakemake benchmark file (columns s, h:m:s, max_rss, ...); numbers as floats,
    'NA'/'-'/empty as None."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty file")
    header = lines[0].split("\t")
    if "s" not in header:
        raise ValueError(f"no 's' column in header {header}")
    rows = []
    for line in lines[1:]:
        row = {}
        for key, value in zip(header, line.split("\t")):
            value = value.strip()
            if key == "h:m:s":
                row[key] = value
                continue
            try:
                row[key] = float(value)
            except ValueError:
                row[key] = None
        rows.append(row)
    if not rows or rows[0].get("s") is None:
        raise ValueError("no timing row")
    return rows


def workflow_rules_dir() -> Path | None:
    """``workflow/rules`` of the checkout (editable install) or of the current folder."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "workflow" / "rules").is_dir():
            return root / "workflow" / "rules"
    return None


_RULE = re.compile(r"^[ \t]*(?:rule|checkpoint)[ \t]+(\w+)[ \t]*:", re.M)
_BENCH = re.compile(r"benchmark:\s*\n\s*BENCH\s*/\s*\"([^\"]+)\"")


def rule_patterns(rules_dir) -> list[tuple[str, re.Pattern]]:
    """(rule name, regex of its benchmark path relative to BENCH) from the workflow's ``*.smk``
    files; literal paths first, then patterns with fewer wildcards and longer literal parts."""
    found = []
    if rules_dir is None or not Path(rules_dir).is_dir():
        return found
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in _RULE.finditer(text)] + [(len(text), None)]
        for (start, name), (end, _) in zip(starts, starts[1:]):
            match = _BENCH.search(text, start, end)
            if not match:
                continue
            template, regex, pos, wildcards = match.group(1), "", 0, 0
            for wc in re.finditer(r"\{([^{}]+)\}", template):
                regex += re.escape(template[pos:wc.start()])
                constraint = wc.group(1).split(",", 1)[1] if "," in wc.group(1) else r"[^/]+"
                regex += f"(?:{constraint})"
                pos, wildcards = wc.end(), wildcards + 1
            regex += re.escape(template[pos:])
            literal = len(re.sub(r"\{[^{}]+\}", "", template))
            found.append((wildcards, -literal, name, re.compile(regex)))
    return [(name, pattern) for _, _, name, pattern in sorted(found, key=lambda t: t[:2])]


def _fallback_rule(relative: str) -> str:
    """A rule key from the path alone: its folders and the file name up to the first '-'."""
    parts = relative.split("/")
    stem = parts[-1][: -len(".tsv")] if parts[-1].endswith(".tsv") else parts[-1]
    return "/".join(parts[:-1] + [stem.split("-")[0]])


def collect_rule_benchmarks(bench_dir, rules_dir="auto") -> dict:
    """Per rule and per stage wall times from the ``*.tsv`` files under ``bench_dir``.

    A file's rule is the workflow rule whose ``benchmark:`` path matches it (``rules_dir``: the
    ``*.smk`` folder; "auto" finds the checkout's, None uses paths only), else its folders plus
    the file name up to the first '-'. Its stage is its first folder. A file with several rows
    (Snakemake's ``repeat()``) counts as one job with the mean of its rows."""
    bench_dir = Path(bench_dir)
    patterns = rule_patterns(workflow_rules_dir() if rules_dir == "auto" else rules_dir)
    jobs, unreadable = [], []
    files = sorted(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else []
    for path in files:
        relative = path.relative_to(bench_dir).as_posix()
        try:
            rows = read_benchmark_tsv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            unreadable.append({"file": relative, "error": str(exc)})
            continue
        seconds = statistics.fmean(r["s"] for r in rows if r.get("s") is not None)
        rss = [r["max_rss"] for r in rows if r.get("max_rss") is not None]
        rule = next((name for name, pattern in patterns if pattern.fullmatch(relative)), None)
        jobs.append({"file": relative, "rule": rule or _fallback_rule(relative), "matched": rule is not None,
                     "stage": relative.split("/")[0] if "/" in relative else "(top)", "s": seconds,
                     "max_rss_mb": max(rss) if rss else None, "mtime": path.stat().st_mtime})
    rules: dict[str, dict] = {}
    for job in jobs:
        rules.setdefault(job["rule"], {"stage": job["stage"], "times": [], "rss": [], "matched": job["matched"]})
        entry = rules[job["rule"]]
        entry["times"].append(job["s"])
        if job["max_rss_mb"] is not None:
            entry["rss"].append(job["max_rss_mb"])
    rule_rows = []
    for name, entry in rules.items():
        t = entry["times"]
        rule_rows.append({"rule": name, "stage": entry["stage"], "count": len(t), "total_s": sum(t),
                          "median_s": statistics.median(t), "max_s": max(t),
                          "max_rss_mb": max(entry["rss"]) if entry["rss"] else None,
                          "grouped_by": "workflow rule" if entry["matched"] else "path"})
    rule_rows.sort(key=lambda r: (r["stage"], -r["total_s"], r["rule"]))
    stages: dict[str, dict] = {}
    for row in rule_rows:
        s = stages.setdefault(row["stage"], {"stage": row["stage"], "rules": 0, "count": 0, "total_s": 0.0,
                                             "max_s": 0.0})
        s["rules"] += 1
        s["count"] += row["count"]
        s["total_s"] += row["total_s"]
        s["max_s"] = max(s["max_s"], row["max_s"])
    stage_rows = sorted(stages.values(), key=lambda s: -s["total_s"])

    def stamp(t):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")

    return {"bench_dir": str(bench_dir), "n_files": len(files), "n_jobs": len(jobs), "rules": rule_rows,
            "stages": stage_rows, "total_s": sum(j["s"] for j in jobs), "unreadable": unreadable,
            "oldest_file": stamp(min(j["mtime"] for j in jobs)) if jobs else None,
            "newest_file": stamp(max(j["mtime"] for j in jobs)) if jobs else None}


def section_rules(bench_dir) -> dict:
    result = collect_rule_benchmarks(bench_dir)
    params = {"bench_dir": str(bench_dir), "time": "column s (wall seconds) of each benchmark file",
              "grouping": "rule: the workflow rule whose benchmark: path matches (else folders + name "
                          "before the first '-'); stage: first folder"}
    out = {"parameters": params, "results": result, "ratios": {}}
    if not result["n_jobs"]:
        out["note"] = f"no Snakemake benchmark files under {bench_dir} (run the pipeline first)"
    return out


# --------------------------------------------------------------------------- run and report


def run_benchmarks(out_dir="results/benchmarks", quick: bool = False, feff: bool = False, repeats: int | None = None,
                   threads: int = 1, skip=(), rules_dir=None, feff_site: str = FEFF_SITE,
                   xrd_dataset="results/xrd/dataset/dataset.parquet") -> dict:
    """Run every section not skipped; write and return the record."""
    import warnings

    from .provenance import code_version

    out_dir = Path(out_dir)
    sizes = dict(SIZES["quick" if quick else "default"])
    repeats = int(repeats or sizes["repeats"])
    sizes["repeats"] = repeats
    rules_dir = Path(rules_dir) if rules_dir else out_dir / "rules"
    started = time.perf_counter()
    record = {
        "kind": "xtalspec_benchmarks", "code_version": code_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {"out_dir": str(out_dir), "quick": quick, "feff": feff, "repeats": repeats, "threads": threads,
                    "skip": sorted(skip), "rules_dir": str(rules_dir), "feff_site": feff_site,
                    "xrd_dataset": str(xrd_dataset)},
        "sizes": sizes, "machine": machine_info(threads), "sections": {},
    }
    runners = {
        "xrd": lambda: section_xrd(sizes, repeats, threads),
        "powder": lambda: section_powder(sizes, repeats, threads),
        "pdf": lambda: section_pdf(sizes, repeats, threads),
        "feff": lambda: section_feff(sizes, repeats, threads, feff_site),
        "training": lambda: section_training(sizes, repeats, threads),
        "ensemble": lambda: section_ensemble(sizes, repeats, threads, quick),
        "ensemble_jobs": lambda: section_ensemble_jobs(xrd_dataset, sizes["ensemble_members"],
                                                       sizes["ensemble_job_epochs"], threads, out_dir / "ensemble_jobs"),
        "rules": lambda: section_rules(rules_dir),
    }
    for name in SECTIONS:
        entry = {"title": TITLES[name]}
        if name in skip:
            entry.update(status="skipped", note="--skip")
        elif name == "feff" and not feff:
            entry.update(status="skipped", note="slow (minutes of FEFF): run with --feff")
        else:
            log.info("bench: %s ...", name)
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings(), _threads(threads):
                    warnings.simplefilter("ignore")
                    entry.update(runners[name]())
                entry["status"] = "ok"
            except NotAvailable as exc:
                entry.update(status="not available", note=str(exc))
            except Exception as exc:  # a failing section is recorded; the others still run
                log.warning("bench: %s failed: %s", name, exc)
                entry.update(status="error", error=f"{type(exc).__name__}: {exc}",
                             traceback=traceback.format_exc(limit=8).splitlines()[-12:])
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            log.info("bench: %s %s in %.1f s", name, entry["status"], entry["seconds"])
        record["sections"][name] = entry
    with contextlib.suppress(OSError, AttributeError):
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    record = _jsonable(record)
    write_report(record, out_dir)
    return record


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _summary_rows(name: str, entry: dict) -> list[tuple[str, str, str]]:
    """(measure, ratio, beside) rows of one ok section for the summary table."""
    r, res = entry.get("ratios", {}), entry.get("results", {})
    p = entry.get("parameters", {})
    if name == "xrd":
        return [("pymatgen / δ-profile (ms per structure)", f"{_num(r['pymatgen_over_delta_profile'])}×",
                 f"{_num(res['ms_per_structure_delta'], 2)} vs {_num(res['ms_per_structure_pymatgen'])} ms; "
                 f"{p['n_structures']} AMCSD structures")]
    if name == "powder":
        n = len(p["structures"])
        return [("pymatgen / our sticks (like for like)", f"{_num(r['pymatgen_over_sticks'])}×",
                 f"{_num(res['median_ms_sticks'], 2)} vs {_num(res['median_ms_pymatgen'])} ms; median of {n} MOFs"),
                ("pymatgen / our full pattern (sticks + broadening)", f"{_num(r['pymatgen_over_pattern'])}×",
                 f"{_num(res['median_ms_pattern'], 2)} ms per pattern")]
    if name == "pdf":
        rate = f"{_num(res['structures_per_s_ours'])} structures/s ({_num(res['ms_per_structure_ours'], 2)} ms)"
        if "pdffit2_over_ours" in r:
            return [("PDFfit2 / ours (ms per structure)", f"{_num(r['pdffit2_over_ours'])}×",
                     f"{rate} vs {_num(res['ms_per_structure_pdffit2'], 2)} ms PDFfit2; {p['n_structures']} AMCSD")]
        return [("our PDFs per second (PDFfit2 not installed)", "–", rate)]
    if name == "feff":
        return [("reference / fast (FEFF seconds)", f"{_num(r['reference_over_fast'])}×",
                 f"{_num(res.get('reference_s'))} vs {_num(res.get('fast_s'))} s; r = {res.get('r')}; {p['site']}")]
    if name == "training":
        rows = []
        for model, row in res.items():
            ratio = "1.0× (reference)" if model == "spgnet" else f"{_num(row.get('vs_spgnet'), 2)}× SpgNet"
            rows.append((f"{model}: samples/s (batch {row['batch_size']})", ratio,
                         f"{_num(row['samples_per_s'])} samples/s, {_num(row['ms_per_step'])} ms/step"))
        return rows
    if name == "ensemble":
        labels = {"ratio": f"sequential / together wall time ({res.get('n_members')} × {res.get('model')})"}
        if "together_model_samples_per_s" in res and "sequential_model_samples_per_s" in res:
            beside = (f"{_num(res['together_model_samples_per_s'])} vs {_num(res['sequential_model_samples_per_s'])} "
                      f"model-samples/s; {_num(res.get('together_s'))} vs {_num(res.get('sequential_s'))} s")
            return [(labels.get(k, k), f"{_num(v, 2)}×", beside) for k, v in r.items()]
        beside = ", ".join(f"{k} {_num(v, 2) if isinstance(v, float) else v}" for k, v in res.items()
                           if k not in r and isinstance(v, (int, float)) and not isinstance(v, bool))
        return [(k, f"{_num(v, 2)}×", beside) for k, v in r.items()] or [("(no ratio returned)", "–", beside)]
    if name == "ensemble_jobs":
        return [(f"{res['n_members']} × `xrd train` / one `xrd train-ensemble` (whole jobs)",
                 f"{_num(r['sequential_over_together'], 2)}×",
                 f"{_num(res['together_model_samples_per_s'])} vs {_num(res['sequential_model_samples_per_s'])} "
                 f"model-samples/s; {_num(res['together_s'])} vs {_num(res['sequential_s'])} s; "
                 f"{res['n_train']} profiles × {p['epochs']} epochs; max loss difference "
                 f"{res['max_loss_difference']:.2g}")]
    if name == "rules":
        res_rules = res
        return [("jobs, rules, stages of the last run", "–",
                 f"{res_rules['n_jobs']} jobs, {len(res_rules['rules'])} rules, {len(res_rules['stages'])} stages, "
                 f"{_num(res_rules['total_s'])} s in total")]
    return []


def markdown(record: dict) -> str:
    m = record["machine"]
    lines = ["# xtalspec benchmarks", "",
             f"Code {record['code_version']}, {record['created_utc']}; {m.get('cpu_model', m.get('machine'))}, "
             f"{m.get('cpus_available', m.get('cpu_count'))} CPUs available, {record['options']['threads']} "
             f"thread(s); load average {m.get('load_average_start')} → {m.get('load_average_end')}; "
             f"{record['total_seconds']} s in all{' (--quick)' if record['options']['quick'] else ''}.",
             "", "Ratios are measured in one process, alternating per repeat, medians over "
             f"{record['options']['repeats']} repeats; absolute times beside them are for this machine only.", "",
             "| section | measure | ratio | beside | status |", "|---|---|---:|---|---|"]
    for name, entry in record["sections"].items():
        status = entry["status"]
        if status == "ok":
            try:
                rows = _summary_rows(name, entry)
            except (KeyError, TypeError) as exc:
                rows = [("(summary failed)", "–", f"{type(exc).__name__}: {exc}")]
            for measure, ratio, beside in rows:
                lines.append(f"| {name} | {measure} | {ratio} | {beside} | ok ({entry['seconds']} s) |")
        else:
            why = entry.get("error") or entry.get("note", "")
            lines.append(f"| {name} | {entry['title']} | – | {why.replace('|', '/')} | {status} |")
    training = record["sections"].get("training", {})
    if training.get("status") == "ok":
        lines += ["", "## Training", "",
                  "Timed: zero_grad, forward, the training module's loss, backward, Adam step, on one synthetic "
                  "batch of the real shape (no data loading). "
                  f"{training['parameters']['warmup_steps']} warm-up steps, then {training['parameters']['repeats']}"
                  f" repeats of {training['parameters']['steps_per_repeat']} steps.", "",
                  "| model | batch × input | outputs | parameters | samples/s | ms/step (min–max) | vs SpgNet "
                  "| as in |",
                  "|---|---|---:|---:|---:|---|---:|---|"]
        for model, row in training["results"].items():
            shape = " × ".join(str(s) for s in row["input_shape"])
            lines.append(f"| {model} | {shape} | {row['n_outputs']} | {row['parameters']:,} | "
                         f"{_num(row['samples_per_s'])} | {_num(row['ms_per_step'])} "
                         f"({_num(row['ms_per_step_min'])}–{_num(row['ms_per_step_max'])}) | "
                         f"{_num(row.get('vs_spgnet'), 2)} | {row['imitates'].split(':')[0]} |")
        for model, err in training.get("model_errors", {}).items():
            lines.append(f"| {model} | error: {err} | | | | | | |")
    rules = record["sections"].get("rules", {})
    if rules.get("status") == "ok":
        res = rules["results"]
        lines += ["", "## Pipeline rules", ""]
        if not res["n_jobs"]:
            lines.append(rules.get("note", "no benchmark files"))
        else:
            lines += [f"{res['n_jobs']} jobs from `{res['bench_dir']}` (files written {res['oldest_file']} … "
                      f"{res['newest_file']}).", "",
                      "| stage | rule | jobs | total s | median s | max s | max RSS MB |",
                      "|---|---|---:|---:|---:|---:|---:|"]
            for row in res["rules"]:
                lines.append(f"| {row['stage']} | {row['rule']} | {row['count']} | {_num(row['total_s'])} | "
                             f"{_num(row['median_s'])} | {_num(row['max_s'])} | {_num(row['max_rss_mb'], 0)} |")
            lines += ["", "| stage | rules | jobs | total s | max s |", "|---|---:|---:|---:|---:|"]
            for row in res["stages"]:
                lines.append(f"| {row['stage']} | {row['rules']} | {row['count']} | {_num(row['total_s'])} | "
                             f"{_num(row['max_s'])} |")
            for bad in res["unreadable"]:
                lines.append(f"\nunreadable: {bad['file']}: {bad['error']}")
    lines += ["", "## Parameters", ""]
    for name, entry in record["sections"].items():
        if "parameters" in entry:
            lines.append(f"- **{name}**: `{json.dumps(entry['parameters'], ensure_ascii=False)}`")
    return "\n".join(lines) + "\n"


def write_report(record: dict, out_dir) -> tuple[Path, Path]:
    from .utils.atomic import atomic_write_text

    out_dir = Path(out_dir)
    json_path = atomic_write_text(out_dir / "benchmarks.json", json.dumps(record, indent=1, allow_nan=False) + "\n")
    md_path = atomic_write_text(out_dir / "benchmarks.md", markdown(record))
    return json_path, md_path


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .cli.bench import cmd_bench, register  # the argument parsing lives with the other commands

    parser = argparse.ArgumentParser(prog="python -m xtalspec.bench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return cmd_bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
