"""Policy-gradient objectives and their gradients with respect to log-probabilities and values.

Each function returns the loss, the gradient that flows back into the network, and diagnostics.
Means run over the entries where ``mask`` is true (all entries without a mask), so the same code
serves a batch of control-task steps and a batch of response tokens with padding.

REINFORCE (the policy-gradient identity ∇E[R] = E[R(τ) ∇log P(τ)]):

    L = −mean( A_t · log π(a_t|s_t) )                 ∂L/∂log π = −A_t / n

PPO's clipped surrogate, with ratio ρ_t = exp(log π − log π_old):

    L = −mean( min(ρ_t A_t, clip(ρ_t, 1−ε, 1+ε_high) A_t) )        (ε_high = ε unless DAPO's clip-higher)
    ∂L/∂log π = −A_t ρ_t / n  where the unclipped term is the minimum, 0 where the clipped one is

GRPO's loss adds a KL term to the frozen reference, with a per-token estimator KL_t (``minippo.rl.kl``):

    L = Σ_{i,t} w_{i,t} [ −min(ρ A, clip(ρ, 1−ε, 1+ε_high) A) + β KL_t ]

How per-token losses ℓ_{i,t} of a batch of B responses o_i are summed into one number is the
``loss_type`` (:func:`loss_weights`); "dapo" is the token mean every loss here uses by default.

PPO's clipped value loss, with v_clip = v_old + clip(v − v_old, −ε_v, ε_v):

    L = ½ mean( max((v − R)², (v_clip − R)²) )

The array arguments of one call must share one shape (nothing is broadcast) and a clip coefficient,
when given, must be a finite ε > 0.
"""
import math
from typing import NamedTuple

import numpy as np

from minippo.checks import positive
from minippo.rl.kl import kl_estimate, kl_estimate_backward

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


class RatioStats(NamedTuple):
    approx_kl: float      # mean((ρ − 1) − log ρ), a non-negative estimate of KL(π_old ‖ π)
    clipfrac_low: float   # fraction of entries with ρ < 1 − ε
    clipfrac_high: float  # fraction of entries with ρ > 1 + ε_high


class PolicyLoss(NamedTuple):
    loss: float
    dlogprobs: np.ndarray
    approx_kl: float
    clipfrac_low: float
    clipfrac_high: float

    @property
    def clipfrac(self):
        """Fraction of entries outside the clip range [1 − ε, 1 + ε_high]."""
        return self.clipfrac_low + self.clipfrac_high


def _check_same_shape(**arrays):
    """Raise a ValueError naming the first array whose shape differs from the first one's."""
    (first_name, first), *others = arrays.items()
    for name, array in others:
        if np.shape(array) != np.shape(first):
            raise ValueError(f"{name} must have the shape of {first_name} {np.shape(first)}, got {np.shape(array)}")


def _weights(shape, mask, dtype, loss_type="dapo", max_length=None):
    """:func:`loss_weights` of ``mask`` (all entries when None), checked against ``shape``."""
    mask = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {mask.shape}")
    if not mask.any():
        raise ValueError("the mask selects no entries; there is nothing to average")
    return loss_weights(mask, loss_type, max_length, dtype)


def _loss_and_token_weights(shape, mask, dtype, loss_type="dapo", max_length=None):
    """(:func:`_weights` of ``loss_type``, :func:`_weights` of "dapo", the token means); without a mask the
    token means are one number 1/n, the same as an array of them in every product."""
    if mask is None and loss_type == "dapo":
        if math.prod(shape) == 0:
            raise ValueError("the mask selects no entries; there is nothing to average")
        weight = dtype.type(1.0 / math.prod(shape))  # as loss_weights: 1 · (1/n), rounded to dtype
        return weight, weight
    weights = _weights(shape, mask, dtype, loss_type, max_length)
    return weights, weights if loss_type == "dapo" else _weights(shape, mask, dtype)


