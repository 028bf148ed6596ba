"""Forward/backward pairs for the elementary layers: linear, LayerNorm, GELU, tanh, embedding.

Every layer follows one contract, so that a model's backward pass is its forward pass read in reverse:

* ``*_forward(inputs..., params...)`` returns the output and, when backward needs more than the
  inputs themselves, what else it needs (LayerNorm: the normalised input and 1/σ; GELU: its gate).
* ``*_backward(dout, cache..., params..., dparams...)`` returns the gradient with respect to the
  input and **adds** (``+=``) the parameter gradients into the ``d*`` buffers it is given.  Residual
  connections and tied weights (the token embedding doubles as the LM head) therefore need no
  special case: every use of a parameter simply adds its share.

All arrays are 2-D ``(N, C)`` where a layer acts on rows: the caller flattens ``(B, T, C)`` to
``(B*T, C)`` once, so each linear layer is a single BLAS matrix product.  Nothing here upcasts:
constants are Python floats, which NumPy applies in the array's own dtype.

Where the fast version is written for speed (in-place steps, sums as matrix products, a sort), a
textbook twin ``<kernel>_reference`` stands right before it: the equation as code, with the same
arguments and results, for reading and for the tests (it is not used on the hot path).
"""
import math

import numpy as np

LAYERNORM_EPS = 1e-5
GELU_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715


# ----------------------------------------------------------------------------------------------
# Linear:  y = x W + b     x (N, C_in), W (C_in, C_out), b (C_out,)
# ----------------------------------------------------------------------------------------------
def linear_forward(x, weight, bias=None):
    """y = x W + b.  Weight is stored (in, out), as in GPT-2's Conv1D checkpoints."""
    out = x @ weight  # (N, C_in) @ (C_in, C_out) -> (N, C_out)
    if bias is not None:
        out += bias
    return out


def linear_backward(dout, x, weight, dweight, dbias=None):
    """Given dL/dy, return dL/dx = dy Wᵀ and accumulate dW += xᵀ dy, db += Σ_rows dy."""
    dweight += x.T @ dout  # (C_in, N) @ (N, C_out) -> (C_in, C_out)
    if dbias is not None:
        dbias += column_sums(dout)
    return dout @ weight.T  # (N, C_out) @ (C_out, C_in) -> (N, C_in)


# Sums over one axis as matrix-vector products with a vector of ones: BLAS does them in one pass at
# memory speed, 2.5-5x faster than NumPy's .sum(axis=...) on the shapes here (rows of 64..1024).
def column_sums(x):
    """Σ_n x[n, :] of an (N, C) array -> (C,)."""
    return np.ones(x.shape[0], dtype=x.dtype) @ x


def row_sums(x, scale=1.0):
    """scale · Σ_c x[..., c], the sum over the last axis -> x.shape[:-1]."""
    return x @ np.full(x.shape[-1], scale, dtype=x.dtype)


# ----------------------------------------------------------------------------------------------
# LayerNorm:  y = γ ⊙ (x − μ) / sqrt(σ² + ε) + β   over the last axis
# ----------------------------------------------------------------------------------------------
def layernorm_forward_reference(x, weight, bias, eps=LAYERNORM_EPS):
    """Textbook twin of :func:`layernorm_forward` (same arguments and results): the equation with
    NumPy's mean and var.  The fast version takes the mean as a matrix-vector product, the variance
    as an einsum, and normalises in place."""
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)  # 1/σ, (N, 1)
    norm = (x - x.mean(axis=-1, keepdims=True)) * rstd  # x̂
    return norm * weight + bias, norm, rstd


def layernorm_backward_reference(dout, norm, rstd, weight, dweight, dbias):
    """Textbook twin of :func:`layernorm_backward` (same arguments, results and ``+=``):
    dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) · rstd with NumPy's mean and sum, no buffer reused."""
    dweight += (dout * norm).sum(axis=0)
    dbias += dout.sum(axis=0)
    dnorm = dout * weight
    return (dnorm - dnorm.mean(axis=-1, keepdims=True)
            - norm * (dnorm * norm).mean(axis=-1, keepdims=True)) * rstd


def layernorm_forward(x, weight, bias, eps=LAYERNORM_EPS):
    """Return ``(y, norm, rstd)``: the output, the normalised input x̂ = (x − μ)·rstd and rstd = 1/σ.

    x̂ and rstd are all that backward needs.  Textbook twin: :func:`layernorm_forward_reference`.
    """
    norm, rstd = layernorm_normalize(x, eps)
    out = norm * weight
    out += bias
    return out, norm, rstd


def layernorm_normalize(x, eps=LAYERNORM_EPS):
    """LayerNorm without its gain and bias: ``(x̂, rstd)`` with x̂ = (x − μ)·rstd, rstd = 1/√(σ² + ε)."""
    norm = x - row_sums(x, 1.0 / x.shape[-1])[:, None]  # x − μ, (N, C)
    variance = np.einsum("nc,nc->n", norm, norm) * (1.0 / x.shape[-1])  # (N,)
    rstd = (1.0 / np.sqrt(variance + eps))[:, None]  # (N, 1)
    norm *= rstd
    return norm, rstd


