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
import os
import threading

from minippo.checks import is_integer

SYMBOL_SUFFIXES = ("", "64_")
SYMBOL_PREFIXES = ("scipy_openblas", "openblas")
MAX_COUNT = 2 ** 31 - 1  # OpenBLAS's set_num_threads takes a C int (and caps it at its own maximum)

_libraries = {}  # path -> the (get, set) pairs of that OpenBLAS: each library is opened once
_last_scan = None  # what the last _openblas_functions() found

_lock = threading.Lock()  # guards _requests and _original, and the scan that feeds them
_requests = {}  # one entry per active blas_threads block: a key of its own -> its count, oldest first
# (set, count before the first active block) of every library those blocks changed; a list, because
# ctypes functions cannot be dictionary keys
_original = []

if hasattr(os, "register_at_fork"):
    # Holding the lock across fork() keeps the child from inheriting it held by a thread that does
    # not exist in the child.
    os.register_at_fork(before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_lock.release)


def _openblas_paths(maps):
    """The paths of the OpenBLAS libraries among the lines of ``/proc/self/maps``.

    A line is ``address perms offset device inode path``; the path is the rest of the line after
    five fields, so it may contain spaces.  A file deleted since it was mapped (an upgrade in place)
    shows as ``path (deleted)`` and cannot be opened again, so it is left out.
    """
    paths = set()
    for line in maps:
        fields = line.rstrip("\n").split(maxsplit=5)
        if len(fields) < 6:  # anonymous memory: no path
            continue
        path = fields[5]
        if "openblas" in path.lower() and ".so" in path and not path.endswith(" (deleted)"):
            paths.add(path)
    return sorted(paths)


def _functions_in(path):
    """(get, set) ctypes function pairs of the OpenBLAS at ``path``; none if ctypes cannot load it."""
    try:
        library = ctypes.CDLL(path)
    except OSError:  # e.g. a file that only looks like a library by its name
        return []
    functions = []
    for prefix in SYMBOL_PREFIXES:
        for suffix in SYMBOL_SUFFIXES:
            getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
            setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                functions.append((getter, setter))
    return functions


def _openblas_functions(rescan=True):
    """(get, set) ctypes function pairs of every loaded OpenBLAS.

    Reading /proc/self/maps costs about a millisecond; ``rescan=False`` reuses the last result.  A
    library keeps the same pair objects from one scan to the next (``blas_threads`` recognises the
    libraries it has changed by them).  Called with ``_lock`` held.
    """
    global _last_scan
    if not rescan and _last_scan is not None:
        return _last_scan
    try:
        with open("/proc/self/maps") as maps:
            paths = _openblas_paths(maps)
    except OSError:
        return []
    functions = []
    for path in paths:
        if path not in _libraries:
            _libraries[path] = _functions_in(path)
        functions += _libraries[path]
    _last_scan = functions
    return functions


def get_blas_threads():
    """The thread count of the first loaded OpenBLAS, or None if there is none."""
    with _lock:
        functions = _openblas_functions()
        return functions[0][0]() if functions else None


def _apply(count):
    """Give every library changed since no block was active ``count`` threads."""
    for setter, _ in _original:
        setter(count)


@contextlib.contextmanager
def blas_threads(count, rescan=True):
    """``with blas_threads(1): ...`` runs the block with ``count`` BLAS threads, then restores them.

    Yields the previous count (None when no OpenBLAS was found, in which case nothing changes).
    ``rescan=False`` skips looking for libraries loaded since the last call (for callers that switch
    many times a second and only use NumPy's BLAS, which is loaded with NumPy).

    The thread count is one setting for the whole process, and blocks in several threads can be
    active at once (two threads each running :func:`minippo.parallel.map_shards`) and exit in any
    order.  So each block does not simply restore what it found -- that could be another block's
    temporary count, and BLAS would be left there.  Instead the active blocks are recorded, and:

    * the first one to enter saves the counts in force before it;
    * while blocks are active, the count is that of the most recently entered one still active;
    * when the last active block exits, the saved counts are restored.

    Nested blocks in one thread behave as expected from that: the inner count inside the inner
    block, the outer count again after it, the original after the outer block.
    """
    if not is_integer(count) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be an integer from 1 to {MAX_COUNT}, got {count!r}")
    count = int(count)  # ctypes does not convert NumPy integers
    request = object()
    with _lock:
        functions = _openblas_functions(rescan)
        previous = functions[0][0]() if functions else None
        for getter, setter in functions:  # a library seen for the first time since no block was active
            if all(setter is not known for known, _ in _original):
                _original.append((setter, getter()))
        _requests[request] = count
        _apply(count)
    try:
        yield previous
    finally:
        with _lock:
            del _requests[request]
            if _requests:
                _apply(next(reversed(_requests.values())))  # the most recent active block's count
            else:
                for setter, original in _original:
                    setter(original)
                _original.clear()
