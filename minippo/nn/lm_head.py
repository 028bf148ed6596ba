"""The LM head and the cross-entropy fused, over chunks of rows: pretraining without (N, V) logits.

For final hidden states h_t (N, C), the tied LM head E (V, C), targets y_t and weights w_t:

    z_t = h_t Eᵀ,   π_t = softmax(z_t),   L = Σ_t w_t · (−log π_t(y_t))
    dL/dz_t = w_t (π_t − onehot(y_t)),   dL/dh = (dL/dz) E,   dL/dE = (dL/dz)ᵀ h

(w_t = 1/n on the n counted positions and 0 on padding gives the mean cross-entropy.)  Read
:func:`lm_head_cross_entropy_reference` first: the plain path, logits → cross-entropy → two products.
At GPT-2's vocabulary (V = 50,257) those logits and their gradient are the largest arrays of a train
step, 2·N·V floats (400 MB at N = 1024), each written and read several times.
:func:`lm_head_cross_entropy` computes the same loss and gradients ``chunk_rows`` rows at a time, as
fused-linear-cross-entropy kernels do: the forward keeps only the loss and log Σ exp z per row; the
backward recomputes a chunk's logits into one (chunk, V) buffer, turns them into their gradient in
place, and uses it for the two products before the next chunk overwrites it.  dE is accumulated by
BLAS itself (gemm with β = 1), so no (V, C) temporary is made per chunk, and it goes straight into the
gradient buffer: nothing of size V·C is held between forward and backward.
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
    """L = Σ_t w_t · (−log softmax(h_t Eᵀ)[y_t]) and its gradients: :func:`lm_head_cross_entropy_forward`
    then :func:`lm_head_cross_entropy_backward`.

    hidden (N, C) and wte (V, C) in one dtype; targets (N,) integer ids in [0, V); weights (N,) in that
    dtype.  Returns ``(L, dhidden)`` with dhidden (N, C), and adds dL/dE into ``dwte`` (V, C).
    Textbook twin: :func:`lm_head_cross_entropy_reference`.
    """
    loss, log_normalizers = lm_head_cross_entropy_forward(hidden, wte, targets, weights, chunk_rows)
    return loss, lm_head_cross_entropy_backward(hidden, wte, targets, weights, log_normalizers, dwte, chunk_rows)


def lm_head_cross_entropy_forward(hidden, wte, targets, weights, chunk_rows=CHUNK_ROWS):
    """``(L, log Σ_j exp z_tj)``: the loss and, per row, the log of the softmax's normaliser -- all that
    backward keeps of the logits (N floats instead of N·V).  One (chunk, V) buffer of logits at a time."""
    N = len(hidden)
    log_normalizers = np.empty(N, dtype=hidden.dtype)
    buffer = np.empty((min(chunk_rows, N), len(wte)), dtype=hidden.dtype)
    loss = 0.0
    for start in range(0, N, chunk_rows):
        rows = slice(start, min(start + chunk_rows, N))
        y, n = targets[rows], rows.stop - rows.start
        logits = np.matmul(hidden[rows], wte.T, out=buffer[:n])  # z: (n, C) @ (C, V) -> (n, V)
        peak = logits.max(axis=-1)  # max z
        target_logits = logits[np.arange(n), y]  # z_y
        logits -= peak[:, None]
        log_normalizers[rows] = peak + np.log(row_sums(np.exp(logits, out=logits)))  # log Σ exp z
        loss -= float(np.dot(weights[rows], target_logits - log_normalizers[rows]))  # −Σ w log π(y)
    return loss, log_normalizers


def lm_head_cross_entropy_backward(hidden, wte, targets, weights, log_normalizers, dwte, chunk_rows=CHUNK_ROWS):
    """dhidden (N, C), adding dE into ``dwte`` (V, C): per chunk the logits again (one product), then
    dz = w (π − onehot(y)) in place with π = exp(z − log Σ exp z), dE += dzᵀ h and dh = dz E.

    Recomputing the logits costs one product of the three; keeping them would cost N·V floats."""
    N = len(hidden)
    gemm = scipy_blas.get_blas_funcs("gemm", (hidden,))
    dwte_t = dwte.T  # (C, V), Fortran-ordered: gemm writes into it in place
    dhidden = np.empty_like(hidden)
    buffer = np.empty((min(chunk_rows, N), len(wte)), dtype=hidden.dtype)
    for start in range(0, N, chunk_rows):
        rows = slice(start, min(start + chunk_rows, N))
        h, y, w, n = hidden[rows], targets[rows], weights[rows], rows.stop - rows.start
        probs = np.matmul(h, wte.T, out=buffer[:n])  # z: (n, C) @ (C, V) -> (n, V)
        probs -= log_normalizers[rows, None]
        np.exp(probs, out=probs)  # π
        probs *= w[:, None]  # w π
        probs[np.arange(n), y] -= w  # dz = w (π − onehot(y))
        # dEᵀ (C, V) += hᵀ dz: gemm on Fortran-ordered views, β = 1 accumulates in place
        gemm(1.0, h.T, probs.T, beta=1.0, c=dwte_t, trans_b=True, overwrite_c=True)
        np.matmul(probs, wte, out=dhidden[rows])  # dh = dz E: (n, V) @ (V, C) -> (n, C)
    return dhidden
