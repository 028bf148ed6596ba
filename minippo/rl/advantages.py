"""Generalised advantage estimation (GAE) and whitening.

With time running along axis 0 (arrays (T, N): T steps of N parallel episodes or sequences):

    δ_t = r_t + γ · b_t · V'_t − V_t                  (V'_t: value of the next state)
    A_t = δ_t + γ λ · c_t · A_{t+1}                     returns R_t = A_t + V_t

``b_t`` (bootstrap) is 0 when the episode *terminated* at t (no future reward), 1 otherwise -- a
*truncated* episode (time limit) still bootstraps from the value of its final observation.
``c_t`` (continues) is 0 whenever the episode ended at t for any reason, so advantages never leak
from one episode into the next.  λ = 1 gives Monte Carlo returns minus the baseline; λ = 0 the
one-step TD error.
"""
import numpy as np

from minippo.checks import is_real


def generalized_advantages(rewards, values, next_values, bootstrap, continues, gamma, lam):
    """Return (advantages, returns), each shaped like ``rewards`` (T, N), in the rewards' dtype.

    ``rewards`` must be floating; the other arrays and γ, λ are cast to its dtype.
    """
    for name, value in (("gamma", gamma), ("lam", lam)):
        if not is_real(value):
            raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    shapes = {np.shape(a) for a in (rewards, values, next_values, bootstrap, continues)}
    if len(shapes) != 1:
        raise ValueError(f"rewards, values, next_values, bootstrap and continues must share one shape, got {shapes}")
    rewards = np.asarray(rewards)
    dtype = rewards.dtype
    if dtype.kind != "f":
        raise TypeError(f"rewards must be floating point, got dtype {dtype}")
    values, next_values, bootstrap, continues = (np.asarray(a).astype(dtype, copy=False)
                                                 for a in (values, next_values, bootstrap, continues))
    deltas = rewards + dtype.type(gamma) * next_values * bootstrap - values
    decay = dtype.type(gamma * lam) * continues
    advantages = np.empty_like(deltas)
    running = np.zeros(deltas.shape[1:], dtype=dtype)
    for t in reversed(range(deltas.shape[0])):  # a loop over time only; every episode at once
        running = deltas[t] + decay[t] * running
        advantages[t] = running
    return advantages, advantages + values


def whiten(values, mask=None, shift_mean=True, eps=1e-8):
    """(x − mean) / std over the entries where ``mask`` is true (all entries without a mask).

    Entries outside the mask are set to 0.  With ``shift_mean=False`` only the scale changes.
    """
    values = np.asarray(values)
    mask = np.ones(values.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    count = mask.sum()
    if count == 0:
        raise ValueError("whiten needs at least one entry inside the mask")
    mean = values[mask].mean()
    std = values[mask].std()
    centred = values - mean if shift_mean else values
    return np.where(mask, centred / (std + eps), 0.0)
