"""PDF deploy models: the measured-like rendering (Qmax ripples, noise, scale, rmax cut-off), the
held-out split, a tiny end-to-end training, and predict-pdf choosing the model by radiation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from xtalspec.datasets.pdf_deploy import (Augment, UISO_STEP, build_deploy_dataset, draw_copy, heldout_structures,
                                          render_raw, render_structure)
from xtalspec.spectra.pdf import MODEL_GRID, model_input, pdf


def clean(**params):
    """Copy parameters with no noise and no scale (the pure PDF)."""
    base = dict(rmin=1.5, rmax=20.0, qmin=0.5, qmax=23.0, qdamp=0.04, qbroad=0.01, uiso=0.008, noise=0.0,
                scale=1.0, noise_seed=1)
    return base | params


def nickel():
    return Structure.from_spacegroup(225, Lattice.cubic(3.524), ["Ni"], [[0, 0, 0]])


def rutile():
    return Structure.from_spacegroup(136, Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])


def test_draws_are_reproducible_and_in_range():
    draws = [draw_copy(f"s{i}", 0, k) for i in range(40) for k in range(2)]
    assert draws[0] == draw_copy("s0", 0, 0) and draws[0] != draw_copy("s0", 0, 1) != draw_copy("s0", 1, 1)
    for d in draws:
        assert 14 <= d["qmax"] <= 30 and 10 <= d["rmax"] <= 30 and 0 <= d["qdamp"] <= 0.15
        assert 0.005 <= d["uiso"] <= 0.010 and abs(d["uiso"] / UISO_STEP - round(d["uiso"] / UISO_STEP)) < 1e-9
        assert 0 <= d["noise"] <= 0.05 and 0.5 <= d["scale"] <= 2.0
    assert np.ptp([d["qmax"] for d in draws]) > 10  # spread over the range


@pytest.mark.parametrize("qmax", [14.0, 20.0, 27.0])
def test_termination_ripples_have_the_period_of_qmax(qmax):
    """Simple cubic, a = 6 A: nothing but the baseline below the first peak at 6 A, so G minus a
    straight line over 3-5.4 A is the first peak's termination ripple: zero crossings every pi/Qmax."""
    cubic = Structure(Lattice.cubic(6.0), ["Cu"], [[0, 0, 0]])
    (r, g), = render_raw(cubic, [clean(qmax=qmax, qdamp=0.0, uiso=0.005)], ["x-ray"])["x-ray"]
    window = (r >= 3.0) & (r <= 5.4)
    rr, gg = r[window], g[window]
    ripple = gg - np.polyval(np.polyfit(rr, gg, 1), rr)
    i = np.where(np.sign(ripple[:-1]) * np.sign(ripple[1:]) < 0)[0]
    crossings = rr[i] - ripple[i] * (rr[i + 1] - rr[i]) / (ripple[i + 1] - ripple[i])
    assert len(crossings) >= 8
    assert 2 * np.diff(crossings).mean() == pytest.approx(2 * math.pi / qmax, rel=0.06)
    # no Fourier component above Qmax survives (the whole rendered G, Hann-windowed against leakage)
    spectrum = np.abs(np.fft.rfft((g - np.polyval(np.polyfit(r, g, 1), r)) * np.hanning(len(g)), 8192))
    q = 2 * math.pi * np.fft.rfftfreq(8192, 0.01)
    assert spectrum[q > qmax + 1.5].max() < 0.02 * spectrum.max()


def test_rendering_matches_the_pdf_calculator():
    """Without noise and scale a copy is pdf() at its parameters (the longer termination window
    changes the 209-point input by < 2 %), for both radiations."""
    for params in [clean(), clean(rmax=12.3, qmax=14.2, qdamp=0.1, uiso=0.005), clean(rmax=27.0, qmax=30.0)]:
        out = render_structure(rutile(), [params])
        for radiation in ("x-ray", "neutron"):
            pdf_params = {k: params[k] for k in ("rmin", "rmax", "qmin", "qmax", "qdamp", "qbroad", "uiso")}
            r, g = pdf(rutile(), radiation=radiation, **pdf_params)
            expected = model_input(r, g, data_rmax=params["rmax"])
            assert np.abs(out[radiation][0] - expected).max() < 0.02, (radiation, params)


