"""Hostile inputs and faults: each case is built in a temporary folder and must end, within a
time limit and with bounded memory, in a reject row with its reason or a one-line error
naming the file — never a hang, a traceback, a silent drop or a wrong structure.

Download servers (truncation, trickling, huge bodies, Retry-After, endless paging) are tested
beside their clients in tests/test_cod.py and tests/test_compositions_rest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xtalspec.structures.cleaning import CleaningSettings, Reject, parse_and_check
from xtalspec.structures.guarded_parse import GuardedParser

HEADER = """data_{name}
_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_symmetry_equiv_pos_as_xyz
{ops}
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
"""

NACL = """data_NaCl
_cell_length_a 5.6402
_cell_length_b 5.6402
_cell_length_c 5.6402
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
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


def _cubic_ops(symbol: str = "Fm-3m") -> list[str]:
    from pymatgen.symmetry.groups import SpaceGroup

    return [f"'{op.as_xyz_str()}'" for op in SpaceGroup(symbol).symmetry_ops]


def _cif(name: str, n_sites: int, ops: list[str], a: float, seed: int = 0) -> str:
    xyz = np.random.default_rng(seed).random((n_sites, 3))
    rows = "\n".join(f"C{i} C {x:.5f} {y:.5f} {z:.5f}" for i, (x, y, z) in enumerate(xyz))
    return HEADER.format(name=name, a=a, ops="\n".join(ops)) + rows + "\n"


def symmetry_bomb() -> str:
    """170 KB: 5,000 general positions in Fm-3m (192 operations): ~10^6 generated atoms."""
    return _cif("bomb", 5000, _cubic_ops(), 60.0)


def huge_p1() -> str:
    """3.3 MB: a P1 cell with 100,000 atoms."""
    return _cif("p1", 100_000, ["'x,y,z'"], 120.0, seed=1)


def slow_to_parse() -> str:
    """250 general positions in Fm-3m: within max_atoms by the text count (250 × 4 centrings),
    but 48,000 generated positions for the parser to merge: the time limit's case."""
    return _cif("slow", 250, _cubic_ops(), 60.0, seed=2)


# ----------------------------------------------------------------------------- parsing


def test_symmetry_bomb_and_huge_p1_are_rejected_from_the_text_at_once():
    settings = CleaningSettings()
    for text in (symmetry_bomb(), huge_p1()):
        start = time.monotonic()
        result = parse_and_check(text.encode(), settings)
        assert isinstance(result, Reject) and result.reason == "too_many_atoms", result
        assert "before parsing" in result.detail
        assert time.monotonic() - start < 10


def test_centrings_count_a_lattice_letter_without_operations():
    text = _cif("f", 300, ["'x,y,z'"], 30.0).replace("loop_\n_symmetry_equiv_pos_as_xyz\n'x,y,z'\n",
                                                        "_symmetry_space_group_name_H-M 'F m -3 m'\n")
    result = parse_and_check(text.encode(), CleaningSettings())  # 300 × 4 > 1000
    assert isinstance(result, Reject) and result.reason == "too_many_atoms"


def test_ordinary_high_symmetry_structures_are_not_rejected_by_the_text_count():
    parsed = parse_and_check(NACL.encode(), CleaningSettings(max_atoms=8))
    assert not isinstance(parsed, Reject) and len(parsed.structure) == 8


def test_guarded_parser_times_out_and_goes_on_with_the_next_file():
    # (pymatgen needs ~0.5 s, more on a loaded machine, to build Fm-3m's operations from its symbol)
    with GuardedParser(CleaningSettings(), timeout_s=10.0) as parse:
        assert not isinstance(parse(NACL.encode()), Reject)  # starts the parser
        start = time.monotonic()
        slow = parse(slow_to_parse().encode())
        assert isinstance(slow, Reject) and slow.reason == "parse_timeout", slow
        assert time.monotonic() - start < 20
        good = parse(NACL.encode())  # a fresh child takes over
        assert not isinstance(good, Reject) and good.structure.composition.reduced_formula == "NaCl"


