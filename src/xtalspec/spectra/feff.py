"""FEFF10 K-edge XANES of one absorbing site, run through ``feff10-rs``.

The XANES classifier of Carbone, Yoo, Topsakal & Lu (Phys. Rev. Materials 2019) is trained on
FEFF K-edge XANES of 3d-metal sites in oxides, computed with the Materials Project's FEFF
settings. This module makes one such spectrum per (structure, site):

1. :func:`write_feff_input` - pymatgen's ``MPXANESSet`` writes ``feff.inp`` (plus pymatgen's
   HEADER / PARAMETERS / POTENTIALS / ATOMS copies) into a work directory, with the cluster
   radius and card overrides of a preset (:data:`PRESETS`).
2. :func:`run_feff` - runs all FEFF10 stages in that directory in a child process of its own
   session, so a per-site timeout can kill it (and FEFF's stage workers) outright.
3. Validation - output present and parseable, finite, no significantly negative mu, and no
   SCF non-convergence / fatal-error messages in FEFF's logs.
4. :func:`compute_site` - both steps, resumable: the sha256 of ``feff.inp`` is stored in
   ``feff_result.json``; a later call whose ``feff.inp`` hashes the same and whose ``xmu.dat``
   still validates returns that result without running FEFF again.

Statuses (:class:`FeffResult`): ``"ok"``; ``"failed"`` - FEFF did not deliver a trustworthy
calculation (input rejected, a stage crashed, no/empty/unreadable ``xmu.dat``, SCF not
converged, a fatal-error message in the logs); ``"timeout"``; ``"unphysical"`` - a spectrum
came out but fails a sanity check (NaN/inf, negative mu, energies not increasing). The paper
discards failed and unphysical spectra; the status says which and ``reason`` says why.

How feff10-rs behaves (feff10-rs 0.2.4, FEFF 10.0.0)
----------------------------------------------------
* ``feff10.run(input, work_dir)`` parses and validates ``feff.inp`` (raising ``FeffParseError``
  / ``FeffConfigError``) and then runs the 18 FEFF stages (rdinp ... rhorrp), each in a fresh
  ``python -m feff10._worker`` process; a crashing stage raises ``FeffPipelineError``.
* The Fortran writes its progress to the inherited stdout, not to Python: the child's stdout
  and stderr go to ``feff.log`` in the work directory. FEFF also writes ``log.dat``,
  ``log1.dat`` (potentials / SCF), ... and ``convergence.scf``.
* The call blocks in native code and ``FeffConfig.stage_timeout`` is per stage, so a
  whole-site timeout needs a separate process: here a ``python -c`` child started with
  ``start_new_session=True``; on timeout its whole process group (child + stage worker) gets
  SIGKILL.
* ``xmu.dat`` columns: ``omega e k mu mu0 chi`` - omega is the absolute photon energy (eV),
  e is relative to the edge/Fermi level, mu is column 3 (normalised to the edge step
  ~50 eV above the edge).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------- presets

#: FEFF settings per preset: cluster ``radius`` (Angstrom, the ATOMS list) and the
#: ``user_tag_settings`` given to pymatgen's ``MPXANESSet`` (``"_del"`` removes cards).
PRESETS: dict[str, dict] = {
    # pymatgen's MPXANESSet unchanged (MPXANESSet.yaml, radius=10.0): CONTROL 1 1 1 1 1 1,
    # EDGE K, COREHOLE FSR, S02 0.0, EXCHANGE 0 0.0 0.0 2, SCF 4.5 0 30 .2 1, FMS 7.5 0,
    # LDOS -30. 15. .1, XANES 3.7 .04 .1. About 11 min for one rutile Ti site on one core.
    "reference": {"radius": 10.0, "user_tag_settings": {}},
    # Tuned for throughput (tests, screening); same physics (core hole, exchange, edge):
    "fast": {
        # ATOMS list out to 6 A instead of 10 A (rutile: 93 instead of 397 atoms). It only
        # has to contain the SCF and FMS clusters below, which are all FEFF uses for XANES.
        "radius": 6.0,
        "user_tag_settings": {
            # SCF cluster 3.5 A instead of 4.5 A (rutile Ti: 13 atoms - the O6 octahedron and
            # the two edge-sharing Ti - instead of 33); the SCF cost grows ~cubically with it.
            # At most 20 SCF iterations instead of 30 (rutile converges in 14): bounds the
            # worst case; a run that does not converge is reported "failed", not kept.
            # Mixing (ca 0.2, nmix 1) unchanged: ca 0.4 took 18 iterations on rutile, not fewer.
            "SCF": "3.5 0 20 0.2 1",
            # FMS cluster 5.0 A instead of 7.5 A (rutile: 51 instead of 189 atoms); FMS cost
            # grows ~cubically with the atom count. Keeps the first three shells (pre-edge
            # and edge shape) but loses long-range detail of the post-edge wiggles.
            "FMS": "5.0 0",
            # Energy grid: same range (k_max 3.7/A, ~52 eV above the edge, covering the
            # paper's ~50 eV window), k step 0.05/A instead of 0.04/A and near-edge step
            # 0.3 eV instead of 0.1 eV. Still finer than the paper's 0.5 eV grid near the
            # edge; above it the ~1 eV core-hole width smooths mu anyway.
            "XANES": "3.7 0.05 0.3",
            # No LDOS card: the projected densities of states are not part of the spectrum.
            "_del": ["LDOS"],
        },
    },
}

DEFAULT_TIMEOUT_S = 3600.0
#: a mu below -NEGATIVE_MU_TOL * max|mu| makes a spectrum "unphysical"
NEGATIVE_MU_TOL = 0.01
#: fewest energy points an xmu.dat must hold
MIN_POINTS = 10
LOG_NAME = "feff.log"
RESULT_NAME = "feff_result.json"
#: files of a previous run that must not be mistaken for the output of a new one
_STALE = ("xmu.dat", RESULT_NAME, LOG_NAME, "convergence.scf", "log1.dat")
_ERROR_MARKER = "XTALSPEC_FEFF_ERROR"
_FERMI = re.compile(r"New Fermi level:\s*mu=\s*([-+0-9.Ee]+)")
#: an SCF that ran out of iterations is accepted when its last FERMI_WINDOW Fermi levels agree
FERMI_WINDOW = 3
FERMI_TOL_EV = 0.05
#: messages in FEFF's logs that make a finished run "failed"
_LOG_FAILURES = (
    (re.compile(r"Convergence not reached", re.I), "SCF not converged (ran out of iterations)"),
    (re.compile(r"fatal error", re.I), "FEFF reported a fatal error"),
)
#: the child process: run all FEFF stages on workdir/feff.inp, report errors on one line
_CHILD = f"""
import sys
import feff10
workdir = sys.argv[1]
try:
    feff10.run(workdir + "/feff.inp", workdir)
