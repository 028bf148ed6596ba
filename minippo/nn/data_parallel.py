"""Data parallelism for a model whose forward and backward treat the rows of a batch independently.

The model's passes stay serial and read as the math (``GPT.serial_forward`` / ``serial_backward``);
:class:`RowParallel` runs them on shards of the batch rows, one thread per shard
(``minippo.parallel``: why threads pay off, and how BLAS is held at one thread meanwhile):

    forward:   shard s runs the forward on its rows and keeps its own activations
    backward:  shard 0 adds its gradients into the model's buffers, shard s > 0 into scratch buffers
               of its own (zeroed first), which are then added in, in shard order

Scratch buffers for the whole model would double the gradients' memory (500 MB at GPT-2 124M), so
the model names *groups* of parameters that its backward finishes one after the other (the GPT: one
group per block, last block first).  A shard s > 0 takes a group-sized scratch set from a pool when it
first writes a group, and says when the group is done; whichever shard finishes a group last adds the
scratch sets into the model's buffers, in shard order, and returns them to the pool.  So only the
groups some shard is still working on hold scratch (typically one or two blocks); parameters in no
group (the GPT's embeddings and final LayerNorm) keep a scratch of their own per shard.

Results do not depend on timing (each shard's arithmetic is the same whatever the others do, and
every gradient is combined in the same order: the model's buffer, then shard 1's part, shard 2's, ...);
they may differ in the last bits between thread counts.
"""
import threading

import numpy as np

from minippo.parallel import map_array_groups, map_shards, row_shards


class RowParallel:
    """Runs a serial forward and backward on shards of batch rows in threads; keeps what lies between."""

    def __init__(self):
        self.shards = []
        self.activations = []  # what each shard's forward returned, for its backward
        self.spare_grads = []  # per shard after the first: scratch of the parameters in no group, reused
        self._pool = []  # free scratch sets for one group (same shapes for every group), reused

    def forward(self, forward_rows, batch_size):
        """Run ``forward_rows(shard, rows)`` on every shard of ``range(batch_size)`` (its index and a
        slice) and keep what each returns."""
        shards = row_shards(batch_size)
        activations = map_shards(forward_rows, shards)
        self.shards, self.activations = shards, activations  # only after every shard succeeded

    def backward(self, backward_rows, grads, groups):
        """Run ``backward_rows(rows, activations, grads_of_shard, group_done)`` on every shard of the
        last forward and combine the shards' gradients into ``grads``.

        ``groups`` maps a key to the names of parameters of the same shapes, group after group (the
        first group's shapes are those of every group); ``backward_rows`` calls ``group_done(key)`` once
        it has added everything into that group's gradients."""
        extra = len(self.shards) - 1
        rest = [name for name in grads if all(name not in names for names in groups.values())]
        while len(self.spare_grads) < extra:
            self.spare_grads.append({name: np.zeros_like(grads[name]) for name in rest})
        group_shapes = [grads[name].shape for name in next(iter(groups.values()), [])]
        dtype = next(iter(grads.values())).dtype
        reduction = GroupReduction(grads, groups, extra, self._pool, group_shapes, dtype)

        def backward_shard(index, rows):
            if index == 0:
                backward_rows(rows, self.activations[0], grads, lambda key: reduction.done(key, 0))
                return
            spare = self.spare_grads[index - 1]
            for name in rest:
                spare[name].fill(0.0)
            backward_rows(rows, self.activations[index], ShardGradients(spare, reduction, index),
                          lambda key: reduction.done(key, index))

        map_shards(backward_shard, self.shards)

        def add_spares(names):
            for name in names:
                for spare in self.spare_grads[:extra]:
                    grads[name] += spare[name]

        if extra:
            map_array_groups(add_spares, {name: grads[name] for name in rest})


class GroupReduction:
    """The scratch sets of one backward, per (group, shard > 0), and the adding of each group's sets
    into the model's gradients once every shard has finished that group."""

    def __init__(self, grads, groups, extra, pool, shapes, dtype):
        self.grads, self.groups, self.extra, self.pool = grads, groups, extra, pool
        self.shapes, self.dtype = shapes, dtype
        self.scratch = {}  # (group key, shard) -> scratch set: a list of arrays in the group's name order
        self.finished = {key: 0 for key in groups}  # shards done with each group
        self.lock = threading.Lock()

    def scratch_set(self, key, shard):
        """Shard ``shard``'s zeroed scratch set for group ``key`` (taken from the pool the first time)."""
        with self.lock:
            found = self.scratch.get((key, shard))
            if found is not None:
                return found
            found = self.pool.pop() if self.pool else [np.empty(shape, self.dtype) for shape in self.shapes]
            self.scratch[(key, shard)] = found
        for array in found:  # only this shard's thread uses the set until it calls done()
            array.fill(0.0)
        return found

    def done(self, key, shard):
        """Shard ``shard`` has finished group ``key``; the last shard to finish adds the scratch sets."""
        with self.lock:
            self.finished[key] += 1
            if self.finished[key] <= self.extra:
                return
            sets = [self.scratch.pop((key, index), None) for index in range(1, self.extra + 1)]
        for scratch in sets:  # in shard order; a shard that never wrote the group has no set
            if scratch is not None:
                for name, array in zip(self.groups[key], scratch):
                    self.grads[name] += array
        with self.lock:
            self.pool.extend(scratch for scratch in sets if scratch is not None)


class ShardGradients:
    """The gradient buffers a shard s > 0 adds into: its own scratch for parameters in no group, and
    its scratch set of a group for that group's parameters."""

    def __init__(self, spare, reduction, shard):
        self.spare, self.reduction, self.shard = spare, reduction, shard
        self.position = {name: (key, index) for key, names in reduction.groups.items()
                         for index, name in enumerate(names)}

    def __getitem__(self, name):
        if name in self.spare:
            return self.spare[name]
        key, index = self.position[name]
        return self.reduction.scratch_set(key, self.shard)[index]

    def __setitem__(self, name, value):
        """``grads[name] += g`` adds in place, then assigns the same array back: allowed, nothing else."""
        if value is not self[name]:
            raise TypeError(f"gradient {name} of a shard can only be added into in place")