def test_guarded_parser_gives_the_same_structure_as_in_process():
    direct = parse_and_check(NACL.encode(), CleaningSettings())
    with GuardedParser(CleaningSettings()) as parse:
        guarded = parse(NACL.encode())
    assert guarded.structure == direct.structure
    assert np.array_equal(guarded.structure.frac_coords, direct.structure.frac_coords)
    assert guarded.spacegroup_cif == direct.spacegroup_cif


def test_guarded_parser_memory_limit():
    # a child allowed 50 MB more than it started with cannot build the 48,000-position cell
    with GuardedParser(CleaningSettings(), timeout_s=60.0, memory_bytes=50 * 2**20) as parse:
        result = parse(slow_to_parse().encode())
        assert isinstance(result, Reject) and result.reason in ("parse_out_of_memory", "parse_timeout"), result
        assert not isinstance(parse(NACL.encode()), Reject)


# ----------------------------------------------------------------------------- a hostile CIF folder


INGEST = textwrap.dedent("""
    import json, sys
    from xtalspec.structures.cleaning import CleaningSettings
    from xtalspec.structures.ingest import ingest
    from xtalspec.structures.sources.cif_dir import CIFDirSource
    result = ingest(CIFDirSource(sys.argv[1]), sys.argv[2], 1, CleaningSettings(), parse_timeout_s=float(sys.argv[3]))
    print(json.dumps(result))
""")


#: starts the command from a small process and reports the command's own peak RSS: a child forked
#: straight from pytest would count pytest's resident pages (shared until exec) in its ru_maxrss
LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys
    proc = subprocess.Popen(sys.argv[2:])
    _, status, usage = os.wait4(proc.pid, 0)
    open(sys.argv[1], "w").write(str(usage.ru_maxrss))
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def run_measured(command: list[str], limit_s: float, cwd=None) -> tuple[int, str, str, float, float]:
    """Run ``command``; (exit code, stdout, stderr, seconds, peak RSS of the command in MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-c", LAUNCHER, str(rss_file), *command], capture_output=True,
                              text=True, timeout=limit_s, cwd=cwd)
        seconds = time.monotonic() - start
        peak = int(rss_file.read_text()) / 1024 if rss_file.exists() else float("nan")
    return done.returncode, done.stdout, done.stderr, seconds, peak


def _ingest_child(folder: Path, out: Path, timeout_s: float = 5.0, limit_s: float = 120.0):
    """Ingest ``folder`` in a child process; (rejects, rows, seconds, peak RSS of the child in MiB)."""
    code, _, stderr, seconds, peak_mib = run_measured([sys.executable, "-c", INGEST, str(folder), str(out),
                                                       str(timeout_s)], limit_s)
    assert code == 0, stderr[-2000:]
    rejects = pd.read_parquet(out / "rejects-000.parquet")
    rows = pd.read_parquet(out / "shard-000.parquet")
    return rejects, rows, seconds, peak_mib


def _deep_folder(root: Path, depth: int) -> None:
    """``depth`` nested folders, made relative to open folder descriptors (the full path is
    longer than PATH_MAX), with a CIF at the bottom."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        handle = os.open("deep.cif", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(handle, NACL.encode())
        os.close(handle)
    finally:
        os.close(fd)


def _remove_deep_folder(root: Path) -> None:
    """Undo :func:`_deep_folder` without recursion (pytest's clean-up of old temporary folders
    recurses and would fail on 2,100 levels)."""
    fds = [os.open(root, os.O_RDONLY)]
    while True:  # go down
        try:
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        except FileNotFoundError:
            break
    os.unlink("deep.cif", dir_fd=fds[-1])
    while len(fds) > 1:  # come back up, removing each emptied folder
        os.close(fds.pop())
        os.rmdir("d", dir_fd=fds[-1])
    os.close(fds[0])


@pytest.fixture
def hostile_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    _deep_folder(folder, 2100)
    yield folder
    _remove_deep_folder(folder)


