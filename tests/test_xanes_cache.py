"""The FEFF spectra cache (xtalspec.datasets.xanes_cache): filled site by site with
provenance, never recomputing a cached site, and checked against fresh FEFF runs — a row
whose mu was changed is caught.

Two real FEFF runs (fast preset, the Ti site of rutile, ~30 s each): one fills the cache, one
recomputes it for the check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xtalspec.datasets.xanes_cache import (
    CACHE_COLUMNS,
    CacheMismatch,
    build_cache,
    element_spectra,
    read_cache,
    sample_sites,
    verify_cache,
    write_cache,
)

RUTILE = """data_rutile
_cell_length_a 4.5937
_cell_length_b 4.5937
_cell_length_c 2.9587
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
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


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    from xtalspec.structures.cleaning import CleaningSettings
    from xtalspec.structures.ingest import ingest
    from xtalspec.structures.sources.cif_dir import CIFDirSource

    root = tmp_path_factory.mktemp("xanes_cache")
    (root / "cifs").mkdir()
    (root / "cifs" / "rutile.cif").write_text(RUTILE)
    ingest(CIFDirSource(root / "cifs"), root / "structures", 1, CleaningSettings())
    shards = [root / "structures" / "shard-000.parquet"]
    cache, rejects = root / "cache.parquet", root / "cache_rejects.parquet"
    summary = build_cache(shards, ["Ti", "V"], cache, rejects, root / "work", quota={"T4": 1, "S5": 1, "O6": 1},
                          timeout_s=600)
    return root, shards, cache, rejects, summary


def test_cache_rows_carry_spectrum_and_provenance(filled):
    root, shards, cache, rejects, summary = filled
    frame = read_cache(cache)
    assert summary["new_spectra"] == 1 and summary["counts"]["Ti"] == {"O6": 1} and summary["counts"]["V"] == {}
    assert list(frame.columns) == CACHE_COLUMNS
    row = frame.iloc[0]
    assert row["site_key"] == "cif_dir:rutile.cif:0" and row["label"] == "O6" and row["label_compare"] == "O6"
    assert row["preset"] == "fast" and len(row["feff_input_sha256"]) == 64 and len(row["cif_sha256"]) == 64
    assert row["feff_version"].startswith("feff10-rs") and row["code_version"]
    assert row["mu"].dtype == np.float32 and len(row["energy"]) == len(row["mu"]) > 50
    assert 4960 < row["energy"][np.argmax(np.gradient(row["mu"]))] < 5000  # the Ti K edge
    spectra = element_spectra(frame, "Ti")
    assert list(spectra["site_key"]) == ["cif_dir:rutile.cif:0"] and spectra["cached"].all()


def test_a_second_build_computes_nothing(filled):
    root, shards, cache, rejects, _ = filled
    before = cache.read_bytes()
    again = build_cache(shards, ["Ti"], cache, rejects, root / "work-2", quota={"T4": 1, "S5": 1, "O6": 1})
    assert again["new_spectra"] == 0 and again["new_rejects"] == 0
    assert cache.read_bytes() == before
    assert not (root / "work-2").exists()


