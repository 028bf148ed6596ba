"""Let the C allocator keep freed memory, so large temporary arrays stop costing page faults.

Every forward and backward pass allocates arrays of the same large sizes and frees them again.  By
default glibc gives such blocks (over 128 KiB) straight back to the operating system, so the next step
gets fresh pages and pays a page fault per 4 KiB on first touch -- measured at ~14,000 faults and a
fifth of the time of a small GPT train step.  :func:`keep_freed_memory` raises glibc's mmap and trim
thresholds so those blocks are reused from the heap instead.  The process then keeps its peak memory
until it exits, which is why only the command line calls it; a library user may call it too.  It does
nothing (and returns False) where the C library is not glibc.
"""
import ctypes
import ctypes.util

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
