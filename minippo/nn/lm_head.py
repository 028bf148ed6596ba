"""The LM head and the cross-entropy fused, over chunks of rows: pretraining without (N, V) logits.

For final hidden states h_t (N, C), the tied LM head E (V, C), targets y_t and weights w_t:

    z_t = h_t Eᵀ,   π_t = softmax(z_t),   L = Σ_t w_t · (−log π_t(y_t))
    dL/dz_t = w_t (π_t − onehot(y_t)),   dL/dh = (dL/dz) E,   dL/dE = (dL/dz)ᵀ h

(w_t = 1/n on the n counted positions and 0 on padding gives the mean cross-entropy.)  Read
:func:`lm_head_cross_entropy_reference` first: the plain path, logits → cross-entropy → two products.
At GPT-2's vocabulary (V = 50,257) those logits and their gradient are the largest arrays of a train
step, 2·N·V floats (400 MB at N = 1024), each written and read several times.
:func:`lm_head_cross_entropy` computes the same loss and gradients ``chunk_rows`` rows at a time, as
llm.c and fused-linear-cross-entropy kernels do: one (chunk, V) buffer holds a chunk's logits, turns
into its gradient in place, and is used by the two products before the next chunk overwrites it.
dE is accumulated by BLAS itself (gemm with β = 1), so no (V, C) temporary is made per chunk.
"""
import numpy as np
from scipy.linalg import blas as scipy_blas

from minippo.nn.layers import row_sums

CHUNK_ROWS = 128  # rows per chunk: a (128, 50257) float32 buffer is 26 MB


def lm_head_cross_entropy_reference(hidden, wte, targets, weights, dwte):
    """Textbook twin of :func:`lm_head_cross_entropy` (same arguments, results and ``+=``): the whole
    (N, V) logits and their gradient w (π − onehot(y)) at once, then the two products."""
    rows = np.arange(len(targets))
    logits = hidden @ wte.T  # (N, C) @ (C, V) -> (N, V)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # log π
    loss = -float(np.sum(weights * log_probs[rows, targets]))
    dlogits = np.exp(log_probs)  # π
    dlogits[rows, targets] -= 1.0
    dlogits *= weights[:, None]  # w (π − onehot(y))
    dwte += dlogits.T @ hidden  # (V, N) @ (N, C)
    return loss, dlogits @ wte  # (N, V) @ (V, C) -> (N, C)


def lm_head_cross_entropy(hidden, wte, targets, weights, dwte, chunk_rows=CHUNK_ROWS):
    """L = Σ_t w_t · (−log softmax(h_t Eᵀ)[y_t]) and its gradients, ``chunk_rows`` rows at a time.

    hidden (N, C) and wte (V, C) in one dtype; targets (N,) integer ids in [0, V); weights (N,) in that
    dtype.  Returns ``(L, dhidden)`` with dhidden (N, C), and adds dL/dE into ``dwte`` (V, C).
    Runs in the calling thread (a GPT calls it on each shard of rows).
    Textbook twin: :func:`lm_head_cross_entropy_reference`.
    """
    N = len(hidden)
    gemm = scipy_blas.get_blas_funcs("gemm", (hidden,))
    dwte_t = dwte.T  # (C, V), Fortran-ordered: gemm writes into it in place
    dhidden = np.empty_like(hidden)
    buffer = np.empty((min(chunk_rows, N), len(wte)), dtype=hidden.dtype)
    loss = 0.0
    for start in range(0, N, chunk_rows):
        rows = slice(start, min(start + chunk_rows, N))
        h, y, w = hidden[rows], targets[rows], weights[rows]
        n = len(y)
        probs = np.matmul(h, wte.T, out=buffer[:n])  # z: (n, C) @ (C, V) -> (n, V)
        probs -= probs.max(axis=-1, keepdims=True)  # z − max z
        target_logits = probs[np.arange(n), y]  # z_y − max z
        np.exp(probs, out=probs)
        sums = row_sums(probs)  # Σ_j exp(z_j − max z)
        loss -= float(np.dot(w, target_logits - np.log(sums)))  # −Σ w log π(y)
        probs *= (w / sums)[:, None]  # w π
        probs[np.arange(n), y] -= w  # dz = w (π − onehot(y))
        # dEᵀ (C, V) += hᵀ dz: gemm on Fortran-ordered views, β = 1 accumulates in place
        gemm(1.0, h.T, probs.T, beta=1.0, c=dwte_t, trans_b=True, overwrite_c=True)
        np.matmul(probs, wte, out=dhidden[rows])  # dh = dz E: (n, V) @ (V, C) -> (n, C)
    return loss, dhidden