except Exception as exc:
    print("{_ERROR_MARKER}", type(exc).__name__ + ":", str(exc).replace("\\n", " "), flush=True)
    sys.exit(3)
"""


@dataclass
class FeffResult:
    """Outcome of one FEFF run: ``status`` is "ok" | "failed" | "timeout" | "unphysical"."""

    status: str
    reason: str = ""
    energy: np.ndarray = field(default_factory=lambda: np.empty(0))  # eV, absolute
    mu: np.ndarray = field(default_factory=lambda: np.empty(0))
    seconds: float = 0.0  # wall time of the FEFF run (of the original run when cached)
    workdir: Path | None = None
    input_sha256: str = ""
    cached: bool = False  # True when compute_site returned an earlier run's result
    pid: int | None = None  # the child process (= its process group id)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------- input


def _preset(preset: str | dict) -> dict:
    """The settings of a preset name, or a settings dict given directly."""
    if isinstance(preset, dict):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown FEFF preset {preset!r}; known: {sorted(PRESETS)}") from None


def input_set(structure, site_index: int, preset: str | dict = "fast"):
    """pymatgen's ``MPXANESSet`` (K edge) for one absorbing site under a preset."""
    from pymatgen.io.feff.sets import MPXANESSet

    if not 0 <= site_index < len(structure):
        raise ValueError(f"site index {site_index} out of range for {len(structure)} sites")
    settings = _preset(preset)
    return MPXANESSet(
        absorbing_atom=site_index,
        structure=structure,
        edge="K",
        radius=settings["radius"],
        user_tag_settings=copy.deepcopy(settings["user_tag_settings"]),
    )


