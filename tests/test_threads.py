"""The library chooses its own BLAS threads where small arrays dominate (xtalspec.utils.threads):
the structure-factor engine (δ-profile, powder sticks and pattern) and the PDF run with one BLAS
thread inside, whatever the caller set, and give the caller's limits back afterwards."""

from __future__ import annotations

import time

import pytest
from pymatgen.core import Lattice, Structure
from threadpoolctl import threadpool_info, threadpool_limits

from xtalspec.spectra import pdf as pdfmod
from xtalspec.spectra import xrd
from xtalspec.utils import threads

NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def other_threads() -> list[tuple[str, int]]:
    return [(lib["filepath"], lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] != "blas"]


@pytest.fixture
def caller_two_threads():
    """The caller has set two BLAS threads (more than one, on any machine)."""
    if not blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library in this numpy")
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        yield


def spy(monkeypatch, module, name: str) -> list:
    """Replace module.name by a wrapper that records the BLAS and other thread counts at each call."""
    seen, original = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        seen.append((blas_threads(), other_threads()))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return seen


@pytest.mark.parametrize("call", [
    lambda: xrd.delta_profile(NACL),
    lambda: xrd.powder_peaks(NACL),
    lambda: xrd.powder_pattern(NACL),
    lambda: xrd.reflections(NACL, 1.0),
], ids=["delta_profile", "powder_peaks", "powder_pattern", "reflections"])
def test_structure_factor_engine_runs_on_one_blas_thread(call, caller_two_threads, monkeypatch):
    outside = other_threads()
    seen = spy(monkeypatch, xrd, "_block")  # where the complex matrix products are
    call()
    assert seen, "the engine did not reach its matrix products"
    assert all(blas == {1} for blas, _ in seen)
    assert all(other == outside for _, other in seen)  # OpenMP (torch) is left alone
    assert blas_threads() == {2}  # the caller's limit is back


def test_pdf_runs_on_one_blas_thread(caller_two_threads, monkeypatch):
    seen = spy(monkeypatch, pdfmod, "pair_distances")  # the neighbour search's matrix products
    r, g = pdfmod.pdf(NACL, rmax=8.0)
    assert len(r) == len(g) > 0
    assert seen and all(blas == {1} for blas, _ in seen)
    assert blas_threads() == {2}


def test_limits_come_back_after_an_error(caller_two_threads):
    with pytest.raises(pdfmod.PDFError):
        pdfmod.pdf(Structure(Lattice.cubic(100.0), ["H"], [[0, 0, 0]]))  # absurd density
    assert blas_threads() == {2}
    with pytest.raises(ZeroDivisionError):
        with threads.single_blas_thread():
            assert blas_threads() == {1}
            1 / 0
    assert blas_threads() == {2}


def test_nested_use_keeps_one_thread_and_restores_the_outer_limit(caller_two_threads):
    with threads.single_blas_thread():
        xrd.delta_profile(NACL)  # enters and leaves its own limit inside
        assert blas_threads() == {1}
    assert blas_threads() == {2}


def test_the_controller_is_cached_until_a_module_is_imported(monkeypatch):
    first = threads.blas_controller()
    assert threads.blas_controller() is first
    monkeypatch.setitem(__import__("sys").modules, "xtalspec_test_fake_extension", object())
    assert threads.blas_controller() is not first  # a new extension module may bring its own BLAS


def test_entering_and_leaving_is_cheap():
    with threads.single_blas_thread():
        pass
    n, start = 200, time.perf_counter()
    for _ in range(n):
        with threads.single_blas_thread():
            pass
    per_call = (time.perf_counter() - start) / n
    assert per_call < 1e-3, f"{per_call * 1e6:.0f} µs per enter/leave"  # ~10 µs; threadpool_limits ~1 ms
