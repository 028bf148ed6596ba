"""Monte Carlo values: V(s) ≈ the mean of sampled discounted returns from s, with a standard error.

``monte_carlo_values`` simulates every episode of every start state at once; ``MRP.monte_carlo``
checks its arguments and calls it.
"""
import math
import warnings
from typing import NamedTuple

import numpy as np

from minippo.mrp.tables import successor_sampler

# The default max_steps makes the neglected tail weight γ^max_steps at most this, but is never
# more than MAX_DEFAULT_STEPS (γ = 1, or γ extremely close to 1).
NEGLIGIBLE_TAIL_WEIGHT = 1e-12
MAX_DEFAULT_STEPS = 100_000


class MonteCarloEstimate(NamedTuple):
    """Per-state Monte Carlo estimate of V: the sample mean of the returns and its standard error."""

    values: np.ndarray
    stderr: np.ndarray


def monte_carlo_values(P, R, gamma, terminal, n_episodes, rng, max_steps):
    """V(s) ≈ (1/n) Σ_i G_i with G_i = Σ_{t < T} γ^t R(s_t), over n = ``n_episodes`` episodes from s_0 = s.

    T is the step at which a terminal state's reward has been collected, or ``max_steps``,
    whichever comes first.  All S·n episodes advance together, one time step per loop
    iteration; each step samples a successor for every running episode with one uniform
    from ``rng``.  Truncation at ``max_steps`` biases the estimate by at most
    γ^max_steps·max|R|/(1 − γ); a RuntimeWarning says so when it may matter
    (γ^max_steps > NEGLIGIBLE_TAIL_WEIGHT).

    Returns ``MonteCarloEstimate(values, stderr)``; stderr is the sample standard deviation of
    the returns divided by √n.
    """
    n_states = len(R)
    sample_successors = successor_sampler(P)
    returns = np.zeros(n_states * n_episodes)
    running = np.arange(returns.size)  # episode ids; episode e starts in state e // n_episodes
    states = running // n_episodes
    discount = 1.0
    for _ in range(max_steps):
        returns[running] += discount * R[states]
        continuing = ~terminal[states]
        running, states = running[continuing], states[continuing]
        if running.size == 0:
            break
        states = sample_successors(states, rng.random(states.size))
        discount *= gamma
    if running.size and gamma**max_steps > NEGLIGIBLE_TAIL_WEIGHT:
        warnings.warn(
            f"{running.size} of {returns.size} episodes were still running after max_steps={max_steps}; "
            f"their truncated returns bias the estimate",
            RuntimeWarning,
            stacklevel=3,  # the caller of MRP.monte_carlo
        )
    returns = returns.reshape(n_states, n_episodes)  # [S·n] -> [S, n]
    return MonteCarloEstimate(returns.mean(axis=1), returns.std(axis=1, ddof=1) / math.sqrt(n_episodes))


def default_max_steps(gamma):
    """Smallest T with γ^T ≤ NEGLIGIBLE_TAIL_WEIGHT, capped at MAX_DEFAULT_STEPS."""
    if gamma == 0:
        return 1
    if gamma == 1:
        return MAX_DEFAULT_STEPS
    return min(MAX_DEFAULT_STEPS, math.ceil(math.log(NEGLIGIBLE_TAIL_WEIGHT) / math.log(gamma)))
