"""XANES pipeline pieces: edge energy and grid, data set (duplicates, coverage), folds and
augmentation, training on spectra with known classes, model bundles, site selection on real
AMCSD structures, and a FEFF shard that survives a broken site and a hang and resumes."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from xtalspec.datasets.xanes_spectra import build_xanes_dataset, deduplicate, write_feff_shard
from xtalspec.models.xanes import build_model, class_probabilities, load_bundle, save_bundle, standardise
from xtalspec.spectra import xanes_grid
from xtalspec.spectra.xanes_matching import LEGACY
from xtalspec.structures.records import structure_to_json
from xtalspec.training.xanes import augment, fold_split, train_bundle, train_element
from xtalspec.utils.tables import read_frame, write_frame

CLASSES = ("T4", "S5", "O6")


def edge_curve(e, e0=5480.0, peak=0.0, width=1.5, wiggle=0.0, phase=0.0):
    """A K-edge-like mu(E): arctan step (edge step 1) + Gaussian pre-edge peak + post-edge wiggle."""
    step = 0.5 + np.arctan((e - e0) / width) / np.pi
    pre = peak * np.exp(-0.5 * ((e - (e0 - 12.0)) / 0.8) ** 2)
    post = wiggle * np.sin((e - e0) / 6.0 + phase) * (e > e0) * np.exp(-(e - e0) / 40.0)
    return step + pre + post


def class_spectrum(cls: str, rng, e, e0=None):
    """Spectra whose class is visible in pre-edge peak height and post-edge shape (like T4/S5/O6)."""
    peak, wiggle = {"T4": (0.6, 0.05), "S5": (0.3, 0.15), "O6": (0.08, 0.3)}[cls]
    return edge_curve(e, e0 if e0 is not None else 5480 + rng.normal(0, 0.7), peak * rng.uniform(0.8, 1.2), wiggle=wiggle,
                      phase=rng.normal(0, 0.2)) + rng.normal(0, 0.005, e.size)


# ------------------------------------------------------------------ grid conventions


def test_edge_energy_is_the_main_edge_not_the_pre_edge_peak():
    e = np.linspace(5450, 5530, 400)
    assert abs(xanes_grid.edge_energy(e, edge_curve(e, peak=0.0)) - 5480.0) < 0.2
    # a pre-edge peak much steeper than the edge does not move E0
    assert abs(xanes_grid.edge_energy(e, edge_curve(e, peak=1.0, width=3.0)) - 5480.0) < 0.3
    with pytest.raises(ValueError):
        xanes_grid.edge_energy(e[:3], e[:3])


def test_on_grid_agrees_with_dense_linear_interpolation():
    """Akima spline of a coarse FEFF-like sampling vs linear interpolation of a dense one."""
    coarse = np.concatenate([np.arange(5460, 5478, 0.8), np.arange(5478, 5490, 0.3), np.arange(5490, 5530, 1.1)])
    dense = np.linspace(5460, 5530, 20001)
    grid = np.linspace(5465, 5514.5, 100)
    ours, coverage = xanes_grid.on_grid(coarse, edge_curve(coarse, width=2.0, wiggle=0.2), grid)
    other = np.interp(grid, dense, edge_curve(dense, width=2.0, wiggle=0.2))
    assert coverage == 1.0
    assert np.max(np.abs(ours - other)) < 0.01
    # outside the data the end values are carried and coverage drops
    _, partial = xanes_grid.on_grid(coarse[coarse < 5500], np.ones((coarse < 5500).sum()), grid)
    assert 0.65 < partial < 0.72


def test_element_grid_and_shift():
    grid = xanes_grid.element_grid(np.full(20, 5460.0) + np.arange(20) * 0.1, np.full(20, 5530.0))
    assert grid.size == 100 and np.isclose(grid[1] - grid[0], 0.5) and np.isclose(grid[-1] - grid[0], 49.5)
    assert grid[0] >= 5461.5  # 95th percentile of the starts
    x = np.arange(10.0)[None, :]
    np.testing.assert_allclose(xanes_grid.shift_on_grid(x, 1.0, 0.5)[0], [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(xanes_grid.shift_on_grid(x, -0.25, 0.5)[0, :3], [0.5, 1.5, 2.5])


def test_deduplicate_keeps_the_first_of_near_identical_spectra():
    a = np.linspace(0, 1, 100)
    spectra = np.stack([a, a + 0.01, a + 0.5, a + 0.51, a + 0.02])
    np.testing.assert_array_equal(deduplicate(spectra, 0.015), [0, 0, 2, 2, 4])


# ------------------------------------------------------------------ data set


def _spectra_shard(path, element, labels, rng, start=5460.0, duplicate_of=None):
    rows = []
    for i, cls in enumerate(labels):
        e = np.sort(np.concatenate([np.arange(start, 5478, 0.7), np.arange(5478, 5530, 0.4)]))
        mu = class_spectrum(cls, rng, e, e0=5476.0 + i)  # 1 eV apart: no duplicates
        rows.append({"id": f"{element}{i}", "source": "test", "url": "", "site_key": f"test:{element}{i}:0",
                     "element": element, "site_index": 0, "label": cls, "energy": e, "mu": mu})
    if duplicate_of is not None:
        dup = dict(rows[duplicate_of], id="dup", site_key="test:zz-dup:0")
        rows.append(dup)
    write_frame(pd.DataFrame(rows), {}, path)
    return rows


def test_dataset_grid_duplicates_and_coverage(tmp_path):
    """The old convention (absolute grid, / max); the shared relative grid: test_xanes_matching.py."""
    rng = np.random.default_rng(0)
    _spectra_shard(tmp_path / "a.parquet", "V", ["T4"] * 5 + ["O6"] * 5, rng, duplicate_of=0)
    # a spectrum that starts 20 eV late covers too little of the grid
    _spectra_shard(tmp_path / "b.parquet", "V", ["S5"], rng, start=5490.0)
    write_frame(pd.DataFrame([{"id": "x", "source": "test", "url": "", "site_key": "test:x:0", "element": "V",
                               "reason": "feff_timeout", "detail": "killed after 1 s"}]), {}, tmp_path / "r.parquet")
    dataset, rejects, meta = build_xanes_dataset([tmp_path / "a.parquet", tmp_path / "b.parquet"],
                                                 [tmp_path / "r.parquet"], preprocessing=LEGACY, min_coverage=0.9)
    info = meta["elements"]["V"]
    assert len(info["grid"]) == 100
    assert info["counts"] == {"T4": 5, "S5": 0, "O6": 5}
    reasons = rejects.set_index("site_key")["reason"].to_dict()
    assert reasons["test:zz-dup:0"] == "duplicate_spectrum"
    assert reasons["test:V0:0"] == "grid_coverage"  # the late-starting S5 spectrum (shard b)
    assert reasons["test:x:0"] == "feff_timeout"
    assert info["n_rejected"] == 3
    mu = np.stack(dataset["mu"].to_numpy())
    np.testing.assert_allclose(mu.max(axis=1), 1.0, atol=1e-6)
    # the pre-edge region ends at the median edge energy (5480 eV)
    assert abs(info["grid"][info["pre_edge_index"]] - 5480.0) < 1.0


# ------------------------------------------------------------------ folds, training, bundles


def test_fold_split_is_stratified_and_seeded():
    labels = np.array([0] * 30 + [1] * 9 + [2] * 1)
    train, test = fold_split(labels, 0, 5, 0.1)
    assert sorted(np.bincount(labels[test], minlength=3)) == [0, 1, 3]
    assert set(train).isdisjoint(test) and len(train) + len(test) == 40
    np.testing.assert_array_equal(test, fold_split(labels, 0, 5, 0.1)[1])
    assert not np.array_equal(test, fold_split(labels, 1, 5, 0.1)[1])


def test_augment_makes_five_times_the_data():
    x = np.random.default_rng(0).random((4, 100))
    y = np.arange(4)
    cfg = {"shifts_ev": [-2, -1, 1, 2], "noise_sigma": 0.03, "noise_copies": 4}
    xs, ys = augment(x, y, "shift", 0.5, cfg, np.random.default_rng(1))
    assert xs.shape == (20, 100) and (ys[:4] == y).all()
    np.testing.assert_allclose(xs[4, :-4], x[0, 4:])  # -2 eV: 4 points towards lower energy
    xn, _ = augment(x, y, "noise", 0.5, cfg, np.random.default_rng(1))
    assert 0.02 < np.std(xn[4:] - np.tile(x, (4, 1))) < 0.04


@pytest.fixture(scope="module")
def synthetic_dataset():
    rng = np.random.default_rng(3)
    grid = np.linspace(5465, 5514.5, 100)
    labels = ["T4"] * 20 + ["S5"] * 14 + ["O6"] * 26
    mu = xanes_grid.scale_to_max(np.stack([class_spectrum(c, rng, grid) for c in labels]))
    frame = pd.DataFrame({"site_key": [f"s:{i:03d}:0" for i in range(len(labels))], "element": "V",
                          "label": labels, "mu": list(mu.astype(np.float32))})
    meta = {"elements": {"V": {"grid": grid.tolist(), "step": 0.5, "e0_median": 5480.0,
                               "pre_edge_index": 30}}}
    return frame, meta


QUICK = {"n_folds": 2, "epochs": 25, "test_shifts_ev": [-3.0, 0.0, 3.0], "noise_levels": [0.0, 0.1]}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_training_learns_and_is_reproducible(synthetic_dataset, kind):
    frame, meta = synthetic_dataset
    predictions, summary = train_element(frame, meta, "V", kind, QUICK)
    assert summary["accuracy_full_shift"] >= 0.8
    combos = set(map(tuple, predictions[["features", "augmentation", "test"]].drop_duplicates().to_numpy()))
    assert combos == {("full", "shift", "base"), ("pre", "shift", "base"), ("full", "none", "base"),
                      ("full", "noise", "base"), ("full", "shift", "shift"), ("full", "none", "shift"),
                      ("full", "none", "noise"), ("full", "noise", "noise")}
    again, _ = train_element(frame, meta, "V", kind, QUICK)
    pd.testing.assert_frame_equal(predictions, again)


def test_bundle_round_trip(synthetic_dataset, tmp_path):
    frame, meta = synthetic_dataset
    bundle, models = train_bundle(frame, meta, "V", {"epochs": 5})
    save_bundle(tmp_path / "V", bundle, models)
    loaded_meta, loaded = load_bundle(tmp_path / "V")
    x = standardise(np.stack(frame["mu"].to_numpy()[:5]), loaded_meta)
    for kind in ("mlp", "cnn"):
        np.testing.assert_allclose(class_probabilities(loaded[kind], x), class_probabilities(models[kind], x),
                                   atol=1e-6)
    assert loaded_meta["grid"] == meta["elements"]["V"]["grid"] and loaded_meta["classes"] == list(CLASSES)


def test_cnn_shape_follows_the_paper():
    model = build_model("cnn", 100)
    assert model.head[0].in_features == 8 * 45  # conv k10 -> 91, pool 2 -> 45, 8 filters
    assert [m.out_features for m in build_model("mlp", 100).net if hasattr(m, "out_features")] == [90, 60, 20, 3]


# ------------------------------------------------------------------ sites and FEFF shards


def _rutile() -> Structure:
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.5937, 2.9587), ["Ti", "O"],
                                     [[0, 0, 0], [0.3053, 0.3053, 0]])


def _structure_shard(path, structures: dict[str, Structure]):
    rows = [{"id": k, "source": "test", "url": f"test:{k}", "elements": sorted({e.symbol for e in s.composition}),
             "disordered": False, "n_atoms": len(s), "primitive": structure_to_json(s)}
            for k, s in structures.items()]
    pd.DataFrame(rows).to_parquet(path)


def test_site_selection_labels_and_quotas(tmp_path):
    from xtalspec.datasets.xanes_sites import select_sites

    # two rutiles (Ti O6) and a Ba2TiO4-like isolated TiO4 tetrahedron built by hand
    tetra = Structure(Lattice.cubic(12.0), ["Ti", "O", "O", "O", "O"],
                      [[0, 0, 0], [1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]], coords_are_cartesian=True)
    _structure_shard(tmp_path / "s.parquet", {"r1": _rutile(), "r2": _rutile(), "t": tetra})
    sites, rejects, summary = select_sites([tmp_path / "s.parquet"], "Ti", max_per_class={"T4": 5, "S5": 5, "O6": 1})
    assert rejects.empty
    assert sorted(sites["label"].tolist()) == ["O6", "O6", "T4"]
    assert sites["selected"].sum() == 2  # the O6 quota is 1
    assert summary["selected"] == {"T4": 1, "S5": 0, "O6": 1}


@pytest.mark.slow
def test_feff_shard_survives_broken_and_hanging_sites_and_resumes(tmp_path):
    _structure_shard(tmp_path / "s.parquet", {"rutile": _rutile()})
    sites = pd.DataFrame([
        # a broken site: index 99 does not exist, FEFF input generation fails
        {"site_key": "test:rutile:99", "id": "rutile", "source": "test", "url": "", "shard": str(tmp_path / "s.parquet"),
         "element": "Ti", "site_index": 99, "label": "O6", "selected": True},
        {"site_key": "test:rutile:0", "id": "rutile", "source": "test", "url": "", "shard": str(tmp_path / "s.parquet"),
         "element": "Ti", "site_index": 0, "label": "O6", "selected": True},
    ])
    write_frame(sites, {}, tmp_path / "sites.parquet")
    kw = dict(sites_path=tmp_path / "sites.parquet", shard=0, n_shards=1, preset="fast", workroot=tmp_path / "w",
              out=tmp_path / "spectra.parquet", rejects_out=tmp_path / "rejects.parquet")
    # 1. a 0.5 s timeout: the good site "hangs" and is killed; the shard still completes
    result = write_feff_shard(timeout_s=0.5, **kw)
    rejects = read_frame(tmp_path / "rejects.parquet")[0].set_index("site_key")["reason"]
    assert result["spectra"] == 0 and rejects.to_dict() == {"test:rutile:99": "feff_failed",
                                                            "test:rutile:0": "feff_timeout"}
    # 2. enough time: the good site completes beside the broken one
    write_feff_shard(timeout_s=300, **kw)
    spectra = read_frame(tmp_path / "spectra.parquet")[0]
    assert spectra["site_key"].tolist() == ["test:rutile:0"] and not spectra["cached"].iloc[0]
    assert (spectra["mu"].iloc[0] > 0).all() and 4950 < spectra["energy"].iloc[0][0] < 4980
    workdir = tmp_path / "w" / "Ti"
    kept = {p.name for p in next(workdir.iterdir()).iterdir()}
    assert {"feff.inp", "xmu.dat", "feff_result.json"} <= kept and not any(n.endswith(".bin") for n in kept)
    # 3. rerun: the finished site is not recomputed
    start = time.monotonic()
    write_feff_shard(timeout_s=300, **kw)
    assert time.monotonic() - start < 10
    assert read_frame(tmp_path / "spectra.parquet")[0]["cached"].iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_frame(tmp_path / "rejects.parquet")[0]["reason"].tolist() == ["feff_failed"]


@pytest.mark.slow
def test_sigterm_to_the_feff_command_kills_the_feff_process_group(tmp_path):
    """Snakemake / SLURM cancel jobs with SIGTERM: no FEFF process may outlive the command."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    _structure_shard(tmp_path / "s.parquet", {"rutile": _rutile()})
    write_frame(pd.DataFrame([{"site_key": "test:rutile:0", "id": "rutile", "source": "test", "url": "",
                               "shard": str(tmp_path / "s.parquet"), "element": "Ti", "site_index": 0,
                               "label": "O6", "selected": True}]), {}, tmp_path / "sites.parquet")
    cmd = [sys.executable, "-m", "xtalspec.cli", "xanes", "feff", "--sites", str(tmp_path / "sites.parquet"),
           "--shard", "0", "--n-shards", "1", "--workroot", str(tmp_path / "w"), "--out", str(tmp_path / "o.parquet"),
           "--rejects", str(tmp_path / "r.parquet")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def feff_groups() -> set[int]:
        groups = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if str(tmp_path / "w") in (entry / "cmdline").read_text():
                        groups.add(os.getpgid(int(entry.name)))
                except (OSError, ProcessLookupError):
                    pass
        return groups - {os.getpgid(proc.pid)}

    deadline = time.monotonic() + 60
    while not feff_groups() and time.monotonic() < deadline:
        time.sleep(0.2)
    groups = feff_groups()
    assert groups, "FEFF never started"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)

    def live_members() -> list[int]:
        """Processes still running (not zombies awaiting their reaper) in FEFF's groups."""
        alive = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) in groups and fields[0] != "Z":  # fields: state, ppid, pgrp
                    alive.append(int(entry.name))
        return alive

    deadline = time.monotonic() + 5  # a loaded machine may take a moment to deliver the SIGKILL
    while live_members() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not live_members(), "FEFF processes outlived the command"
