"""OQMD and Materials Project formation-energy clients against local fakes (127.0.0.1, port 0).

One fake server speaks both interfaces: OQMD's ``/oqmdapi/formationenergy`` (``limit``,
``offset``, ``filter``, ``meta.more_data_available``) and MP's ``/materials/summary/``
(``x-api-key`` header, ``_limit``, ``_skip``, ``is_stable``, ``elements``, ``meta.total_doc``).
A script of actions makes the next requests fail in chosen ways (503, 429, slow, ...).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from xtalspec.compositions import (
    RECORD_COLUMNS,
    REST_COLUMNS,
    REST_REJECT_REASONS,
    APIKeyRefused,
    RestError,
    RestHTTPError,
    fetch_mp_formation,
    fetch_oqmd,
    fetch_source,
    lowest_per_composition,
)
from xtalspec.compositions.janaf import REJECT_COLUMNS
from xtalspec.structures.sources.mp import MissingAPIKey

KEY = "sekrit-MP-key-0123456789abcdef"
MAX_REQUESTS = 200


def oqmd(entry_id, name, delta_e, stability=0.0):
    return {"entry_id": entry_id, "name": name, "delta_e": delta_e, "natoms": 5, "stability": stability}


OQMD_ROWS = [
    oqmd(1, "Fe2O3", -1.70),
    oqmd(2, "Fe2O3", -1.55, 0.15),         # higher polymorph of Fe2O3
    oqmd(3, "NaCl", -2.10),
    oqmd(4, "MgO", -3.05),
    oqmd(5, "Al2O3", -3.40),
    oqmd(6, "TiO2", -3.30),
    oqmd(7, "TiO2", -3.25, 0.05),
    oqmd(8, "SiO2", -3.00),
    oqmd(9, "LiFePO4", -2.50),
    oqmd(10, "CaTiO3", -3.40),
    oqmd(11, "ZnS", -0.90, 0.01),
    oqmd(12, "GaAs", -0.40),
    oqmd(None, "CuO", -0.80),               # missing_value: no id
    oqmd(14, None, -0.80),                  # missing_value: no formula
    oqmd(15, "Cu2O", None),                 # missing_value: no energy
    oqmd(16, "NiO", float("nan")),          # non_finite
    oqmd(17, "CoO", float("inf")),          # non_finite
    oqmd(18, "MnO", "abc"),                 # non_finite: not a number
    oqmd(19, "Xx2O3", -1.0),                # unparseable_formula: unknown symbol
    oqmd(20, "D2O", -1.0),                  # unparseable_formula: deuterium
    oqmd(21, "Fe2O3)(", -1.0),              # unparseable_formula: pymatgen fails
    oqmd(22, "Fe", 0.0),                    # single_element
    oqmd(3, "NaCl", -9.99),                 # duplicate_id: the first oqmd-3 wins
    oqmd(24, "KCl", -2.20),
    oqmd(25, "Fe3O4", -1.65, 0.02),
]
OQMD_GOOD = [f"oqmd-{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24, 25)]
OQMD_REJECTS = [  # (id, reason) in served order
    (None, "missing_value"), ("oqmd-14", "missing_value"), ("oqmd-15", "missing_value"),
    ("oqmd-16", "non_finite"), ("oqmd-17", "non_finite"), ("oqmd-18", "non_finite"),
    ("oqmd-19", "unparseable_formula"), ("oqmd-20", "unparseable_formula"), ("oqmd-21", "unparseable_formula"),
    ("oqmd-22", "single_element"), ("oqmd-3", "duplicate_id"),
]


def mp(mid, formula, energy, e_hull=0.0):
    return {"material_id": mid, "formula_pretty": formula, "formation_energy_per_atom": energy,
            "energy_above_hull": e_hull, "nsites": 10, "composition_reduced": {}}


MP_ROWS = [
    mp("mp-19770", "Fe2O3", -1.73),
    mp("mp-24972", "Fe2O3", -1.60, 0.13),
    mp("mp-22862", "NaCl", -2.09),
    mp("mp-1265", "MgO", -3.05),
    mp("mp-1143", "Al2O3", -3.43),
    mp("mp-2657", "TiO2", -3.51),
    mp("mp-390", "TiO2", -3.50, 0.01),
    mp("mp-6930", "SiO2", -3.05),
    mp("mp-19017", "LiFePO4", -2.55),
    mp("mp-4019", "CaTiO3", -3.45),
    mp("mp-10695", "ZnS", -0.95),
    mp("mp-2534", "GaAs", -0.45),
    mp("mp-23193", "KCl", -2.20),
    mp("mp-19306", "Fe3O4", -1.67, 0.03),
    mp("mp-1", None, -1.0),                  # missing_value
    mp(None, "CuO", -1.0),                   # missing_value
    mp("mp-3", "Cu2O", None),                # missing_value
    mp("mp-4", "NiO", float("nan")),         # non_finite
    mp("mp-5", "Q2O", -1.0),                 # unparseable_formula
    mp("mp-13", "Fe", 0.0),                  # single_element
    mp("mp-1265", "MgO", -1.00),             # duplicate_id
    mp("mp-7", "CoO", "-inf"),               # non_finite
    mp("mp-8", "LiCl", -2.0, 0.5),
    mp("mp-9", "D2O", -1.0),                 # unparseable_formula
    mp("mp-10", "BN", -1.3),
]
MP_GOOD = [r["material_id"] for r in MP_ROWS[:14]] + ["mp-8", "mp-10"]
MP_REJECTS = [
    ("mp-1", "missing_value"), (None, "missing_value"), ("mp-3", "missing_value"), ("mp-4", "non_finite"),
    ("mp-5", "unparseable_formula"), ("mp-13", "single_element"), ("mp-1265", "duplicate_id"),
    ("mp-7", "non_finite"), ("mp-9", "unparseable_formula"),
]


class Fake:
    def __init__(self):
        self.oqmd_rows = [dict(r) for r in OQMD_ROWS]
        self.mp_rows = [dict(r) for r in MP_ROWS]
        self.script: list[str] = []  # actions for the next requests, then "ok"
        self.requests: list[dict] = []  # {"t", "path", "query", "headers"}
        self.lock = threading.Lock()
        self.base = ""

    @property
    def oqmd_url(self):
        return f"{self.base}/oqmdapi/formationenergy"

    def queries(self, path_end: str) -> list[dict]:
        return [r["query"] for r in self.requests if r["path"].endswith(path_end)]

    def next_action(self) -> str:
        with self.lock:
            return self.script.pop(0) if self.script else "ok"


def make_handler(fake: Fake):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with fake.lock:
                fake.requests.append({"t": time.monotonic(), "path": url.path, "query": query,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                if len(fake.requests) > MAX_REQUESTS:
                    return self.reply(500, {"error": "request budget exceeded"})
            action = fake.next_action()
            if action.startswith("429"):
                return self.reply(429, {"error": "slow down"}, {"Retry-After": action.split(":")[1]})
            if action in ("500", "503", "404"):
                return self.reply(int(action), {"error": action})
            if action == "sleep":
                time.sleep(0.8)  # past the client's timeout
            if action == "trickle":  # one byte every 0.1 s: never a socket timeout
                data = json.dumps({"data": []}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for byte in data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            if action == "huge":
                self.send_response(200)
                self.send_header("Content-Length", str(300_000_000))
                self.end_headers()
                return
            if action == "retry_after_long":
                return self.reply(503, {"error": "busy"}, {"Retry-After": "100000"})
            if url.path == "/oqmdapi/formationenergy" and getattr(fake, "endless", False):
                page = fake.oqmd_rows[:2] if not getattr(fake, "moving", False) else [
                    dict(fake.oqmd_rows[0], entry_id=int(query["offset"]) + i) for i in range(2)]
                return self.reply(200, {"data": page, "meta": {"more_data_available": True}})
            if action.startswith("redirect:"):
                self.send_response(302)
                self.send_header("Location", action.split(":", 1)[1] + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if url.path == "/oqmdapi/formationenergy":
                return self.oqmd(query)
            if url.path == "/materials/summary/":
                return self.mp(query)
            self.reply(404, {"error": "no such page"})

        def oqmd(self, q):
            assert q["format"] == "json" and q["fields"]
            rows = fake.oqmd_rows
            if "filter" in q:
                field, value = q["filter"].split("=")
                rows = [r for r in rows if r.get(field) == float(value)]
            offset, limit = int(q["offset"]), int(q["limit"])
            page = rows[offset: offset + limit]
            more = offset + len(page) < len(rows)
            self.reply(200, {"data": page, "links": {"next": "more" if more else None},
                             "meta": {"data_returned": len(page), "data_available": len(rows),
                                      "more_data_available": more}})

        def mp(self, q):
            if self.headers.get("x-api-key") != KEY:
                return self.reply(403, {"detail": "invalid api key"})
            assert q["deprecated"] == "false" and q["_fields"]
            rows = fake.mp_rows
            if q.get("is_stable") == "true":
                rows = [r for r in rows if r["energy_above_hull"] == 0]
            skip, limit = int(q["_skip"]), int(q["_limit"])
            self.reply(200, {"data": rows[skip: skip + limit], "meta": {"total_doc": len(rows)}})

        def reply(self, status, body, headers=None):
            data = json.dumps(body).encode()  # NaN/Infinity tokens, as Python's json reads them
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    return Handler


@pytest.fixture
def fake():
    f = Fake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(f))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    f.base = f"http://127.0.0.1:{server.server_port}"
    f.port = server.server_port
    try:
        yield f
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert len(f.requests) <= MAX_REQUESTS


FAST = {"delay_s": 0, "retries": 3, "backoff_s": 0.01, "max_wait_s": 0.3, "timeout_s": 0.4}


def oqmd_opts(fake, **more):
    return {"base_url": fake.oqmd_url, "page_size": 4, **FAST, **more}


@pytest.fixture
def mp_key(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", KEY)
    return KEY


def mp_opts(fake, **more):
    return {"endpoint": fake.base + "/", "page_size": 5, **FAST, **more}


def reasons(rejects: pd.DataFrame) -> list[tuple]:
    return [(None if pd.isna(i) else i, r) for i, r in zip(rejects["id"], rejects["reason"])]


# ----------------------------------------------------------------------------- OQMD


def test_oqmd_paging_returns_every_good_row(fake, tmp_path):
    records, rejects = fetch_oqmd(oqmd_opts(fake), tmp_path / "cache")

    assert list(records.columns) == REST_COLUMNS and list(rejects.columns) == REJECT_COLUMNS
    assert list(records["id"]) == OQMD_GOOD
    assert len(records) + len(rejects) == len(OQMD_ROWS)
    queries = fake.queries("/formationenergy")
    assert [int(q["offset"]) for q in queries] == [0, 4, 8, 12, 16, 20, 24]  # 25 rows, 7 pages
    assert all(q["limit"] == "4" and "filter" not in q for q in queries)
    assert set(queries[0]["fields"].split(",")) >= {"name", "entry_id", "delta_e"}
    prov = records.attrs["provenance"]
    assert prov["source"] == "oqmd" and prov["base_url"] == fake.oqmd_url
    assert prov["pages"] == 7 and prov["requests"] == len(fake.requests) == 7 and prov["cached_pages"] == 0
    assert prov["params"]["page_size"] == 4 and prov["fetched_at"].endswith("+00:00")
    row = records.set_index("id").loc["oqmd-9"]
    assert row["formula"] == "LiFePO4" and row["reduced_formula"] == "LiFePO4" and row["n_atoms"] == 7
    assert row["formation_enthalpy_eV_per_atom"] == pytest.approx(-2.5)
    assert row["source"] == "oqmd" and row["url"] == "https://oqmd.org/materials/entry/9"
    assert records.set_index("id").loc["oqmd-2", "energy_above_hull_eV_per_atom"] == pytest.approx(0.15)


def test_oqmd_bad_rows_land_in_rejects_with_reasons(fake, tmp_path):
    _, rejects = fetch_oqmd(oqmd_opts(fake, page_size=100), tmp_path)

    assert reasons(rejects) == OQMD_REJECTS
    assert set(rejects["reason"]) == set(REST_REJECT_REASONS)
    assert (rejects["source"] == "oqmd").all()
    dup = rejects[rejects["reason"] == "duplicate_id"].iloc[0]
    assert dup["url"] == "https://oqmd.org/materials/entry/3" and "at row 2" in dup["detail"]  # 0-based position
    assert "deuterium" in rejects.set_index("id").loc["oqmd-20", "detail"]


def test_oqmd_max_results_stops_early_and_filter_is_sent(fake, tmp_path):
    records, rejects = fetch_oqmd(oqmd_opts(fake, max_results=6), tmp_path / "a")
    assert list(records["id"]) == OQMD_GOOD[:6] and rejects.empty
    assert [(q["offset"], q["limit"]) for q in fake.queries("/formationenergy")] == [("0", "4"), ("4", "2")]

    records, _ = fetch_oqmd(oqmd_opts(fake, filter="stability=0"), tmp_path / "b")
    assert fake.queries("/formationenergy")[-1]["filter"] == "stability=0"
    assert (records["energy_above_hull_eV_per_atom"] == 0).all() and "oqmd-2" not in set(records["id"])
    assert records.attrs["provenance"]["params"]["filter"] == "stability=0"


def test_rerun_reads_the_cache_and_makes_no_request(fake, tmp_path):
    first = fetch_oqmd(oqmd_opts(fake), tmp_path)
    n = len(fake.requests)
    second = fetch_oqmd(oqmd_opts(fake), tmp_path)

    assert len(fake.requests) == n
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    prov = second[0].attrs["provenance"]
    assert prov["requests"] == 0 and prov["cached_pages"] == prov["pages"] == 7
    assert prov["fetched_at"] == first[0].attrs["provenance"]["fetched_at"]  # when the data was downloaded
    assert len(list((tmp_path / "pages").glob("*.json"))) == 7
    assert not list(tmp_path.rglob("*.tmp"))


def test_lowest_per_composition_keeps_the_lowest(fake, tmp_path):
    records, _ = fetch_oqmd(oqmd_opts(fake), tmp_path)
    lowest = lowest_per_composition(records).set_index("reduced_formula")

    assert lowest.index.is_unique and len(lowest) == records["reduced_formula"].nunique()
    assert lowest.loc["Fe2O3", "id"] == "oqmd-1" and lowest.loc["Fe2O3", "n_entries"] == 2
    assert lowest.loc["TiO2", "formation_enthalpy_eV_per_atom"] == pytest.approx(-3.30)
    assert lowest.loc["NaCl", "formation_enthalpy_eV_per_atom"] == pytest.approx(-2.10)  # not the duplicate


# ----------------------------------------------------------------------------- retries


def test_503_then_200_is_retried(fake, tmp_path):
    fake.script = ["503", "ok", "503", "503"]
    records, _ = fetch_oqmd(oqmd_opts(fake), tmp_path)

    assert list(records["id"]) == OQMD_GOOD
    assert records.attrs["provenance"]["requests"] == len(fake.requests) == 7 + 3


def test_429_waits_for_retry_after_capped(fake, tmp_path):
    fake.script = ["429:1"]
    records, _ = fetch_oqmd(oqmd_opts(fake, max_results=3), tmp_path)

    assert list(records["id"]) == OQMD_GOOD[:3]
    first, second = fake.requests[:2]
    gap = second["t"] - first["t"]
    assert 0.25 <= gap < 0.9  # Retry-After 1 s honoured over the 0.01 s back-off, capped at 0.3 s


def test_timeout_is_retried(fake, tmp_path):
    fake.script = ["sleep"]
    records, _ = fetch_oqmd(oqmd_opts(fake, max_results=2), tmp_path)
    assert list(records["id"]) == OQMD_GOOD[:2] and len(fake.requests) == 2


def test_permanent_500_fails_naming_the_url(fake, tmp_path):
    fake.script = ["500"] * 10
    with pytest.raises(RestError, match="gave up after 3 attempts") as info:
        fetch_oqmd(oqmd_opts(fake, retries=2), tmp_path)

    assert fake.oqmd_url in str(info.value) and "offset=0" in str(info.value) and "HTTP 500" in str(info.value)
    assert len(fake.requests) == 3
    assert not list(tmp_path.rglob("*.json"))  # nothing cached


def test_404_fails_at_once(fake, tmp_path):
    fake.script = ["404"]
    with pytest.raises(RestHTTPError, match="HTTP 404") as info:
        fetch_oqmd(oqmd_opts(fake), tmp_path)
    assert info.value.status == 404 and len(fake.requests) == 1


# ----------------------------------------------------------------------------- Materials Project


def test_mp_pages_sends_key_and_never_stores_or_logs_it(fake, tmp_path, mp_key, caplog):
    fake.script = ["503"]
    with caplog.at_level(logging.DEBUG):
        records, rejects = fetch_mp_formation(mp_opts(fake), tmp_path)

    assert list(records["id"]) == MP_GOOD and reasons(rejects) == MP_REJECTS
    assert (records["source"] == "mp").all() and (rejects["source"] == "mp").all()
    assert records.set_index("id").loc["mp-2657", "url"] == "https://next-gen.materialsproject.org/materials/mp-2657"
    queries = fake.queries("/materials/summary/")
    assert [int(q["_skip"]) for q in queries] == [0, 0, 5, 10, 15, 20]  # the first one retried
    assert all(q["_limit"] == "5" and "is_stable" not in q and "elements" not in q for q in queries)
    assert "formation_energy_per_atom" in queries[0]["_fields"].split(",")
    assert all(r["headers"].get("x-api-key") == KEY for r in fake.requests)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 5
    assert not any(KEY in p.name or KEY.encode() in p.read_bytes() for p in files)
    assert KEY not in json.dumps(records.attrs["provenance"])
    assert records.attrs["provenance"]["requests"] == 6 and records.attrs["provenance"]["pages"] == 5
    assert "retry 1/3" in caplog.text and KEY not in caplog.text


def test_mp_options_reach_the_server(fake, tmp_path, mp_key):
    records, _ = fetch_mp_formation(mp_opts(fake, stable_only=True, elements=["O", "Fe"], max_results=3), tmp_path)
    q = fake.queries("/materials/summary/")[0]
    assert q["is_stable"] == "true" and q["elements"] == "Fe,O" and q["_limit"] == "3"
    assert len(records) == 3 and (records["energy_above_hull_eV_per_atom"] == 0).all()


def test_mp_refused_key(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("MP_API_KEY", "wrong-key-42")
    with pytest.raises(APIKeyRefused, match="API key was refused") as info:
        fetch_mp_formation(mp_opts(fake), tmp_path)
    assert info.value.status == 403 and "wrong-key-42" not in str(info.value)
    assert len(fake.requests) == 1


def test_mp_missing_key(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="MP_API_KEY"):
        fetch_mp_formation(mp_opts(fake), tmp_path)
    assert fake.requests == []


def test_mp_key_dropped_on_redirect_to_another_host(fake, tmp_path, mp_key):
    fake.script = [f"redirect:http://localhost:{fake.port}"]
    with pytest.raises(APIKeyRefused):  # the fake refuses the request that lost its key
        fetch_mp_formation(mp_opts(fake, retries=0), tmp_path)
    assert [r["headers"].get("x-api-key") for r in fake.requests] == [KEY, None]


def test_mp_rerun_uses_cache(fake, tmp_path, mp_key):
    first = fetch_mp_formation(mp_opts(fake), tmp_path)
    n = len(fake.requests)
    second = fetch_mp_formation(mp_opts(fake), tmp_path)
    assert len(fake.requests) == n
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])


# ----------------------------------------------------------------------------- dispatch


def test_unknown_options_and_sources_fail(tmp_path):
    with pytest.raises(ValueError, match="unknown OQMD options"):
        fetch_oqmd({"page_sise": 3}, tmp_path)
    with pytest.raises(ValueError, match="unknown composition source"):
        fetch_source("icsd", {}, tmp_path)


def test_fetch_source_gives_the_same_columns(fake, tmp_path, mp_key):
    pytest.importorskip("janaf")
    oq, _ = fetch_source("oqmd", oqmd_opts(fake), tmp_path / "oqmd")
    mpr, _ = fetch_source("mp", mp_opts(fake), tmp_path / "mp")
    janaf, janaf_rejects = fetch_source("janaf", {}, tmp_path / "janaf")

    for frame in (oq, mpr, janaf):
        assert list(frame.columns[: len(RECORD_COLUMNS)]) == RECORD_COLUMNS
    assert {"phase", "dHf_298_kJ_per_mol", "origin"} <= set(janaf.columns)
    assert list(janaf_rejects.columns) == REJECT_COLUMNS
    assert (janaf["source"] == "janaf").all()
    assert (janaf["url"] == "https://janaf.nist.gov/tables/" + janaf["id"] + ".html").all()
    assert janaf["formation_enthalpy_eV_per_atom"].map(math.isfinite).all()
    assert janaf.attrs["provenance"]["source"] == "janaf" and janaf.attrs["provenance"]["requests"] == 0
    both = pd.concat([oq[RECORD_COLUMNS], mpr[RECORD_COLUMNS], janaf[RECORD_COLUMNS]], ignore_index=True)
    assert len(lowest_per_composition(both)) == both["reduced_formula"].nunique()


# ----------------------------------------------------------------------------- hostile servers


def _client(tmp_path, **more):
    from xtalspec.compositions.rest import RestClient

    return RestClient(tmp_path / "cache", **{**FAST, **more})


def test_trickling_server_ends_within_the_deadline(fake, tmp_path):
    from xtalspec.compositions.rest import RestError

    fake.script = ["trickle"] * 2
    start = time.monotonic()
    with pytest.raises(RestError, match="TooSlow"):
        _client(tmp_path, retries=1, deadline_s=0.5).get_json(fake.oqmd_url, {"limit": 1})
    assert time.monotonic() - start < 4


def test_huge_body_is_refused_and_not_cached(fake, tmp_path):
    from xtalspec.compositions.rest import RestError

    fake.script = ["huge"] * 2
    with pytest.raises(RestError, match="TooLarge"):
        _client(tmp_path, retries=1, max_bytes=1_000_000).get_json(fake.oqmd_url, {"limit": 1})
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_retry_after_is_capped(fake, tmp_path):
    fake.script = ["retry_after_long"]
    start = time.monotonic()
    body = _client(tmp_path, max_wait_s=0.2).get_json(fake.oqmd_url, {"limit": 2, "offset": 0, "format": "json",
                                                                       "fields": "x"})
    assert "data" in body and time.monotonic() - start < 3


@pytest.mark.parametrize("moving", [False, True])
def test_endless_paging_stops(fake, tmp_path, moving):
    from xtalspec.compositions.rest import RestError, fetch_offset_pages

    fake.endless, fake.moving = True, moving
    start = time.monotonic()
    match = "still more data after 5 pages" if moving else "repeats the page before it"
    with pytest.raises(RestError, match=match):
        fetch_offset_pages(_client(tmp_path), fake.oqmd_url, {"format": "json"}, limit_key="limit",
                           offset_key="offset", page_size=2, max_results=None,
                           has_more=lambda body, n, limit, offset: True, max_pages=5)
    assert time.monotonic() - start < 5
    assert len(fake.requests) <= 6
