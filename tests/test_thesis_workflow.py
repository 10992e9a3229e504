"""The thesis rules end to end: transfer learning (OQMD pretraining served by a local fake OQMD,
fine-tuning on JANAF) through Snakemake, the report from saved predictions, and the DAG."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
import yaml

from xtalspec.cli import main
from xtalspec.compositions.janaf import janaf_formation_enthalpies
from xtalspec.utils.tables import read_frame

ROOT = Path(__file__).resolve().parents[1]


def dft_rows(n_compositions: int = 150) -> list[dict]:
    """OQMD-style rows: JANAF compositions with a DFT-like offset, polymorphs and two bad rows."""
    records, _ = janaf_formation_enthalpies()
    rng = np.random.default_rng(0)
    unique = records.drop_duplicates("reduced_formula")
    # no Zn or Ta in this DFT set, so JANAF's Zn and Ta compounds fall outside the pretrained model's elements
    unique = unique[~unique["reduced_formula"].str.contains(r"Zn|Ta(?![a-z])", regex=True)]
    picked = unique.sample(n_compositions, random_state=1)
    rows = []
    for i, (formula, value) in enumerate(zip(picked["reduced_formula"], picked["formation_enthalpy_eV_per_atom"])):
        rows.append({"entry_id": 1000 + i, "name": formula, "delta_e": float(value) + rng.normal(0.05, 0.05),
                     "natoms": 5, "stability": 0.0})
    rows.append({"entry_id": 5000, "name": rows[0]["name"], "delta_e": rows[0]["delta_e"] + 0.4, "natoms": 10,
                 "stability": 0.1})  # a higher polymorph
    rows.append({"entry_id": 5001, "name": "NaCl", "delta_e": None, "natoms": 2, "stability": 0.0})
    rows.append({"entry_id": 5002, "name": "Xx2O", "delta_e": -1.0, "natoms": 3, "stability": 0.0})
    return rows


class FakeOQMD:
    def __init__(self, rows):
        self.rows, self.requests = rows, []


def make_handler(fake: FakeOQMD):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            fake.requests.append(query)
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 50))
            page = fake.rows[offset:offset + limit]
            more = offset + limit < len(fake.rows)
            body = json.dumps({"data": page, "links": {"next": None},
                               "meta": {"data_returned": len(page), "data_available": len(fake.rows),
                                        "more_data_available": more}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def oqmd_server():
    fake = FakeOQMD(dft_rows())
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/oqmdapi/formationenergy"
    server.shutdown()


def thesis_config(tmp_path, base_url):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["results"] = str(tmp_path / "results")
    comp = config["thesis"]["compositions"]
    comp["n_folds"] = 3
    comp["train"] |= {"max_epochs": 4, "patience": 2, "device": "cpu", "gpus_per_job": 0}
    comp["transfer"] |= {"enabled": True, "pretrain_source": "oqmd", "target": "janaf", "model": "elemnet"}
    comp["oqmd"] = {"base_url": base_url, "page_size": 40, "max_results": None, "filter": None, "delay_s": 0.0,
                    "retries": 1, "timeout_s": 10}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def snakemake(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_transfer_learning_rule_end_to_end_against_a_local_oqmd(oqmd_server, tmp_path, torch_one_thread):
    fake, base_url = oqmd_server
    configfile, config = thesis_config(tmp_path, base_url)
    results = tmp_path / "results/thesis/compositions"
    target = results / "janaf/transfer/predictions.parquet"
    result = snakemake(str(target), "--cores", "2", "--configfile", str(configfile))
    assert result.returncode == 0, result.stderr[-3000:]
    # the DFT source: paged (40 rows a page), bad rows rejected, one row per composition after cleaning
    assert [int(q["offset"]) for q in fake.requests] == [0, 40, 80, 120]
    records, _ = read_frame(results / "oqmd/records.parquet")
    fetch_rejects, _ = read_frame(results / "oqmd/fetch_rejects.parquet")
    assert len(records) == 151  # 150 compositions + a higher polymorph
    assert sorted(fetch_rejects["reason"]) == ["missing_value", "unparseable_formula"]
    oqmd_data, oqmd_meta = read_frame(results / "oqmd/dataset.parquet")
    assert len(oqmd_data) == 150
    # pretrained on OQMD, fine-tuned on JANAF's folds; JANAF compounds with elements OQMD lacks are rejects
    predictions, meta = read_frame(target)
    assert set(predictions["model"]) == {"elemnet-SC", "OQMD-SC", "elemnet-TL"}
    counts = predictions.groupby("model")["id"].nunique()
    assert counts.nunique() == 1 and (predictions.groupby("model").size() == counts).all()
    assert np.isfinite(predictions["y_pred"]).all()
    assert meta["pretrained"]["source"] == "oqmd" and meta["pretrained"]["n_compositions"] == 150
    rejects, _ = read_frame(results / "janaf/transfer/rejects.parquet")
    outside = rejects.loc[rejects["reason"] == "element_outside_model", "detail"]
    assert outside.str.contains(r"\b(?:Zn|Ta)\b", regex=True).sum() == 4  # ZnO and the three Ta compounds
    n_target = counts.iloc[0] + (rejects["reason"] == "element_outside_model").sum()
    assert n_target == 337  # every cleaned JANAF composition is predicted or rejected with its reason
    # the rerun is a no-op and reads nothing from the server
    n_requests = len(fake.requests)
    again = snakemake(str(target), "--cores", "1", "--configfile", str(configfile))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert len(fake.requests) == n_requests
    # the report's transfer table, from the saved predictions only
    out = tmp_path / "report"
    assert main(["thesis", "report", "--transfer", str(target), "--out-dir", str(out)]) == 0
    table = pd.read_csv(out / "tables/transfer.csv")
    assert list(table["kind"]) == ["SC", "source-SC", "TL"] and table["folds"].eq(3).all()
    assert (out / "figures/parity_transfer.png").stat().st_size > 10_000


def test_thesis_dag_with_and_without_transfer(oqmd_server, tmp_path):
    _, base_url = oqmd_server
    configfile, config = thesis_config(tmp_path, base_url)
    dry = snakemake("-n", "thesis", "--configfile", str(configfile), timeout=120)
    assert dry.returncode == 0, dry.stderr[-2000:]
    jobs = dry.stdout
    for rule in ("compositions_fetch", "compositions_cv", "compositions_learning_curve", "compositions_pretrain",
                 "compositions_transfer", "padnet_train", "padnet_evaluate", "thesis_report"):
        assert rule in jobs, rule
    off = copy.deepcopy(config)
    off["thesis"]["compositions"]["transfer"]["enabled"] = False
    (tmp_path / "off.yaml").write_text(yaml.safe_dump(off))
    dry = snakemake("-n", "thesis", "--configfile", str(tmp_path / "off.yaml"), timeout=120)
    assert dry.returncode == 0 and "compositions_transfer" not in dry.stdout and "compositions_pretrain" not in dry.stdout