def loss_weights(mask, loss_type="dapo", max_length=None, dtype=np.float64):
    """Weights w (B, T) that sum the per-token losses ℓ_{i,t} of B responses o_i into L = Σ_{i,t} w_{i,t} ℓ_{i,t},
    0 outside ``mask`` (for ``"dapo"`` any shape of mask will do):

        grpo      w = 1 / (B · |o_i|)          mean over each response's tokens, then over the responses
        dr_grpo   w = 1 / (B · max_length)     token sum over a constant (max_length: the length limit)
        dapo      w = 1 / Σ_i |o_i|            mean over all tokens of the batch

    Length bias: "grpo" gives each response the same total weight, so a token of a long response counts
    less -- a wrong (A < 0) answer is penalised less per token the longer it is and a right one rewarded
    more the shorter it is, which lengthens wrong answers (Dr. GRPO, Liu et al. 2025).  "dr_grpo" weighs
    every token alike whatever the lengths (no length bias; the gradient's scale falls when responses
    are short).  "dapo" also weighs every token alike within a batch, but the normaliser is the batch's
    token count, so a batch of long responses gets smaller steps per token.
    """
    weights = mask.astype(dtype)
    if loss_type == "dapo":
        weights *= 1.0 / int(mask.sum())  # a Python float: the weights stay in dtype
    elif loss_type == "grpo":
        weights *= (1.0 / (len(mask) * np.maximum(mask.sum(axis=1), 1)))[:, None]  # in place: dtype kept
    else:  # dr_grpo
        weights *= 1.0 / (len(mask) * (mask.shape[1] if max_length is None else max_length))
    return weights