def test_hostile_cif_folder_ends_in_reject_rows_within_limits(tmp_path, hostile_folder):
    folder = hostile_folder
    (folder / "nacl.cif").write_text(NACL)
    (folder / "bomb.cif").write_text(symmetry_bomb())
    (folder / "p1.cif").write_text(huge_p1())
    (folder / "slow.cif").write_text(slow_to_parse())
    os.mkfifo(folder / "fifo.cif")
    (folder / "zero.cif").symlink_to("/dev/zero")
    (folder / "outside.cif").symlink_to(tmp_path / "elsewhere.cif")
    (tmp_path / "elsewhere.cif").write_text(NACL)
    (folder / "loop").symlink_to(folder)  # a link back into the tree: not followed

    rejects, rows, seconds, peak_mib = _ingest_child(folder, tmp_path / "out", timeout_s=15.0)
    reasons = dict(zip(rejects["id"], rejects["reason"]))
    details = dict(zip(rejects["id"], rejects["detail"]))
    assert list(rows["id"]) == ["nacl.cif"]
    assert reasons["bomb.cif"] == "too_many_atoms" and reasons["p1.cif"] == "too_many_atoms"
    assert reasons["slow.cif"] == "parse_timeout"
    assert reasons["fifo.cif"] == "unreadable" and "FIFO" in details["fifo.cif"]
    assert reasons["zero.cif"] == "unreadable" and "leaves the folder" in details["zero.cif"]
    assert reasons["outside.cif"] == "unreadable" and "leaves the folder" in details["outside.cif"]
    deep = [i for i in reasons if i.startswith("d/d/")]
    assert len(deep) == 1 and reasons[deep[0]] == "unreadable", deep  # the folder too deep to list
    assert "loop" not in " ".join(reasons)
    assert seconds < 100, seconds
    assert peak_mib < 3000, peak_mib


def test_unlistable_subfolder_gets_a_row(tmp_path, monkeypatch):
    from xtalspec.structures.sources import cif_dir

    folder = tmp_path / "cifs"
    (folder / "locked").mkdir(parents=True)
    (folder / "locked" / "a.cif").write_text(NACL)
    (folder / "b.cif").write_text(NACL)
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(cif_dir.os, "scandir", scandir)
    source = cif_dir.CIFDirSource(folder)
    assert source.list_ids() == ["b.cif", "locked/"]
    entries = {e.id: e for e in source.iter_entries(["b.cif", "locked/"])}
    assert entries["b.cif"].data is not None
    assert entries["locked/"].data is None and "Permission denied" in entries["locked/"].error


def test_gzip_bomb_is_not_unpacked_whole(tmp_path):
    import gzip

    from xtalspec.structures.sources.cif_dir import MAX_FILE_BYTES, CIFDirSource

    folder = tmp_path / "cifs"
    folder.mkdir()
    with gzip.open(folder / "bomb.cif.gz", "wb") as handle:
        block = b" " * 2**20
        for _ in range(MAX_FILE_BYTES // 2**20 + 2):
            handle.write(block)
    [entry] = CIFDirSource(folder).iter_entries(["bomb.cif.gz"])
    assert entry.data is None and entry.reason == "file_too_large"


# ----------------------------------------------------------------------------- stale shards


def test_standalone_ingest_recomputes_a_shard_made_from_another_request(tmp_path):
    from xtalspec.structures.ingest import ingest
    from xtalspec.structures.sources.cif_dir import CIFDirSource

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "nacl.cif").write_text(NACL)
    (second / "other.cif").write_text(NACL.replace("data_NaCl", "data_other"))
    out = tmp_path / "out"
    ingest(CIFDirSource(first), out, 1, CleaningSettings())
    again = ingest(CIFDirSource(first), out, 1, CleaningSettings())
    assert again[0].get("skipped")  # same request: reused
    result = ingest(CIFDirSource(second), out, 1, CleaningSettings())
    assert not result[0].get("skipped")
    assert list(pd.read_parquet(out / "shard-000.parquet")["id"]) == ["other.cif"]
    changed = ingest(CIFDirSource(second), out, 1, CleaningSettings(max_atoms=500))
    assert not changed[0].get("skipped")  # other cleaning settings: recomputed


# ----------------------------------------------------------------------------- outputs


