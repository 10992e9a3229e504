"""FEFF10 XANES runs (xtalspec.spectra.feff): presets, one real fast run, failure modes.

Exactly one real FEFF calculation (``fast`` preset, Ti site of rutile, ~20-30 s) is shared by
the tests that need a spectrum; the others use a corrupt input, a tiny timeout or synthetic
files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure

from xtalspec.spectra.feff import (
    PRESETS,
    check_logs,
    check_spectrum,
    compute_site,
    input_set,
    read_xmu,
    run_feff,
    spectrum_xanes_cli,
    write_feff_input,
)

from conftest import RUTILE_AS_P1

TI_K_EDGE_EV = 4966.4  # tabulated Ti K-edge energy

XMU_HEADER = """# Ti K edge, synthetic
# # Abs   Z=22 Rmt= 1.256 Rnm= 1.375 K  shell
#  -----------------------------------------------------------------------
#  omega    e    k    mu    mu0     chi     @#
"""


@pytest.fixture(scope="module")
def rutile_cif(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cif") / "rutile.cif"
    path.write_text(RUTILE_AS_P1)
    return path


@pytest.fixture(scope="module")
def rutile(rutile_cif) -> Structure:
    return Structure.from_file(str(rutile_cif))


@pytest.fixture(scope="module")
def fast_run(rutile, tmp_path_factory):
    """The one real FEFF run: fast preset, Ti site 0 of rutile."""
    workdir = tmp_path_factory.mktemp("feff_fast") / "rutile_Ti"
    return compute_site(rutile, 0, "fast", workdir, timeout_s=300)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


# --------------------------------------------------------------------------- no FEFF run


def test_read_xmu_synthetic(tmp_path):
    rows = [(4960.0 + i, -20.0 + i, 0.1 * i, 0.01 * i * i, 0.5, 0.0) for i in range(12)]
    path = tmp_path / "xmu.dat"
    body = "\n".join(" ".join(f"{v:.6E}" for v in row) for row in rows)
    path.write_text(XMU_HEADER + body + "\n")
    energy, mu = read_xmu(path)
    assert energy.shape == mu.shape == (12,)
    np.testing.assert_allclose(energy, [r[0] for r in rows])  # omega, absolute eV
    np.testing.assert_allclose(mu, [r[3] for r in rows])  # the "mu" column, not mu0 / chi


def test_read_xmu_rejects_empty(tmp_path):
    path = tmp_path / "xmu.dat"
    path.write_text(XMU_HEADER)
    with pytest.raises(ValueError):
        read_xmu(path)


def test_check_spectrum_flags_bad_values():
    energy = np.linspace(4960.0, 5010.0, 50)
    mu = np.linspace(0.0, 1.0, 50)
    assert check_spectrum(energy, mu) == ("ok", "")
    assert check_spectrum(energy, np.where(energy > 4990, np.nan, mu))[0] == "unphysical"
    assert check_spectrum(energy, mu - 0.2)[0] == "unphysical"  # negative mu
    assert check_spectrum(energy, mu - 0.005)[0] == "ok"  # within the tolerance
    assert check_spectrum(energy[:3], mu[:3])[0] == "failed"  # (almost) empty output


def test_check_logs_reports_non_convergence(tmp_path):
    (tmp_path / "feff.inp").write_text("SCF 3.5 0 20 0.2 1\n")
    (tmp_path / "log1.dat").write_text("SCF ITERATION NUMBER 20\n:WARNING Convergence not reached; "
                                       "ran out of iterations.\n")
    assert "not converged" in check_logs(tmp_path)
    (tmp_path / "log1.dat").write_text("Convergence reached in   14 iterations.\n")
    assert check_logs(tmp_path) == ""


def test_presets_reference_is_mpxanesset_default(rutile, tmp_path):
    from pymatgen.io.feff.sets import MPXANESSet

    default = MPXANESSet(0, rutile, edge="K")
    assert PRESETS["reference"]["radius"] == default.radius
    assert str(input_set(rutile, 0, "reference").tags) == str(default.tags)
    ref = write_feff_input(rutile, 0, "reference", tmp_path / "ref").read_text()
    fast = write_feff_input(rutile, 0, "fast", tmp_path / "fast").read_text()
    ref_cards = ("SCF 4.5 0 30 .2 1", "FMS 7.5 0", "XANES 3.7 .04 .1", "LDOS -30. 15. .1",
                 "COREHOLE FSR")
    for card in ref_cards:
        assert card in ref
    for card in ("SCF 3.5 0 20 0.2 1", "FMS 5.0 0", "XANES 3.7 0.05 0.3", "COREHOLE FSR"):
        assert card in fast
    assert "LDOS" not in fast
    assert fast.count("\n") < ref.count("\n")  # smaller ATOMS list


def test_cli_rejects_non_metal_site(rutile_cif, tmp_path):
    with pytest.raises(ValueError, match="not a 3d transition metal"):
        spectrum_xanes_cli(rutile_cif, 2, "fast", tmp_path / "o.csv", timeout_s=10)  # an O site


# --------------------------------------------------------------------------- FEFF runs


def test_corrupt_input_fails_without_exception(tmp_path):
    (tmp_path / "feff.inp").write_text("this is not\na feff input\nATOMS\n 1 2\n")
    result = run_feff(tmp_path, timeout_s=60)
    assert result.status == "failed"
    assert "FeffParseError" in result.reason
    assert result.energy.size == 0


def test_tiny_timeout_kills_feff(rutile, tmp_path):
    write_feff_input(rutile, 0, "fast", tmp_path)
    result = run_feff(tmp_path, timeout_s=0.5)
    assert result.status == "timeout"
    assert "killed" in result.reason
    assert result.seconds < 10
    time.sleep(0.2)
    assert _group_members(result.pid) == []  # the child and FEFF's stage worker are gone
    assert not (tmp_path / "xmu.dat").exists()


@pytest.mark.slow  # shares the one real FEFF run (~25 s)
def test_fast_run_gives_ti_k_edge(fast_run):
    assert fast_run.status == "ok", fast_run.reason
    energy, mu = fast_run.energy, fast_run.mu
    assert len(energy) >= 30 and np.all(np.diff(energy) > 0)
    assert energy[0] < TI_K_EDGE_EV + 10 and energy[-1] > TI_K_EDGE_EV + 40
    # absorption onset (mu first at 10 % of its maximum) near the tabulated K edge; main edge
    # (50 %) above it - in rutile ~15 eV above the onset, after the pre-edge features
    onset = energy[np.argmax(mu >= 0.1 * mu.max())]
    edge = energy[np.argmax(mu >= 0.5 * mu.max())]
    assert abs(onset - TI_K_EDGE_EV) < 10, onset
    assert TI_K_EDGE_EV < edge < TI_K_EDGE_EV + 30, edge
    # mu rises across the edge: small before the onset, large after the main edge
    assert mu[:3].max() < 0.1 * mu.max()
    assert mu[energy > edge + 5].mean() > 0.5 * mu.max()
    workdir = fast_run.workdir
    for name in ("feff.inp", "xmu.dat", "feff.log", "feff_result.json"):
        assert (workdir / name).is_file(), name


@pytest.mark.slow  # shares the one real FEFF run (~25 s)
def test_second_compute_site_is_cached(fast_run, rutile):
    assert fast_run.ok and not fast_run.cached
    xmu = fast_run.workdir / "xmu.dat"
    mtime = os.stat(xmu).st_mtime_ns
    start = time.monotonic()
    again = compute_site(rutile, 0, "fast", fast_run.workdir, timeout_s=300)
    assert time.monotonic() - start < 5
    assert again.ok and again.cached
    assert os.stat(xmu).st_mtime_ns == mtime  # FEFF did not run again
    np.testing.assert_array_equal(again.mu, fast_run.mu)
    assert again.input_sha256 == fast_run.input_sha256


@pytest.mark.slow  # shares the one real FEFF run (~25 s)
def test_cli_writes_two_column_csv(fast_run, rutile_cif, tmp_path):
    out = tmp_path / "ti.csv"
    result = spectrum_xanes_cli(rutile_cif, 0, "fast", out, timeout_s=300, workdir=fast_run.workdir)
    assert result.cached  # same CIF, same site -> the shared run is reused
    lines = out.read_text().splitlines()
    assert lines[0] == "energy_eV,mu"
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert table.shape == (len(fast_run.energy), 2)
    np.testing.assert_allclose(table[:, 0], fast_run.energy, atol=1e-4)


def test_scf_out_of_iterations_is_accepted_only_when_the_fermi_level_settled(tmp_path):
    (tmp_path / "feff.inp").write_text("SCF 3.5 0 20 0.2 1\n")
    settled = "".join(f"New Fermi level:    mu= {mu:.3f} eV  Charge distance=  0.0040\n"
                      for mu in (-9.2, -9.6, -9.47, -9.472, -9.471))
    (tmp_path / "log1.dat").write_text(settled + ":WARNING Convergence not reached; ran out of iterations.\n")
    assert check_logs(tmp_path) == ""
    moving = "".join(f"New Fermi level:    mu= {mu:.3f} eV\n" for mu in (-9.2, -9.6, -9.3, -9.5, -9.35))
    (tmp_path / "log1.dat").write_text(moving + ":WARNING Convergence not reached; ran out of iterations.\n")
    assert "not converged" in check_logs(tmp_path)