def test_scale_multiplies_g_and_vanishes_from_the_model_input():
    (r, g1), (_, g2) = render_raw(nickel(), [clean(), clean(scale=1.7)], ["x-ray"])["x-ray"]
    np.testing.assert_allclose(g2, 1.7 * g1, rtol=1e-12)
    x1, x2 = render_structure(nickel(), [clean(), clean(scale=1.7)], ["x-ray"])["x-ray"]
    np.testing.assert_allclose(x1, x2, atol=1e-9)  # min-max normalised: the scale is invisible


def test_noise_level_and_band_limit():
    params = clean(noise=0.05, noise_seed=7, qmax=18.0, rmax=30.0)
    (r, noisy), (_, pure) = render_raw(rutile(), [params, clean(qmax=18.0, rmax=30.0)], ["x-ray"])["x-ray"]
    noise = noisy - pure
    assert noise.std() == pytest.approx(0.05 * np.abs(pure).max(), rel=0.05)
    spectrum = np.abs(np.fft.rfft(noise * np.hanning(len(noise)), 8192))
    q = 2 * math.pi * np.fft.rfftfreq(8192, 0.01)
    assert spectrum[q > 19.5].max() < 0.02 * spectrum[q < 18].max()
    again, = render_raw(rutile(), [params], ["x-ray"])["x-ray"]
    np.testing.assert_array_equal(again[1], noisy)  # seeded


def test_rmax_cut_off_is_zero_padded_like_predict_pdf():
    short, full = render_structure(rutile(), [clean(rmax=12.0), clean(rmax=30.0)], ["x-ray"])["x-ray"]
    beyond = MODEL_GRID > 12.2
    assert np.ptp(short[beyond]) < 1e-9 and 0 < short[beyond][0] < 1  # the normalised level of G = 0
    assert np.ptp(full[beyond]) > 0.3
    (r, g), = render_raw(rutile(), [clean(rmax=12.0)], ["x-ray"])["x-ray"]
    assert r[-1] == pytest.approx(12.0)
    np.testing.assert_allclose(short, model_input(r, g, data_rmax=12.0))


def test_heldout_split_is_per_group_and_the_same_for_both_radiations():
    rows = [{"id": f"g{g}-{i}", "source": "amcsd", "spacegroup": g} for g, n in ((14, 50), (62, 30), (225, 5))
            for i in range(n)]
    table = pd.DataFrame(rows)
    held = heldout_structures(table, 0.1, seed=0)
    assert sum(k.startswith("g14-") for k in held) == 5 and sum(k.startswith("g62-") for k in held) == 3
    assert sum(k.startswith("g225-") for k in held) == 1  # at least one of a small group
    fewer = table[table["id"] != "g14-3"]  # a structure the neutron set lacks: the rest stays held out
    held_n = heldout_structures(fewer, 0.1, seed=0)
    assert len(held ^ held_n) <= 2
    assert heldout_structures(table, 0.1, seed=1) != held


# --------------------------------------------------------------- tiny end-to-end run