def write_feff_input(structure, site_index: int, preset: str | dict, workdir) -> Path:
    """Write ``feff.inp`` (and pymatgen's HEADER/PARAMETERS/POTENTIALS/ATOMS) into ``workdir``.

    Returns the path of ``feff.inp``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        input_set(structure, site_index, preset).write_input(str(workdir))
    return workdir / "feff.inp"


def file_sha256(path) -> str:
    """sha256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- output


def _mu_column(path: Path) -> int:
    """Index of the ``mu`` column from the last header line of an xmu.dat (default 3)."""
    names: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            names = line.lstrip("#").split()
    return names.index("mu") if "mu" in names and names[0] == "omega" else 3


def read_xmu(path) -> tuple[np.ndarray, np.ndarray]:
    """(energy in eV, mu) from a FEFF ``xmu.dat``: columns ``omega e k mu mu0 chi``.

    omega (column 0) is the absolute photon energy; mu is taken from the column the header
    names ``mu`` (column 3 in FEFF's layout). Raises ``ValueError`` for an empty or malformed
    file.
    """
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns on an empty file
        data = np.loadtxt(path, comments="#", ndmin=2)
    if data.size == 0:
        raise ValueError(f"{path}: no data rows")
    column = _mu_column(path)
    if data.shape[1] <= column:
        raise ValueError(f"{path}: {data.shape[1]} columns, expected at least {column + 1}")
    return data[:, 0].copy(), data[:, column].copy()


def check_spectrum(energy: np.ndarray, mu: np.ndarray) -> tuple[str, str]:
    """(status, reason) of a spectrum: "ok", "failed" (too few points) or "unphysical"."""
    if len(energy) < MIN_POINTS:
        return "failed", f"only {len(energy)} energy points in xmu.dat"
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(mu))):
        return "unphysical", "NaN or inf in energy or mu"
    if np.any(np.diff(energy) <= 0):
        return "unphysical", "energies not strictly increasing"
    scale = float(np.max(np.abs(mu)))
    if scale == 0:
        return "unphysical", "mu is zero everywhere"
    if mu.min() < -NEGATIVE_MU_TOL * scale:
        return "unphysical", f"negative mu: min {mu.min():.4g} (max |mu| {scale:.4g})"
    return "ok", ""


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def fermi_levels(text: str) -> list[float]:
    """The Fermi level (eV) after each SCF iteration, from FEFF's log."""
    return [float(m) for m in _FERMI.findall(text)]


def scf_settled(text: str) -> bool:
    """True when the last ``FERMI_WINDOW`` SCF Fermi levels agree within ``FERMI_TOL_EV``."""
    levels = fermi_levels(text)
    return len(levels) >= FERMI_WINDOW and np.ptp(levels[-FERMI_WINDOW:]) <= FERMI_TOL_EV


def check_logs(workdir) -> str:
    """Reason a finished run is not trustworthy according to FEFF's logs ("" when none).

    Looks for non-convergence / fatal-error messages in ``feff.log`` and ``log*.dat``, and,
    when ``feff.inp`` asks for SCF potentials, for "Convergence reached" in ``log1.dat``.
    FEFF's own SCF criterion is on the charge distance; a run that ran out of iterations
    while its Fermi level had already settled (last 3 iterations within 0.05 eV, far below the
    ~1 eV core-hole broadening) is accepted — it ends FEFF's SCF loop with the same potentials.
    """
    workdir = Path(workdir)
    logs = [workdir / LOG_NAME, *sorted(workdir.glob("log*.dat"))]
    text = "\n".join(_read_text(path) for path in logs)
    scf_log = _read_text(workdir / "log1.dat") or _read_text(workdir / LOG_NAME)
    for pattern, reason in _LOG_FAILURES:
        if pattern.search(text):
            if reason.startswith("SCF not converged") and scf_settled(scf_log):
                continue
            return reason
    wants_scf = re.search(r"^\s*SCF\b", _read_text(workdir / "feff.inp"), re.M)
    if wants_scf and "Convergence reached" not in scf_log and not scf_settled(scf_log):
        return "SCF convergence not reported in log1.dat"
    return ""


