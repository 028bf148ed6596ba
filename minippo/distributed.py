"""Data parallelism over MPI ranks: every rank holds a full replica and works on its share of the data.

    mpiexec -n 4 minippo train-ppo --num-envs 128     # 4 processes, 32 environments each

The algorithm is the single-process one with every *global* quantity computed over all ranks:

* **Gradients.**  Each rank computes the gradient of its share's mean loss, g_r; the ranks then hold
  the mean (1/N) Σ_r g_r, which is the gradient of the mean loss over the whole batch when the shares
  have equal sizes.  One in-place ``Allreduce`` per optimiser step sums a single flat buffer holding
  every gradient and the step's diagnostics (loss, KL, ...), never one call per parameter.  Every rank
  then clips and steps identically, so the replicas stay equal.
* **Statistics.**  :meth:`World.mean_std` gives the mean and standard deviation over every rank's
  values (advantage whitening); :meth:`World.gather_rows` concatenates every rank's rows in rank order
  (running observation/reward statistics, logged figures).
* **Parameters** start as rank 0's (:meth:`World.broadcast_`) and are compared now and then by a checksum
  (:meth:`World.check_identical`): a divergence stops the run naming the step.
* **Seeds.**  :meth:`World.rank_seed` derives each rank's seed from the run's seed and the rank, so a run
  is reproducible for a given number of ranks (and, resumed on another number of ranks, from the step
  it continues at as well).
* **Failure.**  An exception that reaches the top of any rank prints that rank's traceback and aborts the
  whole job (``MPI_Abort``), rather than leaving the others waiting forever in a collective.

:func:`world` is the process's :class:`World`.  In one process -- no ``mpiexec``, ``mpiexec -n 1``, or
mpi4py not installed -- it is :data:`LOCAL`, whose every method returns its input: nothing is imported
and every number is the one the code gives without this module.  Launchers are recognised by the
variables they set (``PMI_SIZE``: MPICH, Intel MPI, ``srun --mpi=pmi2``; ``OMPI_COMM_WORLD_SIZE``: Open
MPI); mpi4py is imported only when one of them says more than one process.
"""
import math
import os
import sys
import traceback

import numpy as np

from minippo import parallel
from minippo.seeding import spawn_seeds

# Variables a launcher sets to the number of processes it started.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
INSTALL_HINT = 'pip install "minippo[mpi]" (mpi4py and the mpich wheel, which brings mpiexec)'


class World:
    """One process: rank 0 of 1.  Every collective returns its input unchanged."""

    rank, size = 0, 1

    @property
    def is_root(self):
        """True on rank 0, the rank that prints, logs and writes files."""
        return self.rank == 0

    def describe(self):
        """A phrase for the first line of output, e.g. "1 process" or "4 MPI ranks"."""
        return "1 process" if self.size == 1 else f"{self.size} MPI ranks"

    def rank_seed(self, seed, resumed_at=None):
        """This rank's seed (an int) from the run's ``seed``: ``seed`` itself in one process.

        ``resumed_at``: the step (update, iteration) at which a run saved by another number of ranks
        continues.  Its saved streams belong to ranks that no longer exist, so each rank takes a new seed
        from (``seed``, its rank, ``resumed_at``): the continued run is reproducible for a given N, and its
        streams differ from those of the run's start and of a resume at any other step."""
        if resumed_at is not None:
            return int(np.random.SeedSequence(seed, spawn_key=(resumed_at, self.rank)).generate_state(1, np.uint64)[0])
        return seed if self.size == 1 else spawn_seeds(seed, self.size)[self.rank]

    def share(self, total, name):
        """This rank's share of ``total`` items (environments, documents); ValueError naming ``name``
        unless the ranks' shares are equal (their mean gradients are then the batch's)."""
        if total % self.size:
            raise ValueError(f"{name}={total} must be divisible by the number of MPI ranks, {self.size}")
        return total // self.size

    def average_gradients(self, grads, stats=None):
        """Replace every array of ``grads`` by its mean over the ranks, in place; return the dict of
        floats ``stats`` averaged over the ranks too (one ``Allreduce`` for both, in the gradients'
        dtype).  Without ``stats``, one contiguous array (a flat gradient) is reduced where it lies,
        with no copy."""
        return stats

    def broadcast_(self, arrays):
        """Overwrite every array of the dict ``arrays`` with rank 0's, in place."""

    def check_identical(self, arrays, where):
        """Raise RuntimeError naming ``where`` (e.g. "update 7") unless the dict ``arrays`` holds the
        same values on every rank (compared by one :func:`checksum_all` of them all, then, when that
        differs, by a :func:`checksum` of each array, to name those that differ)."""

    def mean(self, values):
        """Mean of the ``values`` (an array) of every rank together, in their dtype; ValueError when no
        rank has any."""
        if values.size == 0:
            raise ValueError("a mean needs at least one value")
        return values.mean()

    def mean_std(self, values):
        """Mean and standard deviation (ddof=0) of the ``values`` of every rank together, in their
        dtype; ValueError when no rank has any."""
        return self.mean(values), values.std()

    def mean_std_groups(self, groups):
        """``[(mean, std), ...]``: :meth:`mean_std` of each array of the list ``groups``, each over that
        group's arrays of every rank, in one collective for all of them (the minibatches of an epoch).
        Groups of one size and dtype (1-D) take one pass for all of them, with the same numbers."""
        rows = as_rows(groups)
        if rows is None:
            return [self.mean_std(values) for values in groups]
        if rows.shape[1] == 0:
            raise ValueError("a mean needs at least one value")
        return list(zip(rows.mean(axis=1), rows.std(axis=1)))  # each row's, as mean_std's: NumPy sums a row alike

    def gather_rows(self, rows):
        """Every rank's array ``rows`` concatenated along axis 0, in rank order."""
        return self.gather_rows_each([rows])[0]

    def gather_rows_each(self, arrays):
        """:meth:`gather_rows` of each array of the list ``arrays`` (of any dtypes and row counts), in one
        pair of collectives for all of them."""
        return arrays

    def gather_list(self, items):
        """Every rank's list ``items`` concatenated, in rank order."""
        return items

    def mean_weight(self, count):
        """``(w, total)``: ``total`` is the sum of every rank's ``count`` (of tokens, say) and
        w = N · count / total the factor that turns this rank's mean over its ``count`` items into a
        term whose average over the N ranks is the mean over all ``total`` items.  (1.0, count) in one
        process."""
        return 1.0, count

    def on_root(self, function):
        """``function`` on rank 0; on the other ranks a function that does nothing (for ``log``)."""
        return function


