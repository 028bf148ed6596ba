"""How many threads the BLAS library under NumPy and SciPy may use, settable while running.

Small matrix products (a 64-wide MLP, one decoding step) are *slower* with several BLAS threads: the
threads cost more to wake and synchronise than the arithmetic they share, and on a busy machine they
stall.  ``OPENBLAS_NUM_THREADS=1`` fixes that only if set before NumPy is imported; :func:`blas_threads`
changes it at run time by calling OpenBLAS's own ``set_num_threads`` in every OpenBLAS that NumPy or
SciPy has loaded (found through ``/proc/self/maps``).  Elsewhere -- another BLAS, or not Linux -- it
does nothing and says so by returning None.
"""
import contextlib
import ctypes

from minippo.checks import is_integer

SYMBOL_SUFFIXES = ("", "64_")
SYMBOL_PREFIXES = ("scipy_openblas", "openblas")


_last_scan = None  # what the last _openblas_functions() found


def _openblas_functions(rescan=True):
    """(get, set) ctypes function pairs of every loaded OpenBLAS.

    Reading /proc/self/maps costs about a millisecond; ``rescan=False`` reuses the last result.
    """
    global _last_scan
    if not rescan and _last_scan is not None:
        return _last_scan
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return []
    functions = []
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for prefix in SYMBOL_PREFIXES:
            for suffix in SYMBOL_SUFFIXES:
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    functions.append((getter, setter))
    _last_scan = functions
    return functions


def get_blas_threads():
    """The thread count of the first loaded OpenBLAS, or None if there is none."""
    functions = _openblas_functions()
    return functions[0][0]() if functions else None


@contextlib.contextmanager
def blas_threads(count, rescan=True):
    """``with blas_threads(1): ...`` runs the block with ``count`` BLAS threads, then restores them.

    Yields the previous count (None when no OpenBLAS was found, in which case nothing changes).
    ``rescan=False`` skips looking for libraries loaded since the last call (for callers that switch
    many times a second and only use NumPy's BLAS, which is loaded with NumPy).
    """
    if not is_integer(count) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    functions = _openblas_functions(rescan)
    previous = [getter() for getter, _ in functions]
    for _, setter in functions:
        setter(count)
    try:
        yield previous[0] if previous else None
    finally:
        for (_, setter), value in zip(functions, previous):
            setter(value)
