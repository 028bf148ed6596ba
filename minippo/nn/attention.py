"""Causal multi-head self-attention, forward and backward, with all heads batched.

For one head with queries Q, keys K and values V (rows are positions):

    S = Q Kᵀ / √d + M          (M = 0 where a query may look at a key, −∞-like elsewhere)
    A = softmax(S)             (row-wise)
    Y = A V

and the backward pass, given dY:

    dV = Aᵀ dY,   dA = dY Vᵀ,   dS = A ⊙ (dA − D),   dQ = dS K / √d,   dK = dSᵀ Q / √d

with D = rowsum(dA ⊙ A) = rowsum(dY ⊙ Y) (since Y = A V), which reads hs numbers per query instead of T.

The mask M combines causality (a query never sees later keys) and padding (nobody sees a pad
key).  It is an additive "key bias" built once per batch by :func:`attention_bias` and broadcast
over heads.  Masked scores get ``MASKED_SCORE``, finite, so that exp gives exactly 0 for them
without any NaN; a query with every key masked (a pad query in a left-padded batch) gets P = 0,
output y = 0 and no gradient, whichever shift c the softmax uses (below).

Read :func:`attention_forward_reference` and :func:`attention_backward_reference` first: the
equations above as code, a few lines each.  :func:`attention_forward`, :func:`attention_backward` and
:func:`attention_decode` compute the same, with less work.

How the work is kept small (the T×T score arrays are the only big ones here):

* Causal blocks: queries go in blocks of ``QUERY_BLOCK``, and a block stops at its last query's key
  (:func:`query_blocks`), which skips most of the masked upper triangle.
* Deferred normalisation: the forward keeps P = exp(S − c) and the row sums l = rowsum(P), and
  divides the small output P V by l rather than every entry of P.  Backward uses A = P / l through
  the small arrays dY / l and D / l:  dV = Pᵀ (dY/l),  dS = P ⊙ ((dY/l) Vᵀ − D/l).
* No row max when it is not needed: softmax is the same for any shift c.  The usual c = max_j S_ij
  costs two passes over S; by Cauchy–Schwarz |S_ij| ≤ ‖q_i‖ ‖k_j‖ / √d, so when that bound is below
  ``SAFE_SCORE`` for the whole batch, c = 0 is safe (exp neither overflows nor underflows) and the
  max is skipped.
"""
import math

import numpy as np

from minippo.nn.layers import row_sums

MASKED_SCORE = -1e30
QUERY_BLOCK = 32  # queries per block in causal attention (see query_blocks)
SAFE_SCORE = 60.0  # |S| below this: exp(S) and a sum of up to e²⁸ such terms fit in float32


def attention_bias(query_positions, key_count, key_mask=None, dtype=np.float32):
    """Additive mask for queries at absolute positions ``query_positions`` over keys 0..key_count−1.

    query_positions: (T_q,) ints, the index of each query in the key sequence (its own key included).
    key_mask: optional (B, T_k) array of 0/1, 0 for pad keys.
    Returns (T_q, T_k) without a key mask, else (B, 1, T_q, T_k); 0 where attention is allowed.
    """
    keys = np.arange(key_count)
    causal = keys[None, :] > np.asarray(query_positions)[:, None]  # (T_q, T_k): key in the future
    if key_mask is None:
        blocked = causal
    else:
        blocked = causal[None, None, :, :] | (np.asarray(key_mask) == 0)[:, None, None, :]
    return np.where(blocked, MASKED_SCORE, 0.0).astype(dtype)


def query_blocks(query_count, key_count, causal, block_size=QUERY_BLOCK):
    """Yield ``(rows, keys)``: a slice of query rows and how many keys (from key 0) they may see.

    Without ``causal``: one block, every key.  With ``causal``: the queries are the last
    ``query_count`` of the ``key_count`` positions and never see a later key, so the block of
    queries ending at row r stops at key ``key_count − query_count + r``.  Skipping the keys after
    each block's last query roughly halves the work of a causal pass (5/8 of it with 4 blocks).
    """
    if not causal:
        yield slice(0, query_count), key_count
        return
    offset = key_count - query_count
    for start in range(0, query_count, block_size):
        stop = min(start + block_size, query_count)
        yield slice(start, stop), offset + stop