class MPIWorld(World):
    """The ranks of an MPI communicator (default: all the processes ``mpiexec`` started)."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._buffers = {}  # (length, dtype) -> a flat buffer reused by every step
        ranks_here = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()  # on this machine
        parallel.set_num_threads(max(1, parallel.get_num_threads() // ranks_here))  # ranks x threads = cores

    def _flat(self, arrays, extra=()):
        """A reused flat buffer holding ``arrays`` (a dict) then the numbers ``extra``."""
        dtype = np.result_type(*arrays.values())
        length = sum(array.size for array in arrays.values()) + len(extra)
        key = (length, dtype.str)
        if key not in self._buffers:
            self._buffers[key] = np.empty(length, dtype=dtype)
        buffer = self._buffers[key]
        np.concatenate([array.ravel() for array in arrays.values()] + [np.asarray(extra, dtype=dtype)], out=buffer)
        return buffer

    @staticmethod
    def _unflatten(buffer, arrays):
        """Copy the flat ``buffer`` back into ``arrays``; return what follows them."""
        offset = 0
        for array in arrays.values():
            array[...] = buffer[offset:offset + array.size].reshape(array.shape)  # (size,) -> array.shape
            offset += array.size
        return buffer[offset:]

    def average_gradients(self, grads, stats=None):
        if stats is None and len(grads) == 1:
            (buffer,) = grads.values()
            if buffer.flags.c_contiguous:  # reduced where it lies
                self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
                buffer /= self.size
                return None
        names = list(stats or {})
        buffer = self._flat(grads, [stats[name] for name in names])
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        buffer /= self.size
        averaged = self._unflatten(buffer, grads)
        return None if stats is None else {**stats, **{name: float(x) for name, x in zip(names, averaged)}}

    def broadcast_(self, arrays):
        buffer = self._flat(arrays)
        self.comm.Bcast(buffer, root=0)
        self._unflatten(buffer, arrays)

    def check_identical(self, arrays, where):
        whole = np.empty(self.size, dtype=np.uint64)  # every rank's checksum of all the arrays
        self.comm.Allgather(np.array([checksum_all(arrays)], dtype=np.uint64), whole)
        if (whole == whole[0]).all():  # (every rank has the same `whole`: all return, or all go on)
            return
        sums = np.array([checksum(array) for array in arrays.values()], dtype=np.uint64)  # which arrays differ
        every = np.empty((self.size, len(sums)), dtype=np.uint64)
        self.comm.Allgather(sums, every)
        differing = [rank for rank in range(self.size) if (every[rank] != every[0]).any()]
        if differing:
            names = [name for name, column in zip(arrays, every.T) if (column != column[0]).any()]
            raise RuntimeError(f"the parameters of ranks {differing} differ from rank 0's at {where} (in "
                               f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}): the replicas "
                               f"diverged (a rank computed something the others did not)")

    def _sum(self, numbers, dtype=np.float64):
        """The sums over the ranks of the sequence ``numbers`` (one buffer ``Allreduce``), as an array."""
        buffer = np.array(numbers, dtype=dtype)
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return buffer

    def mean(self, values):
        count, total = self._sum([values.size, values.sum(dtype=np.float64)])
        if count == 0:
            raise ValueError("a mean needs at least one value")
        dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)  # as NumPy's mean
        return dtype.type(total / count)

    def mean_std(self, values):
        return self.mean_std_groups([values])[0]

    def mean_std_groups(self, groups):
        rows = as_rows(groups)
        moments = row_moments(rows) if rows is not None else np.concatenate([local_moments(v) for v in groups])
        every = np.empty((self.size, len(groups), 3))  # one (n, Σx, Σ(x − x̄)²) row per rank and group
        self.comm.Allgather(moments, every)
        counts, means, stds = merged_moments_each(every.transpose(1, 0, 2))  # (groups, ranks, 3)
        if not counts.all():
            raise ValueError("a mean needs at least one value")
        return [(values.dtype.type(mean), values.dtype.type(std))
                for values, mean, std in zip(groups, means.tolist(), stds.tolist())]

    def gather_rows_each(self, arrays):
        arrays = [np.ascontiguousarray(array) for array in arrays]
        counts = np.empty((self.size, len(arrays)), dtype=np.int64)  # every rank's row count of each array
        self.comm.Allgather(np.array([len(array) for array in arrays], dtype=np.int64), counts)
        row_bytes = np.array([array.itemsize * math.prod(array.shape[1:]) for array in arrays], dtype=np.int64)
        sizes = counts * row_bytes  # (ranks, arrays): bytes of each rank's rows of each array
        gathered = np.empty(sizes.sum(), dtype=np.uint8)
        self.comm.Allgatherv(np.concatenate([array.reshape(-1).view(np.uint8) for array in arrays]),
                             (gathered, sizes.sum(axis=1)))  # each rank's arrays one after the other, as bytes
        starts = np.cumsum(np.concatenate([[0], sizes.reshape(-1)]))[:-1].reshape(sizes.shape)
        return [np.concatenate([gathered[start:start + size] for start, size in zip(starts[:, i], sizes[:, i])])
                .view(array.dtype).reshape(counts[:, i].sum(), *array.shape[1:])  # (bytes,) -> (rows, *row shape)
                for i, array in enumerate(arrays)]

    def gather_list(self, items):
        return [item for rank_items in self.comm.allgather(items) for item in rank_items]

    def mean_weight(self, count):
        total = int(self._sum([count], np.int64)[0])
        return (self.size * count / total if total else 0.0), total

    def on_root(self, function):
        return function if self.is_root else _ignore

    def abort(self, status):
        """End every rank of the job with exit ``status``."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)


