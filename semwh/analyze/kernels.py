"""Compiled permutation kernels (numba) beside their numpy references.

The 2 vs 2, RSA and CKA nulls have a numpy path (the reference the tests compare against)
and a compiled one (:mod:`semwh.analyze._numba_kernels`) that makes one pass over the pairs
per block of permutations. ``SEMWH_KERNELS`` chooses (:func:`semwh.config.kernel_choice`):
``auto`` (the default) uses the compiled kernels from :data:`MIN_CONCEPTS` concepts on,
``numba`` at any size, ``numpy`` never. Where numba does not import or compile, the numpy
path runs and one line on stderr says so. The kernels compile on first use and are cached
per machine (numba's ``cache=True``).

Both paths give the same nulls: equal 2 vs 2 counts (margins differ in their last bits, far
below the tie tolerance; a 2 vs 2 null with a tolerance below
:data:`~semwh.analyze.two_vs_two_fast_null.COMPILED_TIE_TOL`, where the last bits would
decide exact ties, keeps the numpy path) and correlations equal to about 1e-15 (sums in
another order).
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import nullcontext
from types import ModuleType
from typing import Any

from semwh.config import kernel_choice

#: Permutations per call of a compiled gather kernel.
PERMUTATION_BLOCK = 64

#: Below this many concepts the default choice keeps the numpy path: a permutation costs
#: little there, and waking the kernel's threads (and loading numba) costs more than the
#: pass saves (measured: equal at 300 concepts, compiled x1.1-1.9 faster at 500).
MIN_CONCEPTS = 400

_LOCK = threading.Lock()
# numba's default threading layer runs one parallel kernel at a time per process.
_RUN_LOCK = threading.Lock()
_loaded: dict[str, Any] = {}
# Whether the fallback line was said: once per process, whichever kernel found no numba.
_said: list[bool] = []
_SAY_LOCK = threading.Lock()


def use_compiled(n: int) -> bool:
    """Whether a null over ``n`` concepts takes the compiled path: ``SEMWH_KERNELS=numba``
    always, ``auto`` (the default) from :data:`MIN_CONCEPTS` on, ``numpy`` never; and only
    when the kernels load."""
    choice = kernel_choice()
    if choice == "numpy" or (choice == "auto" and n < MIN_CONCEPTS):
        return False
    return compiled() is not None


def compiled() -> ModuleType | None:
    """The compiled kernels, or None for the numpy path (chosen, or no working numba)."""
    if kernel_choice() == "numpy":
        return None
    with _LOCK:
        if "module" not in _loaded:
            _loaded["module"] = _load()
        return _loaded["module"]


def _load() -> ModuleType | None:
    try:
        import numba

        _fork_safe_threads(numba)
        from semwh.analyze import _numba_kernels
    except Exception as exc:  # numba missing or broken: the numpy path still works
        fallback(exc)
        return None
    return _numba_kernels


def _fork_safe_threads(numba: ModuleType) -> None:
    """Run the parallel kernels on a threading layer that survives fork(), unless the user
    chose one (``NUMBA_THREADING_LAYER``): numba's default picks GNU OpenMP where it finds
    it, and a child forked after a kernel ran (a multiprocessing pool) is killed on its
    first kernel. The parallel kernels run one at a time (``_RUN_LOCK``), as numba's own
    work queue needs; it is as fast here."""
    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"


def fallback(exc: BaseException) -> None:
    """Say in one line on stderr that the numpy path runs instead of a compiled kernel
    (once per process: the permutation kernels and regression's share the line)."""
    with _SAY_LOCK:
        if _said:
            return
        _said.append(True)
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(
        f"semwh: compiled kernels unavailable ({reason}); using numpy "
        "(set SEMWH_KERNELS=numpy to choose it and silence this line)",
        file=sys.stderr,
    )


def run(name: str, *args: Any, threads: int | None = None, parallel: bool = True) -> Any:
    """Call compiled kernel ``name``; None when it fails to compile (the caller then takes
    the numpy path, and every later call does too).

    ``parallel`` kernels run one at a time in the process, on ``threads`` threads (default:
    numba's); serial ones (``parallel=False``) may run on several of the caller's threads.
    """
    module = compiled()
    if module is None:
        return None
    numba = module.numba
    with _RUN_LOCK if parallel else nullcontext():
        previous = numba.get_num_threads()
        if threads is not None and parallel:
            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        try:
            return getattr(module, name)(*args)
        except Exception as exc:
            if not is_compile_error(exc):
                raise
            with _LOCK:
                _loaded["module"] = None
            fallback(exc)
            return None
        finally:
            if parallel:
                numba.set_num_threads(previous)


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` is numba failing to compile (the numpy path then serves)."""
    from numba.core.errors import NumbaError

    return isinstance(exc, NumbaError)