def test_fresh_feff_run_reproduces_the_cache_and_a_changed_mu_is_caught(filled, tmp_path):
    root, shards, cache, _, _ = filled
    summary = verify_cache(cache, shards, 2, 0, root / "verify")
    assert summary["n_checked"] == 1 and not summary["problems"]
    assert summary["sites"][0]["same_input"] and summary["sites"][0]["max_abs_d_energy"] <= 1e-3
    assert summary["max_rel_d_mu"] <= 1e-4

    frame = read_cache(cache)
    mu = frame.at[0, "mu"].copy()
    mu[len(mu) // 2] *= 1.01  # one point off by 1 %
    frame.at[0, "mu"] = mu
    corrupted = tmp_path / "corrupted.parquet"
    write_cache(frame, corrupted)
    with pytest.raises(CacheMismatch, match="mu differs from the cache"):
        verify_cache(corrupted, shards, 2, 0, root / "verify")  # the fresh run is reused from its workdir


def test_sample_is_stable_as_the_cache_grows():
    frame = pd.DataFrame({"site_key": [f"amcsd:{i:04d}:0" for i in range(50)]})
    small = set(sample_sites(frame.iloc[:40], 2, 7)["site_key"])
    large = set(sample_sites(frame, 2, 7)["site_key"])
    assert len(small) == 2 and (small == large or len(small & large) >= 1)


def test_merging_caches_built_side_by_side(tmp_path):
    """Batches on disjoint elements merge into one cache; a site in both is kept once when its
    spectrum agrees, and a disagreeing duplicate is refused."""
    import numpy as np
    import pytest

    from xtalspec.datasets.xanes_cache import merge_caches, read_cache, rejects_path_for, write_cache

    shipped = read_cache(Path(__file__).resolve().parents[1] / "resources/xanes/feff_cache.parquet")
    first = shipped[shipped["element"].isin(["Ti", "V"])]
    second = shipped[shipped["element"].isin(["V", "Fe"])]  # V in both
    a, b = tmp_path / "a/feff_cache.parquet", tmp_path / "b/feff_cache.parquet"
    write_cache(first, a)
    write_cache(second, b)
    out = tmp_path / "out/feff_cache.parquet"
    summary = merge_caches([a, b], out)
    merged = read_cache(out)
    assert summary["spectra"] == len(merged) == shipped["element"].isin(["Ti", "V", "Fe"]).sum()
    assert merged["site_key"].is_unique and rejects_path_for(out).exists()
    changed = second.copy()
    row = changed.index[changed["element"] == "V"][0]
    changed.at[row, "mu"] = np.asarray(changed.at[row, "mu"]) * np.float32(1.01)
    write_cache(changed, b)
    with pytest.raises(ValueError, match="different spectra"):
        merge_caches([a, b], tmp_path / "bad/feff_cache.parquet")


def test_disordered_structures_enter_in_their_majority_occupant_model(tmp_path, monkeypatch):
    """With include_disordered a mixed-site structure is cached in its majority-occupant model
    (``structure_model`` says so), the element cap stops the element, and the cache check
    rebuilds the same model (a fake FEFF whose spectrum depends on the structure it is given)."""
    import hashlib

    from xtalspec.spectra import feff
    from xtalspec.structures.cleaning import CleaningSettings
    from xtalspec.structures.ingest import ingest
    from xtalspec.structures.sources.cif_dir import CIFDirSource

    def fake_compute_site(structure, site_index, preset, workdir, timeout_s=None):
        if not structure.is_ordered:
            return feff.FeffResult("failed", "partial occupancies")
        text = f"{structure.composition.formula}|{len(structure)}|{site_index}"
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        energy = np.linspace(4960.0, 5060.0, 50)
        return feff.FeffResult("ok", energy=energy, mu=np.random.default_rng(seed).random(50),
                               seconds=1.0, input_sha256=hashlib.sha256(text.encode()).hexdigest())

    monkeypatch.setattr(feff, "compute_site", fake_compute_site)
    cif = RUTILE.replace("Ti1 Ti 0 0 0", "Ti1 Ti 0 0 0 0.7\nSn1 Sn 0 0 0 0.3").replace(
        "_atom_site_fract_z\n", "_atom_site_fract_z\n_atom_site_occupancy\n").replace("O1 O 0.3048 0.3048 0",
                                                                               "O1 O 0.3048 0.3048 0 1.0")
    (tmp_path / "cifs").mkdir()
    (tmp_path / "cifs" / "tin_rutile.cif").write_text(cif)
    ingest(CIFDirSource(tmp_path / "cifs"), tmp_path / "structures", 1, CleaningSettings())
    shards = [tmp_path / "structures" / "shard-000.parquet"]
    cache, rejects = tmp_path / "cache.parquet", tmp_path / "rejects.parquet"

    skipped = build_cache(shards, ["Ti"], cache, rejects, tmp_path / "work")
    assert skipped["new_spectra"] == 0  # ordered structures only by default
    summary = build_cache(shards, ["Ti"], cache, rejects, tmp_path / "work", include_disordered=True,
                          max_per_element=1)
    rows = read_cache(cache)
    assert summary["new_spectra"] == 1 and len(rows) == 1
    assert rows["structure_model"].tolist() == ["majority_occupant"] and rows["label"].tolist() == ["O6"]
    check = verify_cache(cache, shards, 1, 0, tmp_path / "check")
    assert check["max_abs_d_mu"] < 1e-6 and not check["problems"]  # mu is stored as float32
    rows["structure_model"] = "as_published"
    write_cache(rows, cache)
    with pytest.raises(CacheMismatch, match="partial occupancies"):
        verify_cache(cache, shards, 1, 0, tmp_path / "check2")