def checksum(array):
    """Σ_i w_i mod 2^64 over the words w_i of ``array``'s bytes read as unsigned 32-bit integers (bytes
    when their number is not a multiple of 4): a change to any one word (a float32 element) changes it,
    and it reads memory about ten times as fast as a cryptographic hash (``World.check_identical``)."""
    words = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if words.size % 4 == 0:
        words = words.view(np.uint32)
    return int(words.sum(dtype=np.uint64))


def checksum_all(arrays):
    """One checksum of all the arrays of the dict ``arrays``: Σ of their :func:`checksum` mod 2^64, read in one
    pass as the checksum of the flat array they are views of when they fill one (a model's parameters; the
    same number when each array is whole 32-bit words) (``World.check_identical``)."""
    parts = list(arrays.values())
    owner = parts[0].base if parts else None
    if (isinstance(owner, np.ndarray) and owner.flags.c_contiguous and all(part.base is owner for part in parts)
            and sum(part.nbytes for part in parts) == owner.nbytes):
        return checksum(owner)
    return sum(checksum(part) for part in parts) % 2**64


def local_moments(values):
    """One row (n, Σx, Σ(x − x̄)²) of ``values``, in float64 (zeros when there are none): what each rank
    contributes to :func:`merged_moments`."""
    return row_moments(np.reshape(values, (1, -1)))  # (...) -> (1, n)