def transposed_copy(x):
    """(..., T, hs) -> a contiguous (..., hs, T).

    OpenBLAS multiplies by a contiguous Kᵀ about twice as fast as by the transposed view of K (measured
    on the per-head products here), so Q Kᵀ and dY Vᵀ pay for one small copy of K or V.
    """
    return np.ascontiguousarray(x.swapaxes(-1, -2))


def attention_forward_reference(q, k, v, bias):
    """Textbook twin of :func:`attention_forward` and :func:`attention_decode`: Y = softmax(Q Kᵀ/√d + bias) V.

    q (B, nh, T_q, hs), k and v (B, nh, T_k, hs), bias as for :func:`attention_forward` (or None).
    Returns ``(y, att)`` with the whole attention matrix A (B, nh, T_q, T_k).  A query whose keys are
    all masked (a pad query) attends to nothing: y = 0, as in the fast version.  The fast version
    skips the masked blocks, the row max when it is safe, and the division of every entry of A.
    """
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])  # S: (B, nh, T_q, T_k)
    if bias is not None:
        scores = scores + bias
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)  # A = softmax(S), row by row
    if bias is not None:
        att *= (bias == 0).any(axis=-1, keepdims=True)  # a query with no key to see gets A = 0
    return att @ v, att


def attention_backward_reference(dy, q, k, v, att):
    """Textbook twin of :func:`attention_backward`: (dq, dk, dv) from dY and the A of
    :func:`attention_forward_reference`, by the equations of the module docstring with D = rowsum(dA ⊙ A).
    The fast version works on blocks of queries and on the unnormalised P = A · l."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    dv = att.swapaxes(-1, -2) @ dy  # dV = Aᵀ dY
    datt = dy @ v.swapaxes(-1, -2)  # dA = dY Vᵀ
    dscores = att * (datt - (datt * att).sum(axis=-1, keepdims=True))  # dS = A ⊙ (dA − D)
    return dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv  # dQ = dS K/√d, dK = dSᵀ Q/√d


def attention_forward(q, k, v, bias, out=None, causal=False, block_size=QUERY_BLOCK):
    """Y = softmax(Q Kᵀ/√d + bias) V for every batch row and head at once.

    q: (B, nh, T_q, hs); k, v: (B, nh, T_k, hs); bias broadcastable to (B, nh, T_q, T_k), 0 where a query
    may see a key and MASKED_SCORE where not (as :func:`attention_bias` builds it; the max-free softmax
    relies on bias ≤ 0), or None when every query may see every key.  ``causal=True`` promises that the
    bias masks every key after a query's own position (queries being the last T_q positions), so blocks of
    ``block_size`` queries skip those keys.
    Returns ``(y, weights)``: y (B, nh, T_q, hs) and, for backward, one ``(P, 1/l)`` pair per block of
    queries: P (B, nh, rows, keys) the unnormalised weights and 1/l (B, nh, rows, 1), so A = P · (1/l).
    ``out`` may be a (B, nh, T_q, hs) view of the caller's buffer (e.g. of a (B, T, C) array), so that
    the heads are merged by the matrix product itself instead of a transpose copy.
    Textbook twin: :func:`attention_forward_reference`.
    """
    q = q * (1.0 / math.sqrt(q.shape[-1]))  # Q/√d: (B, nh, T_q, hs)
    if out is None:
        out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)
    keys_t = transposed_copy(k)  # Kᵀ: (B, nh, hs, T_k)
    needs_max = max_norm(q) * max_norm(k) >= SAFE_SCORE
    weights = []
    for rows, keys in query_blocks(q.shape[-2], k.shape[-2], causal, block_size):
        scores = q[..., rows, :] @ keys_t[..., :keys]  # (B, nh, rows, hs) @ (B, nh, hs, keys)
        if bias is not None:
            scores += bias[..., rows, :keys]
        if needs_max:  # c = the row max, but never below MASKED_SCORE/2, so a fully masked row keeps P = 0
            scores -= np.maximum(scores.max(axis=-1, keepdims=True), 0.5 * MASKED_SCORE)
        unnormalised = np.exp(scores, out=scores)  # P
        sums = row_sums(unnormalised)[..., None]  # l: (B, nh, rows, 1)
        # l > 0 for every query with a key to look at; one with none (P = 0) gets 1/l := 0, so y = 0
        inverse_sums = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        y_rows = np.matmul(unnormalised, v[..., :keys, :], out=out[..., rows, :])  # (B, nh, rows, hs)
        y_rows *= inverse_sums
        weights.append((unnormalised, inverse_sums))
    return out, weights


def attention_decode(q, keys, values, bias=None):
    """One new query per row and head against all cached keys: y = softmax(q Kᵀ/√d + bias) V.

    q: (B, nh, hs); keys, values: (B, nh, T_k, hs), views of a KV cache; bias: None when the query
    may see every key, else broadcastable to (B, nh, 1, T_k) (padding).  Returns y (B, nh, hs).
    Decoding is inference only: nothing is kept for a backward pass.  The products read each cached
    key and value once, in place (a copy of Kᵀ would cost as much as the product).
    Textbook twin: :func:`attention_forward_reference` with one query.
    """
    scores = (q[:, :, None, :] * (1.0 / math.sqrt(q.shape[-1]))) @ keys.swapaxes(-1, -2)  # (B, nh, 1, T_k)
    if bias is not None:
        scores += bias
    scores -= scores.max(axis=-1, keepdims=True)
    unnormalised = np.exp(scores, out=scores)  # P
    y = unnormalised @ values  # (B, nh, 1, T_k) @ (B, nh, T_k, hs) -> (B, nh, 1, hs)
    y /= row_sums(unnormalised)[..., None]  # A V = P V / l
    return y[:, :, 0]


def max_norm(x):
    """max_i ‖x_i‖ over the last axis of x (..., hs)."""
    return math.sqrt(float(np.einsum("...d,...d->...", x, x).max()))


def attention_backward(dy, q, k, v, y, weights, out=None):
    """Return (dq, dk, dv) given dY (B, nh, T_q, hs) and the forward's q, k, v, output Y and weights.

    ``out`` may be three views (dq, dk, dv) of the caller's buffer to write the gradients into.
    Textbook twin: :func:`attention_backward_reference`.
    """
    dq = np.empty_like(q) if out is None else out[0]
    # every block of queries adds into the keys it saw; contiguous sums (adding into strided views
    # of the caller's buffer costs about 4x more), copied into ``out`` at the end
    dk = np.zeros(k.shape, dtype=k.dtype)
    dv = np.zeros(v.shape, dtype=v.dtype)
    scale = 1.0 / math.sqrt(q.shape[-1])
    q = q * scale  # dK = dSᵀ (Q/√d)
    dy_dot_y = np.einsum("bhqd,bhqd->bhq", dy, y)[..., None]  # D: (B, nh, T_q, 1)
    values_t = transposed_copy(v)  # Vᵀ: (B, nh, hs, T_k)
    start = 0
    for unnormalised, inverse_sums in weights:
        rows, keys = slice(start, start + unnormalised.shape[-2]), unnormalised.shape[-1]
        start = rows.stop
        dy_rows = dy[..., rows, :] * inverse_sums  # dY/l: (B, nh, rows, hs)
        dv[..., :keys, :] += unnormalised.swapaxes(-1, -2) @ dy_rows  # Pᵀ (dY/l): (B, nh, keys, hs)
        dscores = dy_rows @ values_t[..., :keys]  # dA/l: (B, nh, rows, hs) @ (B, nh, hs, keys)
        dscores -= dy_dot_y[..., rows, :] * inverse_sums  # (dA − D)/l ...
        dscores *= unnormalised  # ... dS = P ⊙ (dA − D)/l = A ⊙ (dA − D)
        dq_rows = np.matmul(dscores, k[..., :keys, :], out=dq[..., rows, :])  # (B, nh, rows, hs)
        dq_rows *= scale
        dk[..., :keys, :] += dscores.swapaxes(-1, -2) @ q[..., rows, :]  # (B, nh, keys, rows) @ (B, nh, rows, hs)
    if out is not None:
        out[1][...] = dk
        out[2][...] = dv
        dk, dv = out[1], out[2]
    return dq, dk, dv
