"""BLAS threads chosen by the library where small arrays dominate.

The structure-factor engine (:func:`xtalspec.spectra.xrd.reflections`, behind the δ-profile and
the powder pattern) and the PDF's neighbour search (:func:`xtalspec.spectra.pdf.pdf`) make many
small matrix products. With OpenBLAS's default of one thread per core each of them wakes and
synchronises a thread pool, which costs more than the product itself, and more still on a busy
machine: on 10 CoRE MOFs the powder pattern was 29× faster than pymatgen's XRDCalculator with one
BLAS thread but only 7× with the defaults. So these functions run with one BLAS thread whatever
the caller's setting, and give the caller's setting back when they return (or raise):

    @single_blas_thread()
    def reflections(...): ...

    with single_blas_thread():
        ...

Only the BLAS libraries (threadpoolctl's ``user_api="blas"``) are limited; OpenMP (torch) is left
alone. Apply it around a whole pattern or batch, not around each tiny call: entering and leaving
costs ~10 µs with the cached controller (``threadpoolctl.threadpool_limits`` builds a new one each
time by scanning the loaded libraries, ~1 ms). The controller is rebuilt when modules have been
imported since it was built, since a new extension module can bring its own BLAS.
The limits are process-wide (threadpoolctl sets them in the libraries), so Python threads that
call numpy concurrently share them.
"""

from __future__ import annotations

import contextlib
import sys
import threading

_lock = threading.Lock()
_cached: tuple[int, object] | None = None  # (len(sys.modules) when built, the BLAS controller)


def blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded now (cached, see the module docstring)."""
    global _cached
    n_modules = len(sys.modules)
    cached = _cached
    if cached is not None and cached[0] == n_modules:
        return cached[1]
    from threadpoolctl import ThreadpoolController

    with _lock:
        controller = ThreadpoolController().select(user_api="blas")
        _cached = (len(sys.modules), controller)
    return controller


@contextlib.contextmanager
def single_blas_thread():
    """Context manager and decorator: the BLAS libraries run with one thread inside; the caller's
    limits are restored on the way out."""
    with blas_controller().limit(limits=1):
        yield