def validate_output(workdir, seconds: float = 0.0) -> FeffResult:
    """The :class:`FeffResult` of a finished FEFF run in ``workdir`` (logs + xmu.dat)."""
    workdir = Path(workdir)
    xmu = workdir / "xmu.dat"
    if not xmu.is_file() or xmu.stat().st_size == 0:
        return FeffResult("failed", "no xmu.dat written", seconds=seconds, workdir=workdir)
    try:
        energy, mu = read_xmu(xmu)
    except ValueError as exc:
        return FeffResult("failed", f"unreadable xmu.dat: {exc}", seconds=seconds, workdir=workdir)
    status, reason = check_spectrum(energy, mu)
    log_reason = check_logs(workdir)
    if log_reason and status == "ok":
        status, reason = "failed", log_reason
    return FeffResult(status, reason, energy, mu, seconds=seconds, workdir=workdir)


# --------------------------------------------------------------------------- running


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in a process group (no error when it is already gone)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child_error(log: Path) -> str:
    """The error line the child printed to ``feff.log``, if any."""
    for line in reversed(_read_text(log).splitlines()):
        if line.startswith(_ERROR_MARKER):
            return line[len(_ERROR_MARKER):].strip()
    return ""


def _clear_stale(workdir: Path) -> None:
    for name in _STALE:
        (workdir / name).unlink(missing_ok=True)