def layernorm_backward(dout, norm, rstd, weight, dweight, dbias):
    """dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) · rstd  with  dx̂ = dy ⊙ γ.

    Accumulates dγ += Σ_rows dy ⊙ x̂ and dβ += Σ_rows dy.  Textbook twin: :func:`layernorm_backward_reference`.
    """
    dweight += np.einsum("nc,nc->c", dout, norm)
    dbias += column_sums(dout)
    dnorm = dout * weight
    dx = norm * (np.einsum("nc,nc->n", dnorm, norm) * (1.0 / norm.shape[-1]))[:, None]  # x̂ · mean(dx̂ ⊙ x̂)
    np.subtract(dnorm, dx, out=dx)
    dx -= row_sums(dnorm, 1.0 / dnorm.shape[-1])[:, None]  # mean(dx̂)
    dx *= rstd
    return dx


# ----------------------------------------------------------------------------------------------
# GELU (GPT-2's tanh approximation):  y = x · s,  s = ½ (1 + tanh(√(2/π) (x + 0.044715 x³)))
# ----------------------------------------------------------------------------------------------
def gelu_forward_reference(x):
    """Textbook twin of :func:`gelu_forward` (same results): y = ½ x (1 + tanh(√(2/π)(x + 0.044715 x³)))
    in one expression, with the gate s = ½(1 + tanh(...)) that backward takes."""
    gate = 0.5 * (1.0 + np.tanh(GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x ** 3)))
    return x * gate, gate


def gelu_backward_reference(dout, x, out, gate):
    """Textbook twin of :func:`gelu_backward` (same arguments and result): the derivative of
    ½ x (1 + tanh u), u = √(2/π)(x + 0.044715 x³), written out from x alone (``out`` and ``gate``
    are not used): dy/dx = ½(1 + tanh u) + ½ x (1 − tanh² u) √(2/π)(1 + 3·0.044715 x²)."""
    t = np.tanh(GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x ** 3))
    du_dx = GELU_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


def gelu_forward(x):
    """Return ``(y, gate)`` with the gate s = ½(1 + t), t = tanh(√(2/π)(x + 0.044715 x³)).

    Backward needs x, y and s.  Eight in-place steps; textbook twin: :func:`gelu_forward_reference`.
    """
    gate = x * x
    gate *= GELU_SQRT_2_OVER_PI * GELU_CUBIC
    gate += GELU_SQRT_2_OVER_PI
    gate *= x  # √(2/π)(x + 0.044715 x³)
    np.tanh(gate, out=gate)
    gate *= 0.5
    gate += 0.5  # s = ½(1 + t)
    return x * gate, gate


def gelu_backward(dout, x, out, gate):
    """dy/dx = s + x ds/dx = s + y (1 − s) √(2/π) (2 + 6·0.044715 x²).

    With 1 − t² = 4 s (1 − s): ds/dx = ½(1 − t²) √(2/π)(1 + 3·0.044715 x²) = 2 s (1 − s) √(2/π)(...),
    and x s = y.  Textbook twin: :func:`gelu_backward_reference`.
    """
    slope = x * x
    slope *= 6.0 * GELU_SQRT_2_OVER_PI * GELU_CUBIC
    slope += 2.0 * GELU_SQRT_2_OVER_PI
    slope *= out
    slope *= 1.0 - gate
    slope += gate
    slope *= dout
    return slope


# ----------------------------------------------------------------------------------------------
# tanh (the hidden nonlinearity of the PPO actor-critic MLPs):  y = tanh(x),  dy/dx = 1 − y²
# ----------------------------------------------------------------------------------------------
def tanh_forward(x):
    """y = tanh(x); backward needs only y."""
    return np.tanh(x)


def tanh_backward(dout, out):
    """dL/dx = dL/dy ⊙ (1 − y²)."""
    return dout * (1.0 - out * out)


# ----------------------------------------------------------------------------------------------
# Embedding lookup:  y[n] = E[ids[n]]
# ----------------------------------------------------------------------------------------------
def embedding_forward(ids, table):
    """Rows of ``table`` (V, C) picked by integer ``ids`` (any shape) -> ids.shape + (C,)."""
    return table[ids]


def embedding_backward_reference(dout, ids, dtable):
    """Textbook twin of :func:`embedding_backward` (same arguments and ``+=``): dE[ids[n]] += dy[n],
    one row at a time with ``np.add.at``, which adds repeated ids once each (``dtable[ids] += dy``
    would keep only the last)."""
    np.add.at(dtable, ids.reshape(-1), dout.reshape(-1, dtable.shape[1]))


def embedding_backward(dout, ids, dtable):
    """Scatter-add: dE[v] += Σ_{n: ids[n] = v} dy[n].  Repeated ids accumulate.

    Sorting the ids puts equal ones next to each other, so one ``np.add.reduceat`` sums every group
    and each table row is updated once (``np.add.at`` does the same one row at a time, ~10x slower:
    the textbook twin :func:`embedding_backward_reference`).
    """
    ids = ids.reshape(-1)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    group_starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    dout = dout.reshape(-1, dtable.shape[1])
    dtable[sorted_ids[group_starts]] += np.add.reduceat(dout[order], group_starts, axis=0)
