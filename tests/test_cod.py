"""COD client against a local fake COD (http.server on 127.0.0.1, random port).

The fake speaks the parts of the real interface the client uses: ``/cod/result`` with
``format=json|count``, ``id=<prefix>%``, ``el1..`` and ``nel1..``; and ``/cod/<id>.cif``.
Per-id scripts make CIF requests fail in chosen ways (503, slow, truncated) before succeeding.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pytest

import requests

from xtalspec.structures.sources.cod import (
    CIFRejected,
    CODClient,
    CODSource,
    fetch_cod,
    verify_cif,
)
from xtalspec.utils.http import Truncated, check_complete

NACL = b"""data_NaCl
_chemical_name_mineral 'Halite'
_chemical_formula_sum 'Cl Na'
_cell_length_a 5.6402
_cell_length_b 5.6402
_cell_length_c 5.6402
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_cell_formula_units_Z 4
_symmetry_space_group_name_H-M 'F m -3 m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 Na 0 0 0
Cl1 Cl 0.5 0.5 0.5
"""

RUTILE = b"""data_rutile
_chemical_formula_sum 'O2 Ti'
_cell_length_a 4.5937
_cell_length_b 4.5937
_cell_length_c 2.9587
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_cell_formula_units_Z 2
_symmetry_space_group_name_H-M 'P 42/m n m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Ti1 Ti 0 0 0
O1 O 0.3048 0.3048 0
"""

NO_CELL = re.sub(rb"_cell_length_[abc] [0-9.]+\n", b"", NACL)
LATIN1_NACL = NACL.replace(b"data_NaCl\n", b"data_NaCl\n# measured by M\xfcller\n")

# Search rows shaped like COD's JSON (strings, formula wrapped in "- ... -").
ROWS = [
    {"file": "1000041", "formula": "- Cl Na -", "Z": "4", "sg": "F m -3 m", "a": "5.6402", "vol": "179.43"},
    {"file": "1010942", "formula": "- C Ca O3 -", "Z": "6", "sg": "R -3 c :H", "a": "4.99", "vol": "367.8"},
    {"file": "1534781", "formula": "- O2 Ti -", "Z": "2", "sg": "P 42/m n m", "a": "4.5937", "vol": "62.43"},
    {"file": "2001234", "formula": "- C2 H5 N O2 -", "Z": "4", "sg": "P 1 21/n 1", "a": "5.1", "vol": "310.2"},
    {"file": "4000001", "formula": "- O2 Si -", "cellformula": "- O192 Si96 -", "Z": None, "sg": "F d -3 m"},
    {"file": "9008213", "formula": "- Na2 O -", "Z": None, "sg": "F m -3 m"},
    {"file": "9009999", "formula": "- Cl Na -", "Z": "4", "sg": "F m -3 m", "a": "5.64", "vol": "179.4"},
]
ALL_IDS = [r["file"] for r in ROWS]
MAX_REQUESTS = 300  # any test needing more than this is a runaway loop


class FakeCOD:
    def __init__(self):
        self.rows = [dict(r) for r in ROWS]
        self.cifs: dict[str, bytes] = {}
        self.script: dict[str, list[str]] = {}  # id -> actions for its next CIF requests
        self.requests: list[tuple[float, str]] = []  # (monotonic time, raw path)
        self.lock = threading.Lock()
        self.base_url = ""

    def cif_hits(self, cod_id: str | None = None) -> int:
        paths = [unquote(urlsplit(p).path) for _, p in self.requests]
        if cod_id is None:
            return sum(p.endswith(".cif") for p in paths)
        return paths.count(f"/cod/{cod_id}.cif")

    def search_queries(self, fmt: str) -> list[dict]:
        queries = [parse_qs(urlsplit(p).query) for _, p in self.requests if urlsplit(p).path == "/cod/result"]
        return [{k: v[0] for k, v in q.items()} for q in queries if q.get("format") == [fmt]]

    def next_action(self, cod_id: str) -> str:
        with self.lock:
            actions = self.script.get(cod_id)
            return actions.pop(0) if actions else "ok"

    def matching_rows(self, query: dict[str, str]) -> list[dict]:
        prefix = query.get("id", "%")
        assert prefix.endswith("%"), prefix
        found = []
        for row in self.rows:
            elements = set(re.findall(r"[A-Z][a-z]?", row["formula"]))
            required = {v for k, v in query.items() if re.fullmatch(r"el\d", k)}
            excluded = {v for k, v in query.items() if re.fullmatch(r"nel\d", k)}
            if row["file"].startswith(prefix[:-1]) and required <= elements and not excluded & elements:
                found.append(row)
        return found


def make_handler(fake: FakeCOD):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with fake.lock:
                fake.requests.append((time.monotonic(), self.path))
                if len(fake.requests) > MAX_REQUESTS:
                    return self.reply(500, b"request budget exceeded")
            url = urlsplit(self.path)
            if url.path == "/cod/result":
                return self.search({k: v[0] for k, v in parse_qs(url.query).items()})
            if url.path.startswith("/cod/") and url.path.endswith(".cif"):
                return self.cif(unquote(url.path[len("/cod/") : -len(".cif")]))
            self.reply(404, b"no such page")

        def search(self, query):
            rows = fake.matching_rows(query)
            if query.get("format") == "count":
                return self.reply(200, str(len(rows)).encode(), "text/plain")
            self.reply(200, json.dumps(rows).encode(), "application/json")

        def cif(self, cod_id):
            action = fake.next_action(cod_id)
            body = fake.cifs.get(cod_id)
            if body is None or action == "404":
                return self.reply(404, b"<html>Not Found</html>", "text/html")
            if action in ("503", "429"):
                return self.reply(int(action), b"<html>Try again later</html>", "text/html", {"Retry-After": "0"})
            if action == "sleep":
                time.sleep(1.5)  # well past the client's timeout
            if action == "cut_no_length":  # a body cut short, with nothing that says how long it was
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body[: body.index(b"Cl1")])
                self.close_connection = True
                return
            if action == "cut_consistent":  # a cut file served whole: its length matches, its atoms do not
                return self.reply(200, body[: body.index(b"Cl1")], "chemical/x-cif")
            if action == "trickle":  # one byte every 0.2 s: never a socket timeout, never done
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            if action == "huge":  # no length, megabytes until the client hangs up (at most 64 MB)
                self.send_response(200)
                self.end_headers()
                try:
                    for _ in range(64):
                        self.wfile.write(b"#" * 2**20)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
                return
            if action == "huge_announced":
                return self.reply(200, b"", "chemical/x-cif", {"X-Length": "300000000"}, length=300_000_000)
            if action == "retry_after_long":
                return self.reply(503, b"busy", "text/plain", {"Retry-After": "100000"})
            if action == "truncate":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.reply(200, body, "chemical/x-cif")

        def reply(self, status, body, ctype="text/plain", headers=None, length=None):
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    return Handler


@pytest.fixture
def fake():
    cod = FakeCOD()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(cod))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    cod.base_url = f"http://127.0.0.1:{server.server_port}/cod"
    try:
        yield cod
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert len(cod.requests) <= MAX_REQUESTS


def client(fake, tmp_path, **overrides) -> CODClient:
    options = dict(
        base_url=fake.base_url,
        cache_dir=tmp_path / "cache",
        min_interval_s=0.001,
        max_retries=3,
        backoff_s=0.01,
        timeout_s=0.5,
        page_size=2,
    )
    options.update(overrides)
    return CODClient(**options)


# ----------------------------------------------------------------------------- search


def test_paging_returns_every_entry_across_pages(fake, tmp_path):
    found = client(fake, tmp_path).search(inorganic_only=False)

    assert [e["id"] for e in found] == ALL_IDS
    pages = fake.search_queries("json")
    assert len(pages) >= 4  # page_size=2 forces prefixes to split
    assert all(re.fullmatch(r"\d{1,7}%", q["id"]) for q in pages)
    assert all(len(fake.matching_rows(q)) <= 2 for q in pages)
    assert len({q["id"] for q in pages}) == len(pages)  # no page fetched twice
    nacl = found[0]
    assert nacl["formula"] == "Cl Na" and nacl["elements"] == ["Cl", "Na"]
    assert nacl["n_atoms"] == 8 and nacl["sg"] == "F m -3 m" and nacl["vol"] == pytest.approx(179.43)
    assert nacl["url"] == f"{fake.base_url}/1000041.cif"


def test_inorganic_filter_drops_c_and_h_only(fake, tmp_path):
    ids = [e["id"] for e in client(fake, tmp_path).search(inorganic_only=True)]

    assert "2001234" not in ids  # glycine, C and H
    assert "1010942" in ids  # calcite: carbon without hydrogen stays
    assert ids == sorted(set(ALL_IDS) - {"2001234"})


def test_max_atoms_uses_cellformula_or_formula_times_z(fake, tmp_path):
    found = client(fake, tmp_path).search(max_atoms=10)

    # NaCl 2x4=8, rutile 3x2=6 kept; calcite 5x6=30 and cellformula O192 Si96 too big;
    # Na2O has neither Z nor cellformula, so its size is unknown and it is dropped.
    assert [e["id"] for e in found] == ["1000041", "1534781", "9009999"]
    assert [e["n_atoms"] for e in found] == [8, 6, 8]


def test_element_filters_go_to_server_and_client(fake, tmp_path):
    c = client(fake, tmp_path)
    assert [e["id"] for e in c.search(elements=["Na"])] == ["1000041", "9008213", "9009999"]
    assert all(q.get("el1") == "Na" for q in fake.search_queries("count"))

    found = c.search(exclude_elements=["Ti", "Cl", "Ca", "Si", "Na"], inorganic_only=False)
    assert [e["id"] for e in found] == ["2001234"]
    last = fake.search_queries("count")[-1]
    assert [last.get(f"nel{i}") for i in range(1, 6)] == ["Ca", "Cl", "Na", "Si", None]  # COD takes 4


def test_max_results_stops_early_and_search_is_cached(fake, tmp_path):
    c = client(fake, tmp_path)
    first = c.search(max_results=2)
    assert [e["id"] for e in first] == ["1000041", "1010942"]
    assert not any(q["id"].startswith("9") for q in fake.search_queries("count"))

    seen = len(fake.requests)
    assert c.search(max_results=2) == first
    assert client(fake, tmp_path).search(max_results=2) == first  # cache is on disk
    assert len(fake.requests) == seen
    assert list((tmp_path / "cache" / "search").glob("*.json"))

    c.search(max_results=2, refresh=True)
    assert len(fake.requests) > seen


def test_bad_search_arguments_are_refused(fake, tmp_path):
    c = client(fake, tmp_path)
    with pytest.raises(ValueError):
        c.search(elements=["Na", "Cl"], exclude_elements=["Cl"])
    with pytest.raises(ValueError):
        c.search(elements=["na; DROP"])
    assert fake.requests == []


# ----------------------------------------------------------------------------- download


def test_download_writes_verified_cifs_and_index(fake, tmp_path):
    fake.cifs.update({"1000041": NACL, "1534781": RUTILE})
    report = client(fake, tmp_path).download(["1534781", "1000041", "1534781"])

    assert report.downloaded == ["1000041", "1534781"] and report.rejected == [] and report.cached == []
    cache = tmp_path / "cache"
    assert (cache / "cif" / "1000041.cif").read_bytes() == NACL
    rows = [json.loads(line) for line in (cache / "index.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1000041", "1534781"]
    assert rows[1] == {
        "id": "1534781",
        "file": "1534781.cif",
        "url": f"{fake.base_url}/1534781.cif",
        "sha256": hashlib.sha256(RUTILE).hexdigest(),
    }
    assert not list(cache.rglob("*.tmp"))


@pytest.mark.parametrize("status", ["503", "429"])
def test_503_or_429_then_200_is_retried(fake, tmp_path, status):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = [status, status]
    report = client(fake, tmp_path).download(["1000041"])

    assert report.downloaded == ["1000041"]
    assert fake.cif_hits("1000041") == 3


def test_timeout_is_retried(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["sleep"]
    report = client(fake, tmp_path).download(["1000041"])

    assert report.downloaded == ["1000041"]
    assert fake.cif_hits("1000041") == 2


def test_truncated_body_is_detected_and_refetched(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["truncate"]
    report = client(fake, tmp_path).download(["1000041"])

    assert report.downloaded == ["1000041"]
    assert fake.cif_hits("1000041") == 2
    assert (tmp_path / "cache" / "cif" / "1000041.cif").read_bytes() == NACL


def test_short_body_is_caught_even_when_urllib3_does_not_enforce_content_length():
    # urllib3 2.x raises on a short body by itself (covered above); urllib3 1.26, which
    # requests>=2.31 still allows, does not by default, and then this check is the guard.
    response = requests.Response()
    response.headers["Content-Length"] = str(len(NACL))
    response._content = NACL[:50]
    with pytest.raises(Truncated):
        check_complete(response)
    response._content = NACL
    check_complete(response)


def test_retries_run_out_into_a_reject(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["503"] * 10
    report = client(fake, tmp_path, max_retries=2).download(["1000041"])

    assert [(i, r) for i, r, _ in report.rejected] == [("1000041", "retries_exhausted")]
    assert "HTTP 503" in report.rejected[0][2]
    assert fake.cif_hits("1000041") == 3


def test_404_is_rejected_without_retries(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    report = client(fake, tmp_path).download(["1000041", "1999999"])

    assert report.downloaded == ["1000041"]
    assert [(i, r) for i, r, _ in report.rejected] == [("1999999", "http_404")]
    assert fake.cif_hits("1999999") == 1


def test_bad_cifs_are_rejected_with_reasons_and_good_ones_land(fake, tmp_path):
    fake.cifs.update(
        {
            "1000041": NACL,
            "1000042": LATIN1_NACL,
            "1100001": NO_CELL,
            "1100002": b"<html><body>Database maintenance</body></html>",
            "1100003": b"\x89PNG\r\n\x1a\n\x00\x00",
            "1100004": NACL.replace(b"_atom_site_fract_", b"_atom_site_occupancy_"),
        }
    )
    report = client(fake, tmp_path).download(sorted(fake.cifs))

    assert report.downloaded == ["1000041", "1000042"]
    assert {i: r for i, r, _ in report.rejected} == {
        "1100001": "no_cell",
        "1100002": "no_data_block",
        "1100003": "not_text",
        "1100004": "no_atom_sites",
    }
    assert all(detail for _, _, detail in report.rejected)
    assert sorted(p.name for p in (tmp_path / "cache" / "cif").iterdir()) == ["1000041.cif", "1000042.cif"]
    assert CODSource(tmp_path / "cache").list_ids() == ["1000041", "1000042"]


def test_verify_cif_reports_pymatgen_parse_failures():
    broken = NACL.replace(b"Cl1 Cl 0.5 0.5 0.5\n", b"Cl1 Cl 0.5\n")  # loop values don't fill a row
    with pytest.raises(CIFRejected) as err:
        verify_cif(broken)
    assert err.value.reason == "cif_parse_error"
    assert verify_cif(RUTILE).startswith("data_rutile")


def test_second_download_makes_no_cif_requests(fake, tmp_path):
    fake.cifs.update({"1000041": NACL, "1534781": RUTILE})
    client(fake, tmp_path).download(["1000041", "1534781"])
    hits = fake.cif_hits()

    report = client(fake, tmp_path).download(["1000041", "1534781"])

    assert report.cached == ["1000041", "1534781"] and report.downloaded == []
    assert fake.cif_hits() == hits == 2


def test_resume_trusts_verified_files_and_refetches_damaged_ones(fake, tmp_path):
    fake.cifs.update({"1000041": NACL, "1534781": RUTILE})
    cache = tmp_path / "cache"
    client(fake, tmp_path).download(["1000041", "1534781"])
    (cache / "index.jsonl").unlink()  # as if the run stopped before the index was written
    (cache / "cif" / "1534781.cif").write_bytes(RUTILE[:40])  # and one file got damaged

    report = client(fake, tmp_path).download(["1000041", "1534781"])

    assert report.cached == ["1000041"] and report.downloaded == ["1534781"]
    assert fake.cif_hits("1000041") == 1 and fake.cif_hits("1534781") == 2
    assert CODSource(cache).list_ids() == ["1000041", "1534781"]


def test_path_traversal_id_stays_inside_the_cache(fake, tmp_path):
    fake.cifs["../../x"] = NACL
    cache = tmp_path / "cache"
    report = client(fake, tmp_path).download(["../../x"])

    assert report.downloaded == ["../../x"]
    assert fake.cif_hits("../../x") == 1
    assert any(p.endswith("/cod/..%2F..%2Fx.cif") for _, p in fake.requests)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == NACL]
    assert len(written) == 1 and written[0].parent == cache / "cif"
    entry = next(CODSource(cache).iter_entries(["../../x"]))
    assert entry.data == NACL and entry.error is None


def test_requests_are_spaced_by_min_interval(fake, tmp_path):
    fake.cifs.update({"1000041": NACL, "1534781": RUTILE, "9009999": NACL})
    client(fake, tmp_path, min_interval_s=0.15).download(["1000041", "1534781", "9009999"])

    times = [t for t, _ in fake.requests]
    assert len(times) == 3
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.13


# ----------------------------------------------------------------------------- source + glue


def test_cod_source_reads_cache_and_reports_missing_files(fake, tmp_path):
    fake.cifs.update({"1000041": NACL, "1534781": RUTILE})
    cache = tmp_path / "cache"
    client(fake, tmp_path).download(["1534781", "1000041"])
    (cache / "cif" / "1534781.cif").unlink()

    source = CODSource(cache)
    assert source.name == "cod" and source.list_ids() == ["1000041", "1534781"]
    nacl, rutile = source.iter_entries(["1000041", "1534781"])
    assert nacl.data == NACL and nacl.error is None
    assert nacl.provenance.as_dict() == {
        "source": "cod",
        "origin": fake.base_url,
        "url": f"{fake.base_url}/1000041.cif",
        "licence": "CC0 (COD)",
    }
    assert rutile.id == "1534781" and rutile.data is None and "missing" in rutile.error


def test_fetch_cod_searches_downloads_and_writes_report(fake, tmp_path):
    fake.cifs.update({"1000041": NACL, "1534781": RUTILE, "9009999": NO_CELL})
    options = {
        "base_url": fake.base_url,
        "elements": None,
        "exclude_elements": ["Si"],
        "max_atoms": 10,
        "inorganic_only": True,
        "max_results": None,
        "min_interval_s": 0.001,
        "max_retries": 1,
        "timeout_s": 0.5,
    }
    report = fetch_cod(options, tmp_path / "cache")

    assert report.downloaded == ["1000041", "1534781"]
    assert [(i, r) for i, r, _ in report.rejected] == [("9009999", "no_cell")]
    written = json.loads((tmp_path / "cache" / "fetch_report.json").read_text())
    assert written["n_search_results"] == 3 and written["downloaded"] == report.downloaded
    assert written["rejected"][0]["reason"] == "no_cell"

    # the rejected download reaches the ingestion rejects table; the good ones the shards
    from xtalspec.cli import main

    out = tmp_path / "ingested"
    assert main(["ingest", "--source", "cod", "--path", str(tmp_path / "cache"), "--out", str(out),
                 "--n-shards", "2"]) == 0
    rejects = pd.read_parquet(out / "rejects.parquet")
    assert rejects[["id", "reason"]].values.tolist() == [["9009999", "download_failed"]]
    assert "no_cell" in rejects["detail"].iloc[0]
    shards = pd.concat(pd.read_parquet(out / f"shard-00{i}.parquet") for i in range(2))
    assert sorted(shards["id"]) == ["1000041", "1534781"]
    assert set(shards["url"]) == {f"{fake.base_url}/1000041.cif", f"{fake.base_url}/1534781.cif"}
    with pytest.raises(ValueError, match="unknown COD options"):
        fetch_cod({"max_atom": 10}, tmp_path / "cache")


# ----------------------------------------------------------------------------- hostile servers


def _no_cif_cached(tmp_path, cod_id):
    return not (tmp_path / "cache" / "cif" / f"{cod_id}.cif").exists()


def test_body_cut_without_content_length_is_retried_then_rejected_never_cached(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["cut_no_length"] * 4  # max_retries=3: every attempt is cut
    report = client(fake, tmp_path).download(["1000041"])
    assert [(i, r) for i, r, _ in report.rejected] == [("1000041", "download_truncated")]
    assert fake.cif_hits("1000041") == 4
    assert _no_cif_cached(tmp_path, "1000041")


def test_body_cut_without_content_length_then_whole_is_kept(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["cut_no_length"]
    report = client(fake, tmp_path).download(["1000041"])
    assert report.downloaded == ["1000041"]
    assert (tmp_path / "cache" / "cif" / "1000041.cif").read_bytes() == NACL


def test_cif_that_disagrees_with_its_search_entry_is_rejected_as_truncated(fake, tmp_path):
    # NaCl cut before its Cl row, served with a matching Content-Length: the HTTP layer cannot
    # tell; the search entry's formula can (the cut file parses as Na in Fm-3m).
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["cut_consistent"] * 4
    entry = {"id": "1000041", "formula": "Cl Na", "Z": 4.0}
    report = client(fake, tmp_path).download(["1000041"], {"1000041": entry})
    assert [(i, r) for i, r, _ in report.rejected] == [("1000041", "download_truncated")]
    assert "Cl" in report.rejected[0][2] and "Na" in report.rejected[0][2]
    assert _no_cif_cached(tmp_path, "1000041")
    fake.script["1000041"] = ["cut_consistent"]  # once cut, then whole: kept
    report = client(fake, tmp_path).download(["1000041"], {"1000041": entry})
    assert report.downloaded == ["1000041"]


def test_search_disagreement_accepts_the_right_compound_and_ignores_hydrogen():
    from xtalspec.structures.sources.cod import search_disagreement

    assert search_disagreement(NACL.decode(), {"formula": "Cl Na", "Z": 4.0}) is None
    assert search_disagreement(NACL.decode(), {"formula": "Cl H2 Na", "Z": 4.0}) is None
    assert search_disagreement(NACL.decode(), {"formula": "Cl Na", "Z": None}) is None
    assert "per formula unit" in search_disagreement(NACL.decode(), {"formula": "Cl2 Na", "Z": 4.0})
    assert search_disagreement(RUTILE.decode(), {"formula": "O2 Ti", "Z": 2.0}) is None


def test_trickling_server_ends_within_the_deadline(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["trickle"] * 2
    start = time.monotonic()
    report = client(fake, tmp_path, max_retries=1, deadline_s=1.0).download(["1000041"])
    elapsed = time.monotonic() - start
    assert [(i, r) for i, r, _ in report.rejected] == [("1000041", "retries_exhausted")]
    assert "TooSlow" in report.rejected[0][2]
    assert elapsed < 5, elapsed  # 2 attempts x 1 s deadline (+ one byte's 0.2 s), not 2 x 70 s
    assert _no_cif_cached(tmp_path, "1000041")


@pytest.mark.parametrize("action", ["huge", "huge_announced"])
def test_huge_body_is_capped_not_cached(fake, tmp_path, action):
    import resource

    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = [action] * 2
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    report = client(fake, tmp_path, max_retries=1, max_bytes=100_000).download(["1000041"])
    assert [(i, r) for i, r, _ in report.rejected] == [("1000041", "retries_exhausted")]
    assert "TooLarge" in report.rejected[0][2]
    assert time.monotonic() - start < 10
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 32 * 1024  # never held the 64 MB body
    assert _no_cif_cached(tmp_path, "1000041")


def test_retry_after_is_capped(fake, tmp_path):
    fake.cifs["1000041"] = NACL
    fake.script["1000041"] = ["retry_after_long"]
    start = time.monotonic()
    report = client(fake, tmp_path, max_wait_s=0.3).download(["1000041"])
    assert report.downloaded == ["1000041"]
    assert time.monotonic() - start < 5  # waited 0.3 s, not 100,000 s
