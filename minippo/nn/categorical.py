"""The categorical distribution over tokens (or discrete actions) that a softmax head defines.

For logits z over V choices:

    log π(a) = z_a − log Σ_j exp z_j                     (log-softmax, computed with the true max)
    H(π)     = −Σ_a π(a) log π(a)                          (entropy)

and their gradients with respect to the logits:

    ∂ log π(a) / ∂z = onehot(a) − π                       (so cross-entropy backward is π − onehot(y))
    ∂ H / ∂z        = −π ⊙ (log π + H)

These are what every objective in minippo needs: cross-entropy for pretraining, log-probabilities of
sampled tokens for policy gradients and PPO, and the entropy bonus.  The softmax and the loss are fused:
backward never forms the V×V Jacobian.
"""
import math

import numpy as np

from minippo.nn.layers import row_sums
from minippo.parallel import map_shards, row_shards


def log_softmax(logits):
    """log π = z − max z − log Σ exp(z − max z) along the last axis (a new array)."""
    out = logits - logits.max(axis=-1, keepdims=True)
    out -= np.log(row_sums(np.exp(out)))[..., None]
    return out


def _check_tokens(tokens, vocab_size, name="tokens", allowed_extra=None):
    tokens = np.asarray(tokens)
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {tokens.dtype}")
    bad = (tokens < 0) | (tokens >= vocab_size)
    if allowed_extra is not None:
        bad &= tokens != allowed_extra
    if bad.any():
        raise ValueError(
            f"{name} must be in [0, {vocab_size}); found {tokens[bad].reshape(-1)[0]}"
        )
    return tokens


def token_logprobs_forward(logits, tokens):
    """log π(tokens) for logits (..., V) and integer tokens (...).

    Returns ``(logprobs, log_probs_all)``; the full log-softmax (..., V) is what backward needs.
    """
    tokens = _check_tokens(tokens, logits.shape[-1])
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(f"tokens must have shape {logits.shape[:-1]}, got {tokens.shape}")
    log_probs_all = log_softmax(logits)
    logprobs = np.take_along_axis(log_probs_all, tokens[..., None], axis=-1)[..., 0]
    return logprobs, log_probs_all


def token_logprobs_backward(dlogprobs, tokens, log_probs_all, out=None):
    """dL/dz = dL/dlogπ(a) · (onehot(a) − π).

    ``out`` (..., V) receives dL/dz; it may be ``log_probs_all`` itself when that is not needed again.
    """
    dlogits = np.exp(log_probs_all, out=out)
    dlogits *= -dlogprobs[..., None]
    flat = dlogits.reshape(-1, dlogits.shape[-1])  # a view: (N, V)
    flat[np.arange(flat.shape[0]), np.asarray(tokens).reshape(-1)] += dlogprobs.reshape(-1)
    return dlogits


def without_minus_infinity(log_probs_all):
    """log π with −inf (a token of probability 0, from a −inf logit) replaced by 0, so that π log π takes
    its limit 0 there instead of 0 · (−inf) = NaN.  NaN stays NaN."""
    return np.where(np.isneginf(log_probs_all), 0.0, log_probs_all)


# A −inf logit makes π log π = 0 · (−inf) = NaN.  It is rare, so both functions compute the plain
# formula and redo it with without_minus_infinity only when the (small) result is not finite.
def entropy_forward(log_probs_all):
    """H = −Σ π log π over the last axis, from a log-softmax (..., V)."""
    probs = np.exp(log_probs_all)
    with np.errstate(invalid="ignore"):  # 0 · (−inf): handled just below
        entropy = -np.einsum("...v,...v->...", probs, log_probs_all)
    if not np.isfinite(entropy).all():
        entropy = -np.einsum("...v,...v->...", probs, without_minus_infinity(log_probs_all))
    return entropy


def entropy_backward(dentropy, log_probs_all, entropy):
    """dL/dz = −dL/dH · π ⊙ (log π + H)."""
    dlogits = log_probs_all + entropy[..., None]
    with np.errstate(invalid="ignore"):  # 0 · (−inf): handled just below
        dlogits *= np.exp(log_probs_all)
    if not math.isfinite(float(np.sum(dlogits))):  # one fast read; entries are bounded, so no overflow
        dlogits = without_minus_infinity(log_probs_all) + entropy[..., None]
        dlogits *= np.exp(log_probs_all)
    dlogits *= -dentropy[..., None]
    return dlogits


def cross_entropy_reference(logits, targets, ignore_index=-1):
    """Textbook twin of :func:`cross_entropy` (same arguments and results), for valid targets:
    π = softmax(z), L = −mean over valid t of log π(y_t), dL/dz = (π − onehot(y)) / n on valid positions.
    The fast version takes the log-softmax with matrix-vector sums and fills dlogits in place, in threads."""
    valid = targets != ignore_index  # (...)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)  # π
    y = targets[valid]
    loss = -np.log(probs[valid, y]).mean()
    dlogits = probs * valid[..., None]
    dlogits[valid, y] -= 1.0  # π − onehot(y)
    return float(loss), dlogits / valid.sum()


def cross_entropy(logits, targets, ignore_index=-1):
    """Mean negative log-likelihood  L = −(1/n) Σ_{valid t} log π(y_t)  and its gradient.

    logits (..., V); targets (...) integers, where ``ignore_index`` marks positions that do not count
    (padding).  Returns ``(loss, dlogits)`` with dlogits = (π − onehot(y)) / n on valid positions and
    0 elsewhere, in the logits' dtype.  Shards of rows run in parallel threads (``minippo.parallel``),
    each writing its dlogits in place.  Textbook twin: :func:`cross_entropy_reference`.
    """
    targets = _check_tokens(targets, logits.shape[-1], "targets", allowed_extra=ignore_index)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {logits.shape[:-1]}, got {targets.shape}")
    valid = (targets != ignore_index).reshape(-1)
    count = int(valid.sum())
    if count == 0:
        raise ValueError(f"every target equals ignore_index={ignore_index}; there is nothing to score")
    safe_targets = np.where(valid, targets.reshape(-1), 0)
    weights = valid.astype(logits.dtype) * (-1.0 / count)  # dL/dlogπ(y_t), (N,)
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (N, V)
    dlogits = np.empty(flat_logits.shape, dtype=logits.dtype)

    def shard_loss(_, rows):
        logprobs, log_probs_all = token_logprobs_forward(flat_logits[rows], safe_targets[rows])
        token_logprobs_backward(weights[rows], safe_targets[rows], log_probs_all, out=dlogits[rows])
        return float(np.dot(logprobs, weights[rows]))

    loss = sum(map_shards(shard_loss, row_shards(len(flat_logits))))
    return loss, dlogits.reshape(logits.shape)
