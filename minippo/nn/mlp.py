"""A multilayer perceptron with tanh hidden layers: the actor and critic networks of control-task PPO.

    h₀ = x,   h_i = tanh(h_{i−1} W_i + b_i)  (hidden layers),   y = h_{L−1} W_L + b_L  (linear output)

Weights are initialised orthogonally (Saxe et al.), as CleanRL does: gain √2 for hidden layers and a
chosen gain for the output layer (0.01 for a policy head, so the initial policy is near uniform; 1.0
for a value head), biases 0.  It reuses the linear and tanh forward/backward pairs of
``minippo.nn.layers``.
"""
import math

import numpy as np

from minippo.checks import is_integer
from minippo.nn.layers import linear_backward, linear_forward, tanh_backward, tanh_forward
from minippo.nn.module import Module, as_generator, check_array, check_dtype


def orthogonal(shape, gain, rng, dtype):
    """A (rows, cols) matrix with orthonormal rows or columns, times ``gain`` (QR of a Gaussian)."""
    rows, cols = shape
    gaussian = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))  # make the decomposition unique, so the distribution is uniform
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(gain * q, dtype=dtype)


class MLP(Module):
    """``MLP([in, hidden, ..., out], output_gain=1.0, seed=0)``; parameters ``layers.{i}.weight|bias``."""

    def __init__(self, sizes, output_gain=1.0, dtype=np.float32, seed=None):
        if len(sizes) < 2 or any(not is_integer(n) or n < 1 for n in sizes):
            raise ValueError(f"sizes must list at least two positive layer widths, got {sizes!r}")
        dtype, rng = check_dtype(dtype), as_generator(seed)
        params = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            gain = output_gain if i == len(sizes) - 2 else math.sqrt(2.0)
            params[f"layers.{i}.weight"] = orthogonal((fan_in, fan_out), gain, rng, dtype)
            params[f"layers.{i}.bias"] = np.zeros(fan_out, dtype=dtype)
        super().__init__(params)
        self.n_layers = len(sizes) - 1
        self._activations = None

    def forward(self, x):
        """x (N, in), in the weights' dtype -> y (N, out); keeps each layer's input for backward."""
        x = np.asarray(x)
        weight = self.params["layers.0.weight"]
        if x.ndim != 2 or x.shape[1] != weight.shape[0]:
            raise ValueError(f"x must have shape (N, {weight.shape[0]}), got {x.shape}")
        if x.dtype != weight.dtype:
            raise TypeError(f"x must have dtype {weight.dtype} (the weights'), got {x.dtype}")
        activations = [x]
        for i in range(self.n_layers):
            x = linear_forward(x, self.params[f"layers.{i}.weight"], self.params[f"layers.{i}.bias"])
            if i < self.n_layers - 1:
                x = tanh_forward(x)
            activations.append(x)
        self._activations = activations
        return x

    def backward(self, dout):
        """dL/dy (N, out) -> dL/dx (N, in); adds the parameter gradients into ``self.grads``."""
        if self._activations is None:
            raise RuntimeError("backward called before forward")
        output = self._activations[-1]
        dout = check_array(dout, output.shape, output.dtype, "dout")  # the output's shape and dtype
        for i in reversed(range(self.n_layers)):
            if i < self.n_layers - 1:
                dout = tanh_backward(dout, self._activations[i + 1])
            dout = linear_backward(dout, self._activations[i], self.params[f"layers.{i}.weight"],
                                   self.grads[f"layers.{i}.weight"], self.grads[f"layers.{i}.bias"])
        return dout
