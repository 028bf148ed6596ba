"""Advantages: generalised advantage estimation (GAE), whitening, and the group baselines of RLOO and GRPO.

With time running along one axis (control tasks: (T, N), T steps of N parallel episodes; RLHF: (B, T),
B responses of T tokens):

    δ_t = r_t + γ · b_t · V'_t − V_t                  (V'_t: value of the next state)
    A_t = δ_t + γ λ · c_t · A_{t+1}                     returns R_t = A_t + V_t

``b_t`` (bootstrap) is 0 when the episode *terminated* at t (no future reward), 1 otherwise -- a
*truncated* episode (time limit) still bootstraps from the value of its final observation.
``c_t`` (continues) is 0 whenever the episode ended at t for any reason, so advantages never leak
from one episode into the next.  λ = 1 gives Monte Carlo returns minus the baseline; λ = 0 the
one-step TD error.

Grouped methods sample G responses to each prompt (consecutive rows of the batch) and judge each
response against the others in its group, with no critic:

    RLOO (leave-one-out)   A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j
    GRPO (group-relative)  Â_i = (r_i − mean(r)) / (std(r) + ε)

Since r_i − mean(r) = (G−1)/G · (r_i − mean_{j≠i} r_j), GRPO without the division by the std
(``scale_rewards="none"``, Dr. GRPO) is RLOO's advantage times (G−1)/G.
"""
import numpy as np

from minippo.checks import fraction
from minippo.distributed import LOCAL

SCALE_REWARDS = ("group", "batch", "none")


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


def whiten(values, mask=None, shift_mean=True, eps=1e-8, world=LOCAL, moments=None):
    """(x − mean) / std over the entries where ``mask`` is true (all entries without a mask).

    Entries outside the mask are set to 0.  With ``shift_mean=False`` only the scale changes.  The mean
    and std are those of the entries of every rank of ``world`` (``minippo.distributed``), or ``moments``,
    the pair (mean, std) when it is known already (``World.mean_std_groups`` of several minibatches).
    """
    values = np.asarray(values)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    try:
        mean, std = moments if moments is not None else world.mean_std(values.ravel() if mask is None else values[mask])
    except ValueError:
        raise ValueError("whiten needs at least one entry inside the mask") from None
    centred = values - mean if shift_mean else values
    whitened = centred / (std + eps)
    return whitened if mask is None else np.where(mask, whitened, 0.0)


def leave_one_out_advantages(returns, num_generations):
    """RLOO: A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j, the mean return of the other G − 1 responses of sample i's
    group as its baseline.  ``returns`` (B,) holds B/G groups of G = ``num_generations`` consecutive rows."""
    groups = returns.reshape(-1, num_generations)  # (B,) -> (B/G, G)
    baseline = (groups.sum(axis=1, keepdims=True) - groups) / (num_generations - 1)
    return (groups - baseline).reshape(-1)


def group_advantages(rewards, num_generations, scale_rewards="group", eps=1e-4):
    """GRPO: Â_i = (r_i − mean(r)) / (std(r) + ε), the mean over sample i's group of G = ``num_generations``
    consecutive rows of ``rewards`` (B,), float64.

    ``scale_rewards`` picks the std: ``"group"`` the group's (DeepSeekMath), ``"batch"`` the whole batch's
    (the mean stays the group's), ``"none"`` no division, Â_i = r_i − mean(r) (Dr. GRPO: dividing by
    the group's std weights the prompts that are almost always right or wrong up).  std is the sample
    standard deviation (ddof = 1, as TRL's torch.std); a group whose rewards are all equal gets Â = 0.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    groups = rewards.reshape(-1, num_generations)  # (B,) -> (B/G, G)
    centred = groups - groups.mean(axis=1, keepdims=True)
    if scale_rewards == "group":
        centred = centred / (groups.std(axis=1, ddof=1, keepdims=True) + eps)
    elif scale_rewards == "batch":
        centred = centred / (rewards.std(ddof=1) + eps)
    return centred.reshape(-1)


def zero_std_groups(rewards, num_generations):
    """(B/G,) True for each group of G = ``num_generations`` consecutive rewards that are all equal: its
    group-relative advantages are all 0, so it carries no learning signal."""
    groups = np.asarray(rewards).reshape(-1, num_generations)  # (B,) -> (B/G, G)
    return groups.max(axis=1) == groups.min(axis=1)
