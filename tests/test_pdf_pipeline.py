"""spacegroupMining pieces: measured G(r) files, class weights, randomised parameters, split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xtalspec.datasets.pdfs import PAPER_GROUPS, PAPER_PARAMS, SWEEPS, class_weights, sample_params
from xtalspec.prediction.pdf import PDFFileError, check_grid_overlap, read_gr

from conftest import cif_dir_only

GR_PDFGETX3 = """[DEFAULT]
version = pdfgetx3-2.1.1
[Experiment]
wavelength = 0.1839
[PDF]
qmin = 0.5
qmax = 21.5
qdamp = 0.045
#### start data
#S 1
#L r($\\AA$)  G($\\AA^{-2}$)
""" + "\n".join(f"{r:.2f} {np.sin(3 * r):.5f}" for r in np.arange(0.01, 25, 0.01)) + "\n"


def test_reads_pdfgetx3_file_with_header(tmp_path):
    path = tmp_path / "sample.gr"
    path.write_text(GR_PDFGETX3)
    r, g, header = read_gr(path)
    assert len(r) == len(g) > 2000 and r[0] == pytest.approx(0.01) and r[-1] == pytest.approx(24.99)
    assert header == {"qmin": 0.5, "qmax": 21.5, "qdamp": 0.045}


@pytest.mark.parametrize("content, problem", [
    ("", "empty"),
    ("r G\nfoo bar\nbaz qux\n", "no numeric"),
    ("1.0 2.0\n1.1 abc\n", "non-numeric"),
    ("1.0 nan\n1.1 2.0\n", "non-finite"),
])
def test_bad_gr_files_fail_clearly(tmp_path, content, problem):
    path = tmp_path / "bad.gr"
    path.write_text(content)
    with pytest.raises(PDFFileError, match=problem) as info:
        read_gr(path)
    assert "bad.gr" in str(info.value)


def test_r_range_must_meet_the_grid(tmp_path):
    with pytest.raises(PDFFileError, match="grid"):
        check_grid_overlap(tmp_path / "x.gr", np.linspace(31, 40, 100))
    check_grid_overlap(tmp_path / "x.gr", np.linspace(0.5, 12, 200))


def test_class_weights_are_ntrain_over_nclass():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w.tolist() == [4 / 3, 4.0, 0.0]


def test_randomised_parameters_are_reproducible_and_in_range():
    a, b = sample_params("0000008", 0), sample_params("0000008", 0)
    assert a == b and a != sample_params("0000009", 0)
    draws = [sample_params(str(i), 1) for i in range(200)]
    assert all(10 <= d["rmax"] <= 30 and 12 <= d["qmax"] <= 30 and 0 <= d["qdamp"] <= 0.15
               and 0.005 <= d["uiso"] <= 0.010 for d in draws)
    assert all(d["qmin"] == PAPER_PARAMS["qmin"] and d["qbroad"] == PAPER_PARAMS["qbroad"] for d in draws)


def test_paper_constants():
    assert len(PAPER_GROUPS) == 45 and len(set(PAPER_GROUPS)) == 45
    for sweep in SWEEPS.values():
        assert len(sweep["values"]) == len(sweep["top1"]) == len(sweep["top6"])
        assert all(t6 >= t1 for t1, t6 in zip(sweep["top1"], sweep["top6"]))
    assert SWEEPS["rmax"]["values"] == list(range(10, 31, 2))
    assert SWEEPS["qmax"]["values"] == [12, 15, 18, 21, 23, 24, 27, 30]


def _tiny_pdf_config(tmp_path, cifs):
    return {
        "results": str(tmp_path / "results"),
        "structures": cif_dir_only(cifs),
        "pdf": {"sources": ["cif_dir"], "min_per_group": 2, "test_fraction": 0.25, "sweep_fraction": 1.0,
                "n_bootstrap": 20, "train_randomised": True,
                "train": {"epochs": 40, "batch_size": 8, "lr": 0.002, "lr_decay": 0.025, "seed": 1, "threads": 1,
                          "device": "cpu", "gpus_per_job": 0}},
    }


@pytest.fixture(scope="module")
def pdf_run(tmp_path_factory):
    import yaml

    from test_workflow import run_snakemake
    from xrd_fixtures import write_cif_folder

    tmp_path = tmp_path_factory.mktemp("pdfrun")
    cifs = write_cif_folder(tmp_path / "structure_types")
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump(_tiny_pdf_config(tmp_path, cifs)))
    result = run_snakemake("pdf", "--cores", "2", "--configfile", str(configfile), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, configfile


def test_pdf_system_end_to_end_and_one_sweep_rebuilds_alone(pdf_run):
    from test_workflow import run_snakemake

    tmp_path, configfile = pdf_run
    out = tmp_path / "results/pdf"
    topk = pd.read_csv(out / "tables/topk.csv")
    assert set(topk["model"]) == {"standard", "randomised"} and topk["top6"].between(0, 1).all()
    for number, parameter in [(2, "rmax"), (3, "qmax"), (4, "qdamp"), (5, "uiso")]:
        table = pd.read_csv(out / f"tables/table{number}_{parameter}.csv")
        assert sorted(table["value"].unique()) == sorted(SWEEPS[parameter]["values"])
        assert set(table["model"]) == {"standard", "randomised"}
        assert (out / f"figures/figure{number}_{parameter}.png").stat().st_size > 1000
        assert "paper" in (out / f"tables/table{number}_{parameter}.md").read_text()
    (out / "tables/table4_qdamp.md").unlink()
    dry = run_snakemake("pdf_table4", "-n", "--configfile", str(configfile))
    assert dry.returncode == 0, dry.stderr
    text = dry.stdout + dry.stderr
    assert "pdf_sweep" in text and "pdf_train" not in text and "pdf_profiles" not in text
    assert "qdamp" in text and "rmax" not in text.split("Job stats")[-1]


def test_predict_pdf_on_a_pdf_with_other_qmax_and_qdamp(pdf_run, capsys):
    from xtalspec.cli import main
    from xtalspec.spectra.pdf import pdf
    from xrd_fixtures import structures

    tmp_path, _ = pdf_run
    structure = dict(structures())["NaCl_rocksalt"]
    r, g = pdf(structure, rmin=0.5, rmax=25.0, qmax=20.0, qdamp=0.06)
    path = tmp_path / "measured.gr"
    header = "[PDF]\nqmax = 20.0\nqdamp = 0.06\n#### start data\n#L r G\n"
    path.write_text(header + "\n".join(f"{a:.4f} {b:.6f}" for a, b in zip(r, g)) + "\n")
    out = tmp_path / "ranking.csv"
    assert main(["predict-pdf", str(path), "--models", str(tmp_path / "results/pdf/models"), "--out", str(out)]) == 0
    ranking = pd.read_csv(out)
    assert 225 in ranking["spacegroup"].head(6).tolist()
    assert ranking["spacegroup"].iloc[0] == 225
    assert {"p_standard", "p_randomised"} <= set(ranking.columns)
    printed = capsys.readouterr().out
    assert "qmax = 20 (model trained at 23)" in printed
    bad = tmp_path / "empty.gr"
    bad.write_text("")
    assert main(["predict-pdf", str(bad), "--models", str(tmp_path / "results/pdf/models")]) == 2


def test_structures_the_calculator_cannot_handle_become_rejects(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pymatgen.core import Lattice, Structure

    from xtalspec.datasets.pdfs import write_pdf_shard
    from xtalspec.structures.records import SHARD_SCHEMA, structure_to_json

    def row(ident, structure):
        text = structure_to_json(structure)
        return {"id": ident, "source": "test", "url": "", "spacegroup": 221, "structure": text, "primitive": text}

    good = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lonely = Structure(Lattice.cubic(200.0), ["Cs"], [[0, 0, 0]])  # no neighbour within rmax, absurd density
    shard = tmp_path / "shard-000.parquet"
    names = ["id", "source", "url", "spacegroup", "structure", "primitive"]
    schema = pa.schema([SHARD_SCHEMA.field(n) for n in names])
    pq.write_table(pa.Table.from_pylist([row("good", good), row("lonely", lonely)], schema=schema), shard)
    result = write_pdf_shard(shard, tmp_path / "pdfs.parquet", tmp_path / "rejects.parquet")
    assert result == {"pdfs": 1, "rejects": 1, "seconds": result["seconds"]}
    rejects = pd.read_parquet(tmp_path / "rejects.parquet")
    assert rejects["id"].tolist() == ["lonely"] and rejects["detail"].iloc[0]
    assert pd.read_parquet(tmp_path / "pdfs.parquet")["id"].tolist() == ["good"]