def test_summary_of_a_run_where_every_cif_was_rejected(tmp_path):
    from xtalspec.structures.ingest import ingest
    from xtalspec.structures.sources.cif_dir import CIFDirSource
    from xtalspec.structures.summary import write_summary

    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "empty.cif").write_text("")
    (folder / "junk.cif").write_text("not a cif")
    ingest(CIFDirSource(folder), tmp_path / "out", 1, CleaningSettings())
    summary = write_summary([tmp_path / "out" / "shard-000.parquet"], [tmp_path / "out" / "rejects-000.parquet"],
                            tmp_path / "summary")
    assert summary["totals"]["accepted"] == 0
    assert (tmp_path / "summary" / "spacegroup_histogram.png").stat().st_size > 0


def test_atomic_outputs_get_the_umask_mode_not_0600(tmp_path):
    from xtalspec.utils.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o002)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o664


# ----------------------------------------------------------------------------- torch files


def test_truncated_checkpoint_is_discarded_and_training_restarts(tmp_path):
    import torch

    from xtalspec.training.loop import ArrayData, TrainConfig, train

    rng = np.random.default_rng(0)
    x = rng.random((24, 16)).astype(np.float32)
    data = ArrayData(make_inputs=lambda rows: x[rows], labels=rng.integers(0, 3, 24).astype(np.int64))

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(16, 3)

        def forward(self, inputs):
            return {"logits": self.linear(inputs)}

    cfg = TrainConfig(epochs=2, batch_size=8, seed=3)
    straight = train(Tiny(), data, cfg, tmp_path / "straight")
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((tmp_path / "straight" / "checkpoint.pt").read_bytes()[:500])
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"\0" * 1000)  # a save killed half-way
    again = train(Tiny(), data, cfg, out)
    assert [h["loss"] for h in again] == [h["loss"] for h in straight]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_two_identical_saves_are_byte_identical_and_bad_files_give_one_line(tmp_path):
    import torch

    from xtalspec.utils.torch_io import TorchFileError, load_torch, save_torch

    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "meta": {"model": "x"}}
    save_torch(state, tmp_path / "a" / "model.pt")
    save_torch(state, tmp_path / "b" / "model.pt")
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert torch.equal(load_torch(tmp_path / "a" / "model.pt")["state_dict"]["w"], state["state_dict"]["w"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "a" / "model.pt").read_bytes()[:300])
    (tmp_path / "text.pt").write_text("hello")
    for name in ("evil.pt", "cut.pt", "text.pt", "missing.pt"):
        with pytest.raises(TorchFileError) as info:
            load_torch(tmp_path / name)
        message = str(info.value)
        assert message.startswith(str(tmp_path / name)) and "\n" not in message, message
    assert not (tmp_path / "PWNED").exists()  # weights_only refused the pickle's code


# ----------------------------------------------------------------------------- the prediction commands


def _xtalspec(*args, limit_s: float = 120.0, cwd=None):
    """Run the command line in a child; (exit code, stdout, stderr, seconds, peak RSS MiB of the child)."""
    return run_measured([sys.executable, "-m", "xtalspec.cli", *map(str, args)], limit_s, cwd)