def ratio_stats(logprobs, old_logprobs, clip_coef, clip_coef_high=None, mask=None):
    """Diagnostics of the ratio ρ = exp(log π − log π_old), means over ``mask``: approx_kl = mean((ρ − 1) − log ρ)
    and the fractions of entries below 1 − ε (clipfrac_low) and above 1 + ε_high (clipfrac_high)."""
    weights = _weights(logprobs.shape, mask, logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    return _ratio_stats(log_ratio, np.exp(log_ratio), weights, clip_coef, clip_coef_high)


def _ratio_stats(log_ratio, ratio, weights, clip_coef, clip_coef_high):
    """:func:`ratio_stats` of log ρ and ρ, given the weights."""
    high = clip_coef if clip_coef_high is None else clip_coef_high
    return RatioStats(float(np.sum(((ratio - 1.0) - log_ratio) * weights)),
                      float(np.sum((ratio < 1.0 - clip_coef) * weights)),
                      float(np.sum((ratio > 1.0 + high) * weights)))


def reinforce_loss(logprobs, advantages, mask=None, loss_type="dapo", max_length=None):
    """L = −Σ w A log π, the mean of −A · log π aggregated by ``loss_type`` (:func:`loss_weights`);
    returns (loss, dL/dlog π)."""
    _check_same_shape(logprobs=logprobs, advantages=advantages)
    weights = _weights(logprobs.shape, mask, logprobs.dtype, loss_type, max_length)
    dlogprobs = -advantages * weights
    return float(np.sum(dlogprobs * logprobs)), dlogprobs.astype(logprobs.dtype, copy=False)


def ppo_policy_loss(logprobs, old_logprobs, advantages, clip_coef, mask=None, clip_coef_high=None,
                    loss_type="dapo", max_length=None):
    """The clipped surrogate objective (see the module docstring), ε_high = ``clip_coef_high`` (None: ε),
    aggregated by ``loss_type`` (:func:`loss_weights`); the diagnostics are token means.

    The numbers of :func:`ppo_policy_loss_reference` in 19 NumPy calls instead of 30 (their fixed cost is
    what counts at a control task's minibatch): each term is computed once, the four that are summed into
    the rows of one buffer, which one product weights and one reduction sums row by row (NumPy sums a row
    as it sums the row alone).  Arguments of mixed dtypes (whose terms have different dtypes) go to the
    reference.
    """
    _check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
    positive(clip_coef, "clip_coef")
    high = clip_coef if clip_coef_high is None else positive(clip_coef_high, "clip_coef_high")
    dtype = logprobs.dtype
    if old_logprobs.dtype != dtype or advantages.dtype != dtype:
        return ppo_policy_loss_reference(logprobs, old_logprobs, advantages, clip_coef, mask, high, loss_type,
                                         max_length)
    weights, token_means = _loss_and_token_weights(logprobs.shape, mask, dtype, loss_type, max_length)
    lower, upper = 1.0 - clip_coef, 1.0 + high
    terms = np.empty((4, *logprobs.shape), dtype)  # min(ρA, clip(ρ)A), (ρ − 1) − log ρ, ρ < 1 − ε, ρ > 1 + ε_high
    log_ratio = logprobs - old_logprobs
    ratio = np.exp(log_ratio)
    clipped = np.minimum(np.maximum(ratio, lower), upper)  # clip(ρ, 1 − ε, 1 + ε_high)
    clipped *= advantages
    unclipped = ratio * advantages
    np.minimum(unclipped, clipped, out=terms[0])
    np.subtract(ratio, 1.0, out=terms[1])
    terms[1] -= log_ratio
    np.less(ratio, lower, out=terms[2])
    np.greater(ratio, upper, out=terms[3])
    if token_means is weights:
        terms *= weights
    else:
        terms[0] *= weights
        terms[1:] *= token_means
    loss, approx_kl, clipfrac_low, clipfrac_high = terms.reshape(4, -1).sum(axis=1).tolist()  # (4, ...) -> (4, n)
    dlogprobs = np.where(unclipped <= clipped, unclipped * -weights, 0.0)  # where the unclipped term is the min
    return PolicyLoss(-loss, dlogprobs, approx_kl, clipfrac_low, clipfrac_high)


def ppo_policy_loss_reference(logprobs, old_logprobs, advantages, clip_coef, mask=None, clip_coef_high=None,
                              loss_type="dapo", max_length=None):
    """:func:`ppo_policy_loss` as the equations read, one array per term (its twin, and its path for
    arguments of mixed dtypes)."""
    high = clip_coef if clip_coef_high is None else clip_coef_high
    weights = _weights(logprobs.shape, mask, logprobs.dtype, loss_type, max_length)
    log_ratio = logprobs - old_logprobs
    ratio = np.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - clip_coef, 1.0 + high) * advantages
    unclipped_is_min = unclipped <= clipped
    loss = -float(np.sum(np.minimum(unclipped, clipped) * weights))
    dlogprobs = np.where(unclipped_is_min, -unclipped * weights, 0.0).astype(logprobs.dtype, copy=False)
    token_means = weights if loss_type == "dapo" else _weights(logprobs.shape, mask, logprobs.dtype)
    return PolicyLoss(loss, dlogprobs, *_ratio_stats(log_ratio, ratio, token_means, clip_coef, high))


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, clip_coef, mask=None, clip_coef_high=None,
              beta=0.0, kl_estimator="k3", loss_type="grpo", max_length=None):
    """L = Σ_{i,t} w_{i,t} [ −min(ρ A, clip(ρ, 1−ε, 1+ε_high) A) + β KL_t ] with the weights of ``loss_type``
    (:func:`loss_weights`) and KL_t the ``kl_estimator`` of KL(π ‖ π_ref) (k3 in DeepSeekMath's GRPO).

    Returns a :class:`PolicyLoss` whose loss and gradient include the KL term; ``ref_logprobs`` is only
    read when β ≠ 0 (it may be None at β = 0).
    """
    policy = ppo_policy_loss(logprobs, old_logprobs, advantages, clip_coef, mask, clip_coef_high, loss_type,
                             max_length)
    if not beta:
        return policy
    _check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    mask = np.ones(logprobs.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    weights = beta * loss_weights(mask, loss_type, max_length, logprobs.dtype)
    kl = kl_estimate(logprobs, ref_logprobs, mask, kl_estimator)
    dlogprobs = policy.dlogprobs + weights * kl_estimate_backward(logprobs, ref_logprobs, mask, kl_estimator)
    return policy._replace(loss=policy.loss + float(np.sum(weights * kl)),
                           dlogprobs=dlogprobs.astype(logprobs.dtype, copy=False))


def value_loss(values, old_values, returns, clip_coef=None, mask=None):
    """½ mean of the squared error, clipped around ``old_values`` when ``clip_coef`` is set.

    Returns (loss, dL/dvalues).  ``old_values`` is only read with ``clip_coef`` (it may be None without).
    """
    _check_same_shape(values=values, returns=returns)
    weights, _ = _loss_and_token_weights(values.shape, mask, values.dtype)
    error = values - returns
    if clip_coef is None:
        return 0.5 * float((error * error * weights).sum()), (error * weights).astype(values.dtype, copy=False)
    _check_same_shape(values=values, old_values=old_values)
    positive(clip_coef, "clip_coef")
    change = values - old_values
    clipped_error = old_values + np.minimum(np.maximum(change, -clip_coef), clip_coef) - returns  # v_clip − R
    squared_error, squared_clipped_error = error * error, clipped_error * clipped_error
    loss = 0.5 * float((np.maximum(squared_error, squared_clipped_error) * weights).sum())
    inside = np.abs(change) < clip_coef  # the clipped branch depends on v only inside the clip range
    dvalues = np.where(squared_error >= squared_clipped_error, error, np.where(inside, clipped_error, 0.0)) * weights
    return loss, dvalues.astype(values.dtype, copy=False)


def explained_variance(predicted, target, mask=None):
    """1 − Var[target − predicted] / Var[target]: 1 is perfect, 0 no better than a constant."""
    _check_same_shape(target=target, predicted=predicted)
    mask = np.ones(np.shape(target), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    target, predicted = np.asarray(target)[mask], np.asarray(predicted)[mask]
    variance = np.var(target)
    return float("nan") if variance == 0 else float(1.0 - np.var(target - predicted) / variance)
