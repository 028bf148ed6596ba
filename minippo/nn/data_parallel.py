"""Data parallelism for a model whose forward and backward treat the rows of a batch independently.

The model's passes stay serial and read as the math (``GPT.serial_forward`` / ``serial_backward``);
:class:`RowParallel` runs them on shards of the batch rows, one thread per shard
(``minippo.parallel``: why threads pay off, and how BLAS is held at one thread meanwhile):

    forward:   shard s runs the forward on its rows and keeps its own activations
    backward:  shard 0 adds its gradients into the model's buffers, shard s > 0 into a spare buffer
               of its own (zeroed first); the spares are then added in, in shard order

Results do not depend on timing (each shard's arithmetic is the same whatever the others do, and
the combination order is fixed); they may differ in the last bits between thread counts.
"""
import numpy as np

from minippo.parallel import map_array_groups, map_shards, row_shards


class RowParallel:
    """Runs a serial forward and backward on shards of batch rows in threads; keeps what lies between."""

    def __init__(self):
        self.shards = []
        self.activations = []  # what each shard's forward returned, for its backward
        self.spare_grads = []  # a gradient dict per shard after the first, reused from call to call

    def forward(self, forward_rows, batch_size):
        """Run ``forward_rows(shard, rows)`` on every shard of ``range(batch_size)`` (its index and a
        slice) and keep what each returns."""
        shards = row_shards(batch_size)
        activations = map_shards(forward_rows, shards)
        self.shards, self.activations = shards, activations  # only after every shard succeeded

    def backward(self, backward_rows, grads):
        """Run ``backward_rows(rows, activations, grads_of_shard)`` on every shard of the last forward,
        then add every shard's gradients into ``grads`` in shard order."""
        while len(self.spare_grads) < len(self.shards) - 1:
            self.spare_grads.append({name: np.zeros_like(value) for name, value in grads.items()})
        spares = self.spare_grads[:len(self.shards) - 1]

        def backward_shard(index, rows):
            if index > 0:
                for gradient in spares[index - 1].values():
                    gradient.fill(0.0)
            backward_rows(rows, self.activations[index], grads if index == 0 else spares[index - 1])

        map_shards(backward_shard, self.shards)

        def add_spares(names):
            for name in names:
                for spare in spares:
                    grads[name] += spare[name]

        if spares:
            map_array_groups(add_spares, grads)
