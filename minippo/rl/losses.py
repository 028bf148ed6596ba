"""Policy-gradient objectives and their gradients with respect to log-probabilities and values.

Each function returns the loss, the gradient that flows back into the network, and diagnostics.
Means run over the entries where ``mask`` is true (all entries without a mask), so the same code
serves a batch of control-task steps and a batch of response tokens with padding.

REINFORCE (the policy-gradient identity ∇E[R] = E[R(τ) ∇log P(τ)]):

    L = −mean( A_t · log π(a_t|s_t) )                 ∂L/∂log π = −A_t / n

PPO's clipped surrogate, with ratio ρ_t = exp(log π − log π_old):

    L = −mean( min(ρ_t A_t, clip(ρ_t, 1−ε, 1+ε) A_t) )
    ∂L/∂log π = −A_t ρ_t / n  where the unclipped term is the minimum, 0 where the clipped one is

PPO's clipped value loss, with v_clip = v_old + clip(v − v_old, −ε_v, ε_v):

    L = ½ mean( max((v − R)², (v_clip − R)²) )

The array arguments of one call must share one shape (nothing is broadcast) and a clip coefficient,
when given, must be a finite ε > 0.
"""
from typing import NamedTuple

import numpy as np

from minippo.checks import positive


class PolicyLoss(NamedTuple):
    loss: float
    dlogprobs: np.ndarray
    approx_kl: float  # mean((ρ − 1) − log ρ), a non-negative estimate of KL(π_old ‖ π)
    clipfrac: float   # fraction of entries with |ρ − 1| > ε


def _check_same_shape(**arrays):
    """Raise a ValueError naming the first array whose shape differs from the first one's."""
    (first_name, first), *others = arrays.items()
    for name, array in others:
        if np.shape(array) != np.shape(first):
            raise ValueError(f"{name} must have the shape of {first_name} {np.shape(first)}, got {np.shape(array)}")


def _weights(shape, mask, dtype):
    """1/n on the n counted entries, 0 elsewhere."""
    mask = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {mask.shape}")
    count = int(mask.sum())
    if count == 0:
        raise ValueError("the mask selects no entries; there is nothing to average")
    weights = mask.astype(dtype)
    weights *= 1.0 / count  # a Python float: the weights stay in dtype
    return weights


def reinforce_loss(logprobs, advantages, mask=None):
    """L = −mean(A · log π); returns (loss, dL/dlog π)."""
    _check_same_shape(logprobs=logprobs, advantages=advantages)
    weights = _weights(logprobs.shape, mask, logprobs.dtype)
    dlogprobs = -advantages * weights
    return float(np.sum(dlogprobs * logprobs)), dlogprobs.astype(logprobs.dtype, copy=False)


def ppo_policy_loss(logprobs, old_logprobs, advantages, clip_coef, mask=None):
    """The clipped surrogate objective (see the module docstring)."""
    _check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
    positive(clip_coef, "clip_coef")
    weights = _weights(logprobs.shape, mask, logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    ratio = np.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - clip_coef, 1.0 + clip_coef) * advantages
    unclipped_is_min = unclipped <= clipped
    loss = -float(np.sum(np.minimum(unclipped, clipped) * weights))
    dlogprobs = np.where(unclipped_is_min, -unclipped * weights, 0.0).astype(logprobs.dtype, copy=False)
    approx_kl = float(np.sum(((ratio - 1.0) - log_ratio) * weights))
    clipfrac = float(np.sum((np.abs(ratio - 1.0) > clip_coef) * weights))
    return PolicyLoss(loss, dlogprobs, approx_kl, clipfrac)


def value_loss(values, old_values, returns, clip_coef=None, mask=None):
    """½ mean of the squared error, clipped around ``old_values`` when ``clip_coef`` is set.

    Returns (loss, dL/dvalues).  ``old_values`` is only read with ``clip_coef`` (it may be None without).
    """
    _check_same_shape(values=values, returns=returns)
    weights = _weights(values.shape, mask, values.dtype)
    error = values - returns
    if clip_coef is None:
        return 0.5 * float(np.sum(error * error * weights)), (error * weights).astype(values.dtype, copy=False)
    _check_same_shape(values=values, old_values=old_values)
    positive(clip_coef, "clip_coef")
    change = values - old_values
    clipped_error = old_values + np.clip(change, -clip_coef, clip_coef) - returns
    use_unclipped = error * error >= clipped_error * clipped_error
    loss = 0.5 * float(np.sum(np.maximum(error * error, clipped_error * clipped_error) * weights))
    inside = np.abs(change) < clip_coef  # the clipped branch depends on v only inside the clip range
    dvalues = np.where(use_unclipped, error, np.where(inside, clipped_error, 0.0)) * weights
    return loss, dvalues.astype(values.dtype, copy=False)


def explained_variance(predicted, target, mask=None):
    """1 − Var[target − predicted] / Var[target]: 1 is perfect, 0 no better than a constant."""
    _check_same_shape(target=target, predicted=predicted)
    mask = np.ones(np.shape(target), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    target, predicted = np.asarray(target)[mask], np.asarray(predicted)[mask]
    variance = np.var(target)
    return float("nan") if variance == 0 else float(1.0 - np.var(target - predicted) / variance)