def _run_child(workdir: Path, timeout_s: float) -> tuple[int | None, int, float]:
    """Run FEFF in a child session; (exit code or None on timeout, child pid, seconds)."""
    start = time.monotonic()
    with open(workdir / LOG_NAME, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(workdir)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches the stage workers
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except BaseException as exc:  # timeout, KeyboardInterrupt: never leave FEFF running
            # the child is not reaped yet, so its pid (= the group id) cannot have been reused
            _kill_group(proc.pid)
            proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            code = None
    return code, proc.pid, time.monotonic() - start


def run_feff(workdir, timeout_s: float = DEFAULT_TIMEOUT_S) -> FeffResult:
    """Run FEFF10 on ``workdir/feff.inp`` in ``workdir``; never raises for FEFF problems.

    The run happens in a child process (own session) that is killed, with its stage worker,
    after ``timeout_s`` seconds. FEFF's console output goes to ``workdir/feff.log``.
    """
    workdir = Path(workdir).resolve()
    if not (workdir / "feff.inp").is_file():
        return FeffResult("failed", f"no feff.inp in {workdir}", workdir=workdir)
    _clear_stale(workdir)
    code, pid, seconds = _run_child(workdir, timeout_s)
    if code is None:
        reason = f"FEFF still running after {timeout_s:g} s; killed"
        return FeffResult("timeout", reason, seconds=seconds, workdir=workdir, pid=pid)
    if code != 0:
        reason = _child_error(workdir / LOG_NAME) or f"FEFF child exited with code {code}"
        return FeffResult("failed", reason, seconds=seconds, workdir=workdir, pid=pid)
    result = validate_output(workdir, seconds)
    result.pid = pid
    return result


# --------------------------------------------------------------------------- one site


def _save_record(result: FeffResult, preset_name: str) -> None:
    record = {
        "status": result.status,
        "reason": result.reason,
        "seconds": round(result.seconds, 3),
        "input_sha256": result.input_sha256,
        "preset": preset_name,
    }
    (result.workdir / RESULT_NAME).write_text(json.dumps(record, indent=1) + "\n")


def load_cached(workdir, input_sha256: str) -> FeffResult | None:
    """An earlier finished result in ``workdir`` for the input with this hash, else None.

    A run that finished (ok, failed or unphysical) is not repeated: its output is validated
    again (so the current acceptance rules apply) and returned. A run that timed out, or
    that never wrote a record (killed), is repeated (a later run may allow more time)."""
    workdir = Path(workdir).resolve()
    try:
        record = json.loads((workdir / RESULT_NAME).read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") not in ("ok", "failed", "unphysical") or record.get("input_sha256") != input_sha256:
        return None
    result = validate_output(workdir, float(record.get("seconds", 0.0)))
    if not result.ok:
        if record["status"] == "ok":
            return None  # its files were changed or removed since: run again
        if result.reason == "no xmu.dat written" and record.get("reason"):
            result.reason = record["reason"]  # FEFF's own error, recorded when it failed
    result.input_sha256, result.cached = input_sha256, True
    return result


def compute_site(
    structure, site_index: int, preset: str | dict, workdir, timeout_s: float = DEFAULT_TIMEOUT_S
) -> FeffResult:
    """K-edge XANES of one site: write the input, reuse or run FEFF, validate.

    ``feff.inp``, ``xmu.dat``, the logs and ``feff_result.json`` (status, reason, seconds,
    sha256 of feff.inp, preset) stay in ``workdir`` for provenance. If ``workdir`` already
    holds an "ok" result for an identical ``feff.inp``, it is returned (``cached=True``)
    without running FEFF. Problems with the structure itself give status "failed".
    """
    workdir = Path(workdir).resolve()
    preset_name = preset if isinstance(preset, str) else "custom"
    try:
        inp = write_feff_input(structure, site_index, preset, workdir)
    except Exception as exc:  # pymatgen rejects the structure / site (disorder, charge, ...)
        return FeffResult("failed", f"input generation: {exc}", workdir=workdir)
    digest = file_sha256(inp)
    cached = load_cached(workdir, digest)
    if cached is not None:
        return cached
    result = run_feff(workdir, timeout_s)
    result.input_sha256 = digest
    _save_record(result, preset_name)
    return result


# --------------------------------------------------------------------------- CLI hook


def _check_absorber(structure, site: int) -> None:
    """Raise ``ValueError`` unless ``site`` exists and holds a 3d transition metal (Sc-Zn)."""
    if not 0 <= site < len(structure):
        raise ValueError(f"site {site} out of range: the structure has {len(structure)} sites")
    if not structure.is_ordered:
        raise ValueError("the structure has partial occupancies; FEFF needs an ordered one")
    element = structure[site].specie
    z = getattr(element, "Z", None)
    if z is None or not 21 <= z <= 30:
        raise ValueError(f"site {site} is {element}, not a 3d transition metal (Sc-Zn)")


def spectrum_xanes_cli(
    cif_path, site: int, preset: str, out_csv, timeout_s: float = DEFAULT_TIMEOUT_S, workdir=None
) -> FeffResult:
    """Compute the K-edge XANES of ``site`` in a CIF and write ``out_csv`` (energy_eV, mu).

    The FEFF work directory defaults to ``<out_csv stem>_feff/`` next to ``out_csv`` (so a
    rerun is resumable). Raises ``ValueError`` for a site that is not a 3d metal and
    ``RuntimeError`` when FEFF does not give an "ok" spectrum.
    """
    from pymatgen.core import Structure

    out_csv = Path(out_csv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = Structure.from_file(str(cif_path))
    _check_absorber(structure, site)
    workdir = Path(workdir) if workdir else out_csv.parent / f"{out_csv.stem}_feff"
    result = compute_site(structure, site, preset, workdir, timeout_s)
    if not result.ok:
        raise RuntimeError(f"FEFF {result.status} for site {site} of {cif_path}: {result.reason} "
                           f"(see {workdir})")
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([result.energy, result.mu])
    np.savetxt(out_csv, table, delimiter=",", header="energy_eV,mu", comments="",
               fmt=("%.4f", "%.8g"))
    return result
