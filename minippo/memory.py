"""Two process-wide settings for long runs, which only the command line makes (a library user may too).

**Keep freed memory.**  Every forward and backward pass allocates arrays of the same large sizes and
frees them again.  By default glibc gives such blocks (over 128 KiB) straight back to the operating
system, so the next step gets fresh pages and pays a page fault per 4 KiB on first touch -- measured at
~14,000 faults and a fifth of the time of a small GPT train step.  :func:`keep_freed_memory` raises
glibc's mmap and trim thresholds so those blocks are reused from the heap instead.  The process then
keeps its peak memory until it exits.  It does nothing (and returns False) where the C library is not
glibc.

**Freeze the imported objects.**  Python's cyclic garbage collector now and then makes a full
collection, which visits every container object alive: after ``import minippo.cli`` some 42,000 of them
(the functions, classes and dictionaries of NumPy, SciPy and minippo), ~12 ms per collection, about
once every twenty CartPole updates.  Under MPI a rank that collects makes every other rank wait at the
next collective.  :func:`freeze_imported_objects` moves the objects alive at that moment out of the
collector's sight (``gc.freeze``); they live as long as the process anyway, and full collections then
only visit what the run creates.
"""
import ctypes
import ctypes.util
import gc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30   # allocations below 1 GiB come from the heap ...
TRIM_THRESHOLD = 2**31 - 1  # ... and the heap is never trimmed back


def keep_freed_memory():
    """Tune glibc's malloc as described above; return True if it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def freeze_imported_objects():
    """Exempt every object alive now from the garbage collector's future passes (``gc.freeze``), as
    described above, after one last collection (garbage frozen would be kept for good); call it once the
    modules are imported, before the long loop."""
    gc.collect()
    gc.freeze()