def row_moments(rows):
    """:func:`local_moments` of each row of the 2-D array ``rows``, (rows, 3), in one pass for all."""
    deviations = np.array(rows, dtype=np.float64)  # a copy, made the squared deviations in place
    count = deviations.shape[1]
    if count == 0:
        return np.zeros((len(deviations), 3))
    totals = deviations.sum(axis=1)  # each row's sum as its own: NumPy sums a row as a 1-D array
    deviations -= (totals / count)[:, None]
    return np.stack([np.full(len(deviations), float(count)), totals,
                     np.square(deviations, out=deviations).sum(axis=1)], axis=1)


def as_rows(groups):
    """The list ``groups`` of 1-D arrays as the rows of one 2-D array when they share one size and dtype
    (their statistics then take one NumPy call each for all of them), else None."""
    if not len(groups) or not all(values.ndim == 1 and values.shape == groups[0].shape
                                  and values.dtype == groups[0].dtype for values in groups):
        return None
    return np.concatenate(groups).reshape(len(groups), -1)  # (groups · n,) -> (groups, n)


def merged_moments(moments):
    """(n, mean, std) of the union of the groups whose :func:`local_moments` are the rows of ``moments``
    (Chan et al.'s pairwise update, with no cancellation):

        n = Σ_r n_r,   mean = Σ_r S_r / n,   M2 = Σ_r M2_r + Σ_r n_r (S_r / n_r − mean)²,   std = √(M2 / n).

    (0, 0.0, 0.0) when every group is empty."""
    counts, sums, squares = moments.T
    count = counts.sum()
    if count == 0:
        return 0, 0.0, 0.0
    mean = sums.sum() / count
    filled = counts > 0
    spread = squares.sum() + (counts[filled] * np.square(sums[filled] / counts[filled] - mean)).sum()
    return int(count), mean, math.sqrt(spread / count)


def merged_moments_each(every):
    """(counts, means, stds), arrays: :func:`merged_moments` of ``every[g]`` for each group g of ``every``
    (groups, ranks, 3) -- in one pass for all when no rank's share of a group is empty (each sum over
    the ranks then is the one :func:`merged_moments` takes), else group by group."""
    counts, sums, squares = np.ascontiguousarray(np.moveaxis(every, -1, 0))  # (groups, ranks, 3) -> 3 x (groups, ranks)
    if not counts.all():
        return tuple(np.array(column) for column in zip(*(merged_moments(moments) for moments in every)))
    count = counts.sum(axis=1)
    mean = sums.sum(axis=1) / count
    spread = squares.sum(axis=1) + (counts * np.square(sums / counts - mean[:, None])).sum(axis=1)
    return count, mean, np.sqrt(spread / count)


def _ignore(*args, **kwargs):
    """What :meth:`World.on_root` gives the ranks other than 0."""


LOCAL = World()
_world = None


def launched_size(environ=os.environ):
    """The number of processes the launcher says it started (1 without a launcher)."""
    for name in SIZE_VARIABLES:
        if environ.get(name, "").isdigit():
            return int(environ[name])
    return 1


def require_one_process(command, instead):
    """ValueError under ``mpiexec -n N`` with N > 1, for a command that does not run data-parallel: N copies
    would repeat its work and race to write the same files.  ``instead`` says what to run."""
    size = launched_size()
    if size > 1:
        raise ValueError(f"{command} runs in one process, not on {size} MPI ranks: run it without mpiexec. "
                         f"{instead}")


def world():
    """This process's :class:`World`: :data:`LOCAL` in one process, an :class:`MPIWorld` under
    ``mpiexec -n N`` with N > 1 (which also makes an uncaught exception abort the job)."""
    global _world
    if _world is None:
        size = launched_size()
        if size == 1:
            _world = LOCAL
        else:
            try:
                from mpi4py import MPI
            except ImportError as error:
                raise ImportError(f"launched as one of {size} MPI processes, but mpi4py is not installed: "
                                  f"{INSTALL_HINT}") from error
            _world = MPIWorld(MPI.COMM_WORLD)
            sys.excepthook = _abort_on_uncaught
    return _world


def _abort_on_uncaught(kind, error, trace):
    """``sys.excepthook`` under MPI: print the traceback prefixed by the rank, then abort every rank."""
    rank = _world.rank
    lines = "".join(traceback.format_exception(kind, error, trace)).splitlines()
    print("\n".join(f"[rank {rank}] {line}" for line in lines), file=sys.stderr, flush=True)
    _world.abort(1)
