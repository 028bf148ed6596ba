"""Monte Carlo values: V(s) ≈ the mean of sampled discounted returns from s, with a standard error.

``monte_carlo_values`` simulates the episodes of every start state together, a chunk at a time, and
keeps running sums; ``MRP.monte_carlo`` checks its arguments and calls it.
"""
import math
from typing import NamedTuple

import numpy as np

from minippo.mrp.tables import successor_sampler

# The default max_steps makes the neglected tail weight γ^max_steps at most this, but is never
# more than MAX_DEFAULT_STEPS (γ = 1, or γ extremely close to 1).
NEGLIGIBLE_TAIL_WEIGHT = 1e-12
MAX_DEFAULT_STEPS = 100_000
# Episodes (over all start states) simulated together: the arrays of a chunk hold about this many
# numbers, whatever the number of episodes asked for ...
CHUNK_EPISODES = 1 << 18
# ... and fewer when episodes may be long: a chunk runs at most this many episode-steps (a few seconds),
# so that progress lines and time limits come between chunks
CHUNK_STEPS = 1 << 26


class MonteCarloEstimate(NamedTuple):
    """Per-state Monte Carlo estimate of V: the sample mean of the returns and its standard error, from
    ``n_episodes`` episodes per state, of which ``truncated[s]`` were cut at max_steps."""

    values: np.ndarray
    stderr: np.ndarray
    n_episodes: int = 0
    truncated: np.ndarray = None


def monte_carlo_values(P, R, gamma, terminal, n_episodes, rng, max_steps, watch=None):
    """V(s) ≈ (1/n) Σ_i G_i with G_i = Σ_{t < T} γ^t R(s_t), over n = ``n_episodes`` episodes from s_0 = s.

    T is the step at which a terminal state's reward has been collected, or ``max_steps``,
    whichever comes first; truncation biases the estimate by at most γ^max_steps·max|R|/(1 − γ).

    The episodes run in chunks (``simulate_returns``) of about CHUNK_EPISODES, fewer when max_steps
    is large (at most CHUNK_STEPS episode-steps), and only running sums are kept: per state the
    count, the mean and M2 = Σ (G_i − mean)², merged chunk by chunk (``merge_moments``), so memory
    stays bounded for any ``n_episodes``.  ``watch(episodes_done)``, called after each chunk, may
    print progress and return True to stop early (e.g. at a time limit); the estimate then uses the
    episodes done (a chunk holds 2 per state at least).

    Returns ``MonteCarloEstimate``; stderr is the sample standard deviation of the returns divided by √n.
    """
    n_states = len(R)
    sample_successors = successor_sampler(P)
    per_chunk = max(2, min(CHUNK_EPISODES, CHUNK_STEPS // max_steps) // n_states)
    done, mean, m2 = 0, np.zeros(n_states), np.zeros(n_states)
    truncated = np.zeros(n_states, dtype=np.int64)
    while done < n_episodes:
        count = min(per_chunk, n_episodes - done)
        returns, cut = simulate_returns(sample_successors, R, gamma, terminal, count, rng, max_steps)
        done, mean, m2 = merge_moments(done, mean, m2, returns)
        truncated += cut
        if watch is not None and watch(done):
            break
    return MonteCarloEstimate(mean, np.sqrt(m2 / (done - 1)) / math.sqrt(done), done, truncated)


def merge_moments(count, mean, m2, sample):
    """The running (count, mean, M2) of ``count`` numbers, updated with the numbers of ``sample`` along its
    last axis (Chan, Golub and LeVeque):

        n = n_a + n_b,   mean = mean_a + δ·n_b/n,   M2 = M2_a + M2_b + δ²·n_a·n_b/n,   δ = mean_b − mean_a

    where M2 = Σ (x − mean)², so the sample variance is M2/(n − 1).  Exact for the first sample (count 0).
    """
    k = sample.shape[-1]
    sample_mean = sample.mean(axis=-1)
    sample_m2 = ((sample - sample_mean[..., None]) ** 2).sum(axis=-1)
    if count == 0:
        return k, sample_mean, sample_m2
    delta, total = sample_mean - mean, count + k
    return total, mean + delta * (k / total), m2 + sample_m2 + delta**2 * (count * k / total)


def simulate_returns(sample_successors, R, gamma, terminal, n_episodes, rng, max_steps):
    """The returns of ``n_episodes`` episodes from every state, an (S, n) array, and per state how many
    were still running after ``max_steps`` steps.

    All S·n episodes advance together, one time step per loop iteration; each step samples a successor
    for every running episode with one uniform from ``rng``.
    """
    n_states = len(R)
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
    cut = np.bincount(running // n_episodes, minlength=n_states)
    return returns.reshape(n_states, n_episodes), cut  # [S·n] -> [S, n]


def default_max_steps(gamma):
    """Smallest T with γ^T ≤ NEGLIGIBLE_TAIL_WEIGHT, capped at MAX_DEFAULT_STEPS."""
    if gamma == 0:
        return 1
    if gamma == 1:
        return MAX_DEFAULT_STEPS
    return min(MAX_DEFAULT_STEPS, math.ceil(math.log(NEGLIGIBLE_TAIL_WEIGHT) / math.log(gamma)))
