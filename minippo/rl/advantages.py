"""Generalised advantage estimation (GAE) and whitening.

With time running along one axis (control tasks: (T, N), T steps of N parallel episodes; RLHF: (B, T),
B responses of T tokens):

    δ_t = r_t + γ · b_t · V'_t − V_t                  (V'_t: value of the next state)
    A_t = δ_t + γ λ · c_t · A_{t+1}                     returns R_t = A_t + V_t

``b_t`` (bootstrap) is 0 when the episode *terminated* at t (no future reward), 1 otherwise -- a
*truncated* episode (time limit) still bootstraps from the value of its final observation.
``c_t`` (continues) is 0 whenever the episode ended at t for any reason, so advantages never leak
from one episode into the next.  λ = 1 gives Monte Carlo returns minus the baseline; λ = 0 the
one-step TD error.
"""
import numpy as np

from minippo.checks import fraction
from minippo.distributed import LOCAL


def generalized_advantages(rewards, values, next_values, bootstrap, continues, gamma, gae_lambda, time_axis=0):
    """Return (advantages, returns), each shaped like ``rewards``, in the rewards' dtype.

    Time runs along ``time_axis``: 0 for the control tasks' (T, N), 1 for RLHF's batch-major (B, T).
    ``rewards`` must be floating; the other arrays (of its shape) and γ, λ are cast to its dtype.
    """
    gamma, gae_lambda = fraction(gamma, "gamma"), fraction(gae_lambda, "gae_lambda")
    rewards = np.asarray(rewards)
    dtype = rewards.dtype
    if dtype.kind != "f":
        raise TypeError(f"rewards must be floating point, got dtype {dtype}")
    values, next_values, bootstrap, continues = (np.asarray(a).astype(dtype, copy=False)
                                                 for a in (values, next_values, bootstrap, continues))
    deltas = rewards + dtype.type(gamma) * next_values * bootstrap - values
    decay = dtype.type(gamma * gae_lambda) * continues
    advantages = np.empty_like(deltas)
    # views with time first: (T, ...) whatever the layout
    deltas_t, decay_t, advantages_t = (np.moveaxis(a, time_axis, 0) for a in (deltas, decay, advantages))
    running = np.zeros(deltas_t.shape[1:], dtype=dtype)
    for t in reversed(range(deltas_t.shape[0])):  # a loop over time only; every episode at once
        running = deltas_t[t] + decay_t[t] * running
        advantages_t[t] = running
    return advantages, advantages + values


def whiten(values, mask=None, shift_mean=True, eps=1e-8, world=LOCAL):
    """(x − mean) / std over the entries where ``mask`` is true (all entries without a mask).

    Entries outside the mask are set to 0.  With ``shift_mean=False`` only the scale changes.  The mean
    and std are those of the entries of every rank of ``world`` (``minippo.distributed``).
    """
    values = np.asarray(values)
    mask = np.ones(values.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    try:
        mean, std = world.mean_std(values[mask])
    except ValueError:
        raise ValueError("whiten needs at least one entry inside the mask") from None
    centred = values - mean if shift_mean else values
    return np.where(mask, centred / (std + eps), 0.0)
