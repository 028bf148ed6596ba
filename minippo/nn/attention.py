"""Causal multi-head self-attention, forward and backward, with all heads batched.

For one head with queries Q, keys K and values V (rows are positions):

    S = Q Kᵀ / √d + M          (M = 0 where a query may look at a key, −∞-like elsewhere)
    A = softmax(S)             (row-wise)
    Y = A V

and the backward pass, given dY:

    dV = Aᵀ dY,   dA = dY Vᵀ,   dS = A ⊙ (dA − rowsum(dA ⊙ A)),   dQ = dS K / √d,   dK = dSᵀ Q / √d

The mask M combines causality (a query never sees later keys) and padding (nobody sees a pad
key).  It is an additive "key bias" built once per batch by :func:`attention_bias` and broadcast
over heads.  Masked scores get ``MASKED_SCORE`` (finite, so a row with every key masked -- a pad
query in a left-padded batch -- yields a harmless uniform row instead of NaN; its output is never
used).  exp(MASKED_SCORE − max) is exactly 0 in float32 and float64, so real tokens are untouched.
"""
import math

import numpy as np

MASKED_SCORE = -1e30


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


def attention_forward(q, k, v, bias, out=None):
    """Y = softmax(Q Kᵀ/√d + bias) V for every batch row and head at once.

    q: (B, nh, T_q, hs); k, v: (B, nh, T_k, hs); bias broadcastable to (B, nh, T_q, T_k), or None when
    every query may see every key.
    Returns ``(y, att)``: y (B, nh, T_q, hs) and the attention weights A that backward needs.
    ``out`` may be a (B, nh, T_q, hs) view of the caller's buffer (e.g. of a (B, T, C) array), so that
    the heads are merged by the matrix product itself instead of a transpose copy.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q * scale) @ k.swapaxes(-1, -2)  # (B, nh, T_q, hs) @ (B, nh, hs, T_k) -> (B, nh, T_q, T_k)
    if bias is not None:
        scores += bias
    scores -= scores.max(axis=-1, keepdims=True)  # the true row max, for a stable exp
    att = np.exp(scores, out=scores)
    att /= att.sum(axis=-1, keepdims=True)
    y = np.matmul(att, v, out=out)  # (B, nh, T_q, T_k) @ (B, nh, T_k, hs) -> (B, nh, T_q, hs)
    return y, att


def attention_backward(dy, q, k, v, att, out=None):
    """Return (dq, dk, dv) given dY (B, nh, T_q, hs) and the forward's q, k, v and A.

    ``out`` may be three views (dq, dk, dv) of the caller's buffer to write the gradients into.
    """
    dq_out, dk_out, dv_out = (None, None, None) if out is None else out
    scale = 1.0 / math.sqrt(q.shape[-1])
    dv = np.matmul(att.swapaxes(-1, -2), dy, out=dv_out)  # (B, nh, T_k, T_q) @ (B, nh, T_q, hs) -> (B, nh, T_k, hs)
    dscores = dy @ v.swapaxes(-1, -2)  # dA: (B, nh, T_q, T_k)
    dscores -= np.einsum("bhqk,bhqk->bhq", dscores, att)[..., None]  # softmax backward ...
    dscores *= att  # ... dS = A ⊙ (dA − rowsum(dA ⊙ A))
    dscores *= scale
    dq = np.matmul(dscores, k, out=dq_out)  # (B, nh, T_q, T_k) @ (B, nh, T_k, hs) -> (B, nh, T_q, hs)
    dk = np.matmul(dscores.swapaxes(-1, -2), q, out=dk_out)  # (B, nh, T_k, T_q) @ (B, nh, T_q, hs) -> (B, nh, T_k, hs)
    return dq, dk, dv