def _family():
    """The 24 structures of tests/xrd_fixtures.py (8 rock salts, 8 CsCl, 8 rutiles), built from one
    template per type (pymatgen's from_spacegroup takes seconds per call on a loaded machine)."""
    from xrd_fixtures import CESIUM_CHLORIDE, ROCKSALT, RUTILE

    templates = {225: rocksalt("Na", "Cl", 5.0).get_primitive_structure(),
                 221: Structure(Lattice.cubic(5.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 136: rutile()}
    out = []
    for group, table in ((225, ROCKSALT), (221, CESIUM_CHLORIDE), (136, RUTILE)):
        for a, b, *cell in table:
            s = templates[group].copy()
            s.replace_species({s[0].specie: a, s[-1].specie: b} if group != 136 else {"Ti": a, "O": b})
            if group == 136:
                s.lattice = Lattice.tetragonal(*cell)
            else:
                s.scale_lattice(templates[group].volume * (cell[0] / 5.0) ** 3)
            out.append((f"{a}{b}_{group}", group, s))
    return out


def rocksalt(a, b, lattice):
    return Structure.from_spacegroup(225, Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _structure_shard(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xtalspec.structures.records import SHARD_SCHEMA, structure_to_json

    names = ["id", "source", "url", "spacegroup", "structure", "primitive"]
    rows = []
    for name, group, structure in _family():
        text = structure_to_json(structure)
        rows.append({"id": name, "source": "test", "url": "", "spacegroup": group, "structure": text,
                     "primitive": text})
    schema = pa.schema([SHARD_SCHEMA.field(n) for n in names])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


@pytest.fixture(scope="module")
def deploy_run(tmp_path_factory):
    from xtalspec.cli import main

    tmp = tmp_path_factory.mktemp("pdfdeploy")
    shard = tmp / "shard-000.parquet"
    _structure_shard(shard)
    profiles = tmp / "profiles"
    assert main(["pdf", "deploy-profiles", "--structures", str(shard), "--out-xray", str(profiles / "xray-000.parquet"),
                 "--out-neutron", str(profiles / "neutron-000.parquet"), "--rejects", str(profiles / "rejects-000.parquet"),
                 "--copies", "3", "--seed", "0", "--augment", json.dumps({"qmax": [14, 30], "noise": 0.03})]) == 0
    models = tmp / "deploy"
    for radiation, folder in (("x-ray", "xray"), ("neutron", "neutron")):
        dataset = tmp / f"dataset-{folder}.parquet"
        assert main(["pdf", "deploy-dataset", "--pdfs", str(profiles / f"{folder}-000.parquet"), "--radiation", radiation,
                     "--min-per-group", "5", "--holdout", "0.25", "--seed", "0", "--out", str(dataset)]) == 0
        assert main(["pdf", "deploy-train", "--dataset", str(dataset), "--epochs", "3", "--batch-size", "16",
                     "--lr", "0.002", "--device", "cpu", "--out", str(models / folder)]) == 0
    return tmp, models


def test_deploy_training_writes_loadable_models_with_their_meta(deploy_run):
    from xtalspec.models.checkpoints import load_pdf_model, pdf_probabilities
    from xtalspec.utils.tables import read_frame

    tmp, models = deploy_run
    table, description = read_frame(tmp / "dataset-neutron.parquet")
    assert description["spacegroups"] == [136, 221, 225] and description["copies"] == 3
    assert description["n_heldout_structures"] == 6  # 2 of each group's 8
    assert set(table.groupby("id")["split"].nunique()) == {1}  # all copies of a structure on one side
    for folder, radiation in (("xray", "x-ray"), ("neutron", "neutron")):
        model, meta = load_pdf_model(models / folder / "model.pt")
        assert meta["deploy"] is True and meta["radiation"] == radiation and meta["spacegroups"] == [136, 221, 225]
        assert meta["training"]["epochs"] == 3 and 0 <= meta["training"]["heldout_top1"] <= 1
        assert meta["temperature"] > 0 and meta["calibration_note"].startswith("temperature")
        assert meta["verdict_thresholds"]["n_members"] == 1 and meta["ood_reference"]  # what predict-pdf's verdict needs
        heldout = pd.read_parquet(models / folder / "heldout.parquet")
        assert len(heldout) == 18 and len(heldout["logits"].iloc[0]) == 3
        logits = np.stack(heldout["logits"].to_numpy())
        probs = np.stack(heldout["probabilities"].to_numpy())
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(np.exp(logits - logits.max(1, keepdims=True)) /
                                   np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True), probs, atol=1e-5)
        x = table["x"].iloc[0][None, :].astype(np.float32)
        assert pdf_probabilities(model, np.asarray(x)).shape == (1, 3)
        summary = json.loads((models / folder / "summary.json").read_text())
        assert [c["epoch"] for c in summary["curve"]] == [1, 2, 3]
        assert all(0 <= c["heldout_top1"] <= c["heldout_top6"] <= 1 for c in summary["curve"])
        history = pd.read_csv(models / folder / "history.csv")
        assert {"heldout_top1", "heldout_top6", "loss"} <= set(history.columns)


def test_deploy_report(deploy_run, tmp_path):
    from xtalspec.cli import main

    _, models = deploy_run
    md, js = tmp_path / "deploy.md", tmp_path / "deploy.json"
    assert main(["pdf", "deploy-report", "--summaries", str(models / "xray/summary.json"),
                 str(models / "neutron/summary.json"), "--md", str(md), "--json", str(js)]) == 0
    text = md.read_text()
    assert "| x-ray | 3 |" in text and "| neutron | 3 |" in text and "Validation curve" in text
    assert [m["radiation"] for m in json.loads(js.read_text())["models"]] == ["x-ray", "neutron"]


def _write_gr(path, structure, header):
    r, g = pdf(structure, rmin=0.5, rmax=25.0, qmax=22.0, radiation="neutron" if "neutron" in header.lower() else "x-ray")
    path.write_text(header + "#### start data\n#L r G\n" + "\n".join(f"{a:.4f} {b:.6f}" for a, b in zip(r, g)) + "\n")


def test_predict_pdf_picks_the_model_of_the_radiation(deploy_run, capsys):
    from xtalspec.cli import main

    tmp, models = deploy_run
    mno = rocksalt("Ni", "O", 4.18)
    neutron, xray, unknown = tmp / "neutron.gr", tmp / "xray.gr", tmp / "plain.gr"
    _write_gr(neutron, mno, "[PDFgetN]\n# neutron PDF, qmax = 22.0\n")
    _write_gr(xray, mno, "[PDFgetX3]\n# X-ray PDF, qmax = 22.0\n")
    _write_gr(unknown, mno, "# qmax = 22.0\n")
    out = tmp / "ranking.csv"
    capsys.readouterr()
    assert main(["predict-pdf", str(neutron), "--models", str(models), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "radiation: neutron (the neutron deploy model)" in printed and "trained on X-ray" not in printed
    assert "verdict:" in printed and "model has no calibration" not in printed
    assert "qmax = 22 (model trained on 14–30)" in printed  # the deploy model's drawn range, not Table 1's 23
    assert "p_deploy_neutron" in pd.read_csv(out).columns
    assert main(["predict-pdf", str(xray), "--models", str(models), "--out", str(out)]) == 0
    assert "p_deploy_xray" in pd.read_csv(out).columns
    assert main(["predict-pdf", str(unknown), "--models", str(models), "--out", str(out)]) == 0
    assert "radiation not stated" in capsys.readouterr().out and "p_deploy_xray" in pd.read_csv(out).columns
    assert main(["predict-pdf", str(unknown), "--models", str(models), "--radiation", "neutron", "--out", str(out)]) == 0
    assert "p_deploy_neutron" in pd.read_csv(out).columns
    # the default folder is the deploy one (here: missing -> a clear error, exit 2)
    assert main(["predict-pdf", str(xray), "--models", str(tmp / "nowhere")]) == 2
    # only an X-ray model trained: a neutron file gets it, with the X-ray caution
    import shutil

    only = tmp / "only-xray"
    shutil.copytree(models / "xray", only / "xray")
    capsys.readouterr()
    assert main(["predict-pdf", str(neutron), "--models", str(only), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no neutron deploy model" in printed and "trained on X-ray PDFs" in printed
    assert "p_deploy_xray" in pd.read_csv(out).columns


def test_validation_defaults_to_the_deploy_models(deploy_run, tmp_path, monkeypatch):
    from xtalspec.evaluation import validation
    from xtalspec.prediction import pdf as prediction

    tmp, models = deploy_run
    neutron = tmp_path / "n.gr"
    _write_gr(neutron, rutile(), "[PDFgetN]\n# neutron\n")
    seen = {}
    original = prediction.predict_pdf

    def spy(path, models_dir=None, **kwargs):
        seen["models"] = models_dir
        return original(path, models, **kwargs)

    monkeypatch.setattr(prediction, "predict_pdf", spy)
    ranked, probabilities, *_ = validation._rank_pdf({"path": str(neutron), "radiation": "neutron"}, None)
    assert seen["models"] == prediction.DEFAULT_MODELS_DIR == "results/pdf/deploy"
    assert sorted(ranked) == [136, 221, 225] and probabilities[0] >= probabilities[-1]


def test_workflow_dry_run_has_the_deploy_rules(tmp_path):
    import yaml

    from test_workflow import run_snakemake

    dry = run_snakemake("-n", "all", "--forceall", "--quiet", "rules")  # the whole DAG, whatever results/ holds
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = dry.stdout + dry.stderr
    for rule, count in (("pdf_deploy_profiles", 6), ("pdf_deploy_dataset", 2), ("pdf_deploy_train", 2),
                        ("pdf_deploy_report", 1)):
        assert any(line.split() == [rule, str(count)] for line in text.splitlines()), rule
    off = tmp_path / "off.yaml"
    off.write_text(yaml.safe_dump({"pdf": {"deploy": {"enabled": False}}}))
    dry = run_snakemake("-n", "all", "--forceall", "--quiet", "rules", "--configfile", str(off))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "pdf_deploy_" not in dry.stdout + dry.stderr


def test_a_radiation_that_fails_leaves_the_other():
    samarium = Structure(Lattice.cubic(3.6), ["Sm"], [[0, 0, 0]])  # b_c(Sm) = 0: no neutron PDF
    out = render_structure(samarium, [clean(), clean(rmax=11.0)])
    assert out["neutron"].reason == "null average scattering length"
    assert len(out["x-ray"]) == 2 and all(np.isfinite(x).all() for x in out["x-ray"])
