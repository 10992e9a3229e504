"""Parse CIFs in a child process with a time and a memory limit per file.

pymatgen's CIF parser can take minutes and gigabytes on a hostile or pathological file (a
"symmetry bomb" of thousands of sites in a cubic group, a P1 cell of 100k atoms: its site
merging grows with the square of the atom count). :func:`~.cleaning.parse_and_check` rejects
most of them cheaply from the CIF text first (atom-site rows × lattice centrings against
``max_atoms``); :class:`GuardedParser` is the backstop for the rest: every CIF is parsed by a
long-lived child process whose address space is capped (``memory_bytes`` above what it had at
start) and whose answer must come within ``timeout_s``. A child that runs out of time is killed
and replaced, and the CIF is rejected ``parse_timeout``; one that runs out of memory rejects it
``parse_out_of_memory``. Either way the shard goes on with the next file.

The child is forked from the ingesting process (the parser is already imported there, so
starting it costs milliseconds) and returns what :func:`parse_and_check` returns, pickled;
the structures are the same objects, bit for bit, as when parsed in process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource

from .cleaning import CleaningSettings, ParsedCIF, Reject, parse_and_check

log = logging.getLogger("xtalspec.ingest")

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_BYTES = 4 * 2**30

#: parsed once in the parent before the first fork, so that the parser's lazy imports and
#: tables are loaded there and every child starts warm (its time limit is spent on the file)
_WARM_UP_CIF = b"""data_warm
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
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
_warm = False


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _child(conn, settings: CleaningSettings, memory_bytes: int) -> None:
    limit = _address_space_bytes() + memory_bytes
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):  # a hard limit below ours: keep it
        pass
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        try:
            result = parse_and_check(data, settings)
        except MemoryError:
            result = Reject("parse_out_of_memory", f"parsing needed more than {memory_bytes / 2**30:.1f} GiB")
        try:
            conn.send(result)
        except MemoryError:
            conn.send(Reject("parse_out_of_memory", "the parsed structure does not fit in memory"))


class GuardedParser:
    """``parser(data)`` -> :class:`ParsedCIF` or :class:`Reject`, under a time and memory limit."""

    def __init__(self, settings: CleaningSettings, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.settings, self.timeout_s, self.memory_bytes = settings, float(timeout_s), int(memory_bytes)
        self._process = None
        self._conn = None

    def _start(self) -> None:
        global _warm
        if not _warm:
            parse_and_check(_WARM_UP_CIF, self.settings)
            _warm = True
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        self._process = context.Process(target=_child, args=(child, self.settings, self.memory_bytes), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def __call__(self, data: bytes | None) -> ParsedCIF | Reject:
        if data is None:
            return parse_and_check(data, self.settings)
        if self._process is None or not self._process.is_alive():
            self._stop()
            self._start()
        try:
            self._conn.send_bytes(data)
            if self._conn.poll(self.timeout_s):
                return self._conn.recv()
        except (EOFError, OSError) as exc:  # the child died (killed by the kernel, crashed)
            self._process.join(5)
            code = self._process.exitcode
            self._stop()
            reason = "parse_out_of_memory" if code == -9 else "parse_error"  # SIGKILL: the OOM killer
            return Reject(reason, f"the parsing process died (exit code {code}): {type(exc).__name__}: {exc}")
        self._stop()
        return Reject("parse_timeout", f"not parsed within {self.timeout_s:g} s (the parser was stopped)")

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> "GuardedParser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