def _one_line_error(stderr: str, *needles: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr  # said once, no traceback
    assert lines[0].startswith("xtalspec: error: ") or "error:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _scan(path: Path, n: int = 2000) -> Path:
    two_theta = np.linspace(10, 80, n)
    intensity = 10 + sum(1000 * np.exp(-0.5 * ((two_theta - c) / 0.05) ** 2) for c in (28.4, 47.3, 56.1, 69.1))
    np.savetxt(path, np.column_stack([two_theta, intensity]), fmt="%.4f")
    return path


@pytest.mark.parametrize("command", ["predict-xrd", "predict-xanes", "predict-pdf"])
def test_huge_sparse_file_is_refused_before_reading(tmp_path, command):
    path = tmp_path / "huge.dat"
    with open(path, "wb") as handle:  # 2 GB, sparse: costs no disk
        handle.truncate(2 * 2**30)
    extra = {"predict-xrd": ["--wavelength", "CuKa"], "predict-xanes": ["--element", "Fe"], "predict-pdf": []}[command]
    code, _, err, seconds, peak = _xtalspec(command, path, *extra, "--models", tmp_path / "none")
    assert code == 2 and seconds < 60 and peak < 1500, (code, seconds, peak)
    _one_line_error(err, str(path), "limit")


def test_pdf_with_an_absurd_r_step_or_constant_g_is_refused(tmp_path):
    fine = tmp_path / "fine.gr"
    r = 1.0 + np.arange(1000) * 1e-9
    np.savetxt(fine, np.column_stack([r, np.sin(r)]))
    code, _, err, seconds, peak = _xtalspec("predict-pdf", fine, "--models", tmp_path)
    assert code == 2 and peak < 1500
    _one_line_error(err, "fine.gr", "step")
    for name, g in (("zero.gr", np.zeros(500)), ("flat.gr", np.full(500, 0.3))):
        np.savetxt(tmp_path / name, np.column_stack([np.linspace(1, 30, 500), g]))
        code, _, err, _, _ = _xtalspec("predict-pdf", tmp_path / name, "--models", tmp_path)
        assert code == 2
        _one_line_error(err, name, "constant")


@pytest.mark.parametrize("rows", [[(28.4, 100.0)], [(28.4, 100.0), (47.3, 60.0)]])
def test_one_or_two_points_are_not_a_peak_list(tmp_path, rows):
    path = tmp_path / "short.xy"
    np.savetxt(path, np.array(rows))
    code, _, err, _, _ = _xtalspec("predict-xrd", path, "--wavelength", "CuKa", "--models", tmp_path)
    assert code == 2
    _one_line_error(err, "short.xy", "peak list needs at least 3")


@pytest.mark.parametrize("flag", [["--top", "0"], ["--top", "-2"], ["--n-atoms", "-3"]])
def test_nonsense_counts_are_refused(tmp_path, flag):
    code, _, err, _, _ = _xtalspec("predict-xrd", _scan(tmp_path / "scan.xy"), "--wavelength", "CuKa", *flag)
    assert code == 2 and "must be at least 1" in err


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "a quarter"])
def test_a_share_outside_zero_to_one_is_refused(tmp_path, value):
    code, _, err, _, _ = _xtalspec("xrd", "deploy-render", "--profiles", tmp_path / "p.parquet", "--fraction", value,
                                   "--out", tmp_path / "r.parquet", "--rejects", tmp_path / "j.parquet")
    assert code == 2 and ("must be in (0, 1]" in err or "is not a number" in err)
    assert not (tmp_path / "r.parquet").exists()


def test_out_naming_a_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "outdir").mkdir()
    code, _, err, _, _ = _xtalspec("predict-xrd", _scan(tmp_path / "scan.xy"), "--wavelength", "CuKa",
                                   "--models", tmp_path / "none", "--out", tmp_path / "outdir")
    assert code == 2
    _one_line_error(err, "outdir", "is a folder")


def test_outputs_are_written_as_a_pair_or_not_at_all(tmp_path):
    from xtalspec.utils.atomic import atomic_write_texts

    (tmp_path / "p.json").mkdir()  # the sidecar cannot be written
    with pytest.raises(IsADirectoryError):
        atomic_write_texts({tmp_path / "p.csv": "a,b\n", tmp_path / "p.json": "{}"})
    assert not (tmp_path / "p.csv").exists() and not list(tmp_path.glob(".*.tmp"))
    atomic_write_texts({tmp_path / "q.csv": "a,b\n", tmp_path / "q.json": "{}"})
    assert (tmp_path / "q.csv").read_text() == "a,b\n" and (tmp_path / "q.json").read_text() == "{}"


def test_malicious_checkpoint_gives_one_line_naming_the_file(tmp_path):
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    member = tmp_path / "models" / "spgvolnet" / "inf" / "fold1" / "seed1" / "model.pt"
    member.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "meta": Evil()}, member)
    code, _, err, _, _ = _xtalspec("predict-xrd", _scan(tmp_path / "scan.xy"), "--wavelength", "CuKa",
                                   "--models", tmp_path / "models")
    assert code == 2 and not (tmp_path / "PWNED").exists()
    _one_line_error(err, str(member), "refused")
