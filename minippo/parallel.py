"""Data parallelism over the rows of a batch: one thread per core, each on its own share of rows.

NumPy runs every element-wise operation (GELU, LayerNorm, softmax) and every stacked matrix product
(attention's per-head QKᵀ and AV) on one core; only large 2-D matrix products use BLAS's threads.  On
a transformer train step that leaves most of a second core idle.  So a model's serial forward and
backward run on contiguous shards of a batch of B rows, ``B/threads`` rows each, every shard in its
own thread (``minippo.nn.data_parallel.RowParallel`` does it for the GPT).  NumPy releases the GIL
inside its loops and inside BLAS, so the threads really run at once.  Meanwhile BLAS is held at one
thread (``minippo.blas``): two shards each running a one-thread product already use both cores, and
OpenBLAS serialises concurrent callers when it runs several threads itself.

Measured on 2 cores (config S of ``benchmarks/bench_gpt.py``, a train step with AdamW): 113 ms on one
shard with 2 BLAS threads, 91 ms on two shards.

OpenBLAS's own worker threads spin for about 0.1 s after a multi-threaded product.  A sharded pass
right after such a product (in the caller's own code) shares a core with that spinning thread and ran
1.5x slower in a test.  Within a training step every product runs inside shards; in RLHF the
products of ``generate`` (outside shards) cost the training that follows at most that 0.1 s.

Results do not depend on timing: each shard's arithmetic is the same whatever the other does, and
the caller combines shards in a fixed order.  They can differ in the last bits between different
thread counts (a different split changes the order of some sums).

The default thread count is the number of cores this process may use; ``set_num_threads`` changes it
(1 turns the splitting off).
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from minippo.blas import blas_threads
from minippo.checks import is_integer

MIN_PARALLEL_SIZE = 1 << 18  # elements; see balanced_shards
_num_threads = None
_pool = None
_pool_lock = threading.Lock()  # held while replacing the pool or submitting shards to it
_in_shard = threading.local()  # set while a thread runs a shard, so that nested calls run serially


def _forget_pool():
    """In a forked child the pool's threads do not exist: start a new pool when one is needed.

    Runs with ``_pool_lock`` held (taken before the fork), and releases it."""
    global _pool
    _pool = None
    _pool_lock.release()


if hasattr(os, "register_at_fork"):
    # Holding the lock across fork() keeps the child from inheriting it held by a thread that does
    # not exist in the child.
    os.register_at_fork(before=_pool_lock.acquire, after_in_parent=_pool_lock.release,
                        after_in_child=_forget_pool)


def get_num_threads():
    """How many threads :func:`map_shards` uses (by default, the cores available to the process)."""
    global _num_threads
    if _num_threads is None:
        try:
            _num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            _num_threads = os.cpu_count() or 1
    return _num_threads


def set_num_threads(count):
    """Use ``count`` threads for data-parallel passes from now on (1: no threads).

    The pool of the old count is shut down without waiting for it: calls of :func:`map_shards` that
    already submitted shards to it (in other threads, or the call this one is made from, inside a
    shard) finish on it, and its threads exit once its queue is empty.  Later calls get a new pool.
    """
    global _num_threads, _pool
    if not is_integer(count) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    with _pool_lock:
        _num_threads = int(count)
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def even_slices(start, stop, count):
    """Rows ``start`` to ``stop`` as ``count`` contiguous slices whose sizes differ by at most one."""
    bounds = [start + (stop - start) * part // count for part in range(count + 1)]
    return [slice(low, high) for low, high in zip(bounds[:-1], bounds[1:])]


def row_shards(rows):
    """Split ``rows`` batch rows into at most ``get_num_threads()`` contiguous, near-equal slices."""
    return even_slices(0, rows, max(1, min(get_num_threads(), rows)))


def balanced_shards(sizes):
    """Split the keys of ``sizes`` (key -> number of elements) into at most ``get_num_threads()`` lists
    of similar total size: largest first, each to the lightest list so far.

    Below ``MIN_PARALLEL_SIZE`` elements in all, one list: handing work to a thread costs more than
    it saves (the small MLPs of control-task PPO ran 15% slower split in two).
    """
    count = get_num_threads() if sum(sizes.values()) >= MIN_PARALLEL_SIZE else 1
    shards = [[] for _ in range(max(1, min(count, len(sizes))))]
    loads = [0] * len(shards)
    for key in sorted(sizes, key=sizes.get, reverse=True):
        lightest = loads.index(min(loads))
        shards[lightest].append(key)
        loads[lightest] += sizes[key]
    return shards


def map_array_groups(function, arrays):
    """Run ``function(names)`` on groups of the keys of ``arrays`` (name -> array) of similar total
    size, one group per thread (see :func:`balanced_shards`)."""
    groups = balanced_shards({name: array.size for name, array in arrays.items()})
    map_shards(lambda _, names: function(names), groups)


def map_shards(function, shards):
    """``[function(0, shards[0]), function(1, shards[1]), ...]``, one thread per shard.

    The calling thread runs shard 0 and pool threads the rest.  With fewer than two shards, when
    only one thread is allowed (the count may have changed since the shards were made), or when
    called from inside a shard, everything runs in the calling thread.  A shard that no pool thread
    has started by the time the caller finishes shard 0 (the pool is busy with another caller's
    shards) is taken back and run by the caller too: waiting for it could take as long, and could
    wait forever if the busy pool thread is itself waiting for this caller.  If shards raise, the
    first shard's exception is raised here, after every shard has finished.
    """
    global _pool
    if len(shards) < 2 or get_num_threads() == 1 or getattr(_in_shard, "active", False):
        return [function(index, rows) for index, rows in enumerate(shards)]

    def run(index):
        _in_shard.active = True
        try:
            return function(index, shards[index])
        finally:
            _in_shard.active = False

    def outcome(index, future=None):
        """(result, None) or (None, exception) of shard ``index``, run here unless ``future`` started."""
        if future is not None and not future.cancel():
            error = future.exception()  # waits for the pool thread
            return (None, error) if error is not None else (future.result(), None)
        try:
            return run(index), None
        except BaseException as error:
            return None, error

    with blas_threads(1, rescan=False):
        with _pool_lock:  # so that set_num_threads cannot shut this pool down between two submits
            if _pool is None:
                # At least one worker: another thread may have set the count to 1 since the check above.
                _pool = ThreadPoolExecutor(max_workers=max(1, get_num_threads() - 1),
                                           thread_name_prefix="minippo")
            futures = [_pool.submit(run, index) for index in range(1, len(shards))]
        outcomes = [outcome(0)] + [outcome(index, future) for index, future in enumerate(futures, 1)]
    for _, error in outcomes:
        if error is not None:
            raise error
    return [result for result, _ in outcomes]
