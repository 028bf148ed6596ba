"""The LM head and the cross-entropy fused, over chunks of rows: training without (N, V) logits.

For final hidden states h_t (N, C), the tied LM head E (V, C), targets y_t and weights w_t:

    z_t = h_t Eᵀ,   π_t = softmax(z_t),   L = Σ_t w_t · (−log π_t(y_t))
    dL/dz_t = w_t (π_t − onehot(y_t)),   dL/dh = (dL/dz) E,   dL/dE = (dL/dz)ᵀ h

(w_t = 1/n on the n counted positions and 0 on padding gives the mean cross-entropy.)  Read
:func:`lm_head_cross_entropy_reference` first: the plain path, logits → cross-entropy → two products.
At GPT-2's vocabulary (V = 50,257) those logits and their gradient are the largest arrays of a train
step, 2·N·V floats (400 MB at N = 1024), each written and read several times.
:func:`lm_head_cross_entropy` computes the same loss and both gradients ``chunk_rows`` rows at a time
in one pass, as fused-linear-cross-entropy kernels do: a chunk's logits go into one (chunk, V) buffer,
become their gradient there, and serve the two products before the next chunk overwrites them.  The
gradient is made with the loss (the loss is the end of the graph, so dL/dz is known as soon as the
chunk's softmax is), which costs three products instead of the four a forward-then-recompute would.

The vocabulary is split into one contiguous slice per thread (``minippo.parallel``): each thread
computes its slice of every product, its own rows of dE and a partial dh, with one-thread BLAS calls
on large shapes; the slices meet twice per chunk (the softmax's normaliser, and the sum of the partial
dh in slice order, so the result does not depend on timing).  dE is accumulated ``VOCAB_BLOCK`` rows
at a time through a small scratch that stays in cache (:func:`add_transposed_product`), so no (V, C)
temporary is made.
"""
import numpy as np

from minippo.nn.layers import row_sums
from minippo.parallel import map_shards, row_shards

CHUNK_ROWS = 512  # rows per chunk: a (512, 50257) float32 buffer is 103 MB
VOCAB_BLOCK = 2048  # rows of dE per product in add_transposed_product: a (2048, 768) float32 scratch is 6 MB


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


def add_transposed_product(out, a, b, scratch):
    """``out += aᵀ b`` for out (V, C), a (n, V), b (n, C), ``len(scratch)`` rows of ``out`` at a time.

    NumPy's matmul cannot accumulate into ``out`` (BLAS's β = 1), so each block's product goes into
    ``scratch`` (rows, C), small enough to stay in cache for the ``+=``.  (SciPy's gemm can accumulate,
    but its OpenBLAS runs calls from several threads one after another: the two vocabulary slices'
    products took 470 ms together against 235 ms for one, at 124M with 1,024 rows.)
    Textbook twin: ``out += a.T @ b``."""
    for start in range(0, len(out), len(scratch)):
        block = slice(start, min(start + len(scratch), len(out)))
        product = np.matmul(a[:, block].T, b, out=scratch[:block.stop - block.start])  # (V_b, n) @ (n, C)
        out[block] += product


def lm_head_cross_entropy(hidden, wte, targets, weights, dwte, chunk_rows=CHUNK_ROWS):
    """L = Σ_t w_t · (−log softmax(h_t Eᵀ)[y_t]) and its gradients, in one pass over chunks of rows.

    hidden (N, C) and wte (V, C) in one dtype; targets (N,) integer ids in [0, V); weights (N,) in that
    dtype.  Returns ``(L, dhidden)`` with dhidden (N, C), and adds dL/dE into ``dwte`` (V, C, C-ordered).
    Per chunk and vocabulary slice j: z_j = h E_jᵀ and e_j = exp(z_j − m_j) with m_j the row max of the
    slice; the normaliser log Σ_j exp z = M + log Σ_j exp(m_j − M) Σ e_j (M = max_j m_j); then
    dz_j = w (e_j exp(m_j − log Σ exp z) − onehot_j(y)), dE_j += dz_jᵀ h and dh = Σ_j dz_j E_j.
    Textbook twin: :func:`lm_head_cross_entropy_reference`.
    """
    N, V = len(hidden), len(wte)
    slices = row_shards(V)  # one slice of the vocabulary per thread
    buffers = [np.empty((min(chunk_rows, N), s.stop - s.start), dtype=hidden.dtype) for s in slices]
    partial_dh = [np.empty((min(chunk_rows, N), hidden.shape[1]), dtype=hidden.dtype) for _ in slices]
    scratch = [np.empty((min(VOCAB_BLOCK, s.stop - s.start), hidden.shape[1]), dtype=hidden.dtype)
               for s in slices]
    dhidden = np.empty_like(hidden)
    loss = 0.0
    for start in range(0, N, chunk_rows):
        rows = slice(start, min(start + chunk_rows, N))
        h, y, w, n = hidden[rows], targets[rows], weights[rows], rows.stop - rows.start

        def exp_logits(j, vocab):  # e_j = exp(z_j − m_j) in slice j's buffer; (m_j, Σ e_j, z_y where y is in j)
            z = np.matmul(h, wte[vocab].T, out=buffers[j][:n])  # z_j: (n, C) @ (C, V_j) -> (n, V_j)
            inside = (y >= vocab.start) & (y < vocab.stop)
            target_logits = np.where(inside, z[np.arange(n), np.where(inside, y - vocab.start, 0)], 0.0)
            peak = z.max(axis=-1)  # m_j
            z -= peak[:, None]
            return peak, row_sums(np.exp(z, out=z)), target_logits

        parts = map_shards(exp_logits, slices)
        peak = np.max([p for p, _, _ in parts], axis=0)  # M: (n,)
        log_normalizers = peak + np.log(sum(s * np.exp(p - peak) for p, s, _ in parts))  # log Σ exp z
        target_logits = sum(t for _, _, t in parts)  # z_y (each y lies in one slice)
        loss -= float(np.dot(w, target_logits - log_normalizers))  # −Σ w log π(y)

        def gradient(j, vocab):  # dz_j in place, dE_j += dz_jᵀ h, dh_j = dz_j E_j
            dz = buffers[j][:n]
            dz *= (w * np.exp(parts[j][0] - log_normalizers))[:, None]  # w π_j = w e_j exp(m_j − log Σ exp z)
            inside = np.flatnonzero((y >= vocab.start) & (y < vocab.stop))
            dz[inside, y[inside] - vocab.start] -= w[inside]  # − w onehot(y)
            add_transposed_product(dwte[vocab], dz, h, scratch[j])  # dE_j += dz_jᵀ h
            np.matmul(dz, wte[vocab], out=partial_dh[j][:n])  # dz_j E_j: (n, V_j) @ (V_j, C) -> (n, C)

        map_shards(gradient, slices)
        dhidden[rows] = partial_dh[0][:n]
        for partial in partial_dh[1:]:  # Σ_j dz_j E_j in slice order
            dhidden[rows] += partial[:n]
    return loss, dhidden
