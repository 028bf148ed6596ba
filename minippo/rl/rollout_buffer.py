"""What one rollout of PPO on control tasks stores, and its GAE targets.

The buffers are time-major, (T, N) = (num_steps, num_envs), and allocated once per run.
"""
from typing import NamedTuple

import numpy as np

from minippo.rl.advantages import generalized_advantages


class RolloutBuffer:
    """Time-major buffers (T = num_steps, N = num_envs) of one rollout, allocated once."""

    def __init__(self, num_steps, num_envs, obs_shape, action_shape, action_dtype, dtype):
        T, N = num_steps, num_envs
        self.obs = np.zeros((T, N, *obs_shape), dtype=dtype)
        self.actions = np.zeros((T, N, *action_shape), dtype=action_dtype)
        self.logprobs = np.zeros((T, N), dtype=dtype)
        self.values = np.zeros((T, N), dtype=dtype)
        self.rewards = np.zeros((T, N), dtype=dtype)
        self.terminations = np.zeros((T, N), dtype=bool)
        self.truncations = np.zeros((T, N), dtype=bool)
        self.final_values = np.zeros((T, N), dtype=dtype)  # V(final_obs), where truncated
        self.last_values = np.zeros(N, dtype=dtype)        # V(s_T), the state after the rollout
        self.episode_ends = np.zeros((T, N), dtype=bool)     # an episode ended here (infos["_episode"]) ...
        self.episode_returns = np.zeros((T, N))              # ... with this return
        self.episode_lengths = np.zeros((T, N), dtype=np.int64)  # ... and this length

    def finished_episodes(self, first_step, steps_per_row):
        """One float64 row (global_step, return, length) per episode that ended in this rollout, in the
        order they ended (step by step, environment by environment); ``global_step`` counts
        ``steps_per_row`` per row of the rollout after ``first_step``.  (Exact: the counts are far below
        2^53.)"""
        rows, envs = np.nonzero(self.episode_ends)  # row-major: in order of time, then of environment
        return np.stack([first_step + (rows + 1) * steps_per_row, self.episode_returns[rows, envs],
                         self.episode_lengths[rows, envs]], axis=1)  # (episodes, 3), float64 as the returns


class Batch(NamedTuple):
    """Flat (T·N) samples for the loss functions."""

    obs: np.ndarray
    actions: np.ndarray
    logprobs: np.ndarray    # log π_old(a|s)
    values: np.ndarray      # V_old(s)
    advantages: np.ndarray
    returns: np.ndarray


def gae_targets(rollout, gamma, gae_lambda, use_critic=True):
    """(advantages, returns) (T, N) of a rollout: GAE with bootstrapping as in ``minippo.rl.ppo``'s
    docstring (step 2).

    ``use_critic=False`` takes V ≡ 0 (with λ = 1: the plain discounted returns-to-go).
    """
    values, final_values, last_values = rollout.values, rollout.final_values, rollout.last_values
    if not use_critic:
        values, final_values, last_values = (np.zeros_like(a) for a in (values, final_values, last_values))
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]  # where the episode ended, values[t+1] belongs to the next episode:
    next_values[-1] = last_values  # replaced by V(final_obs) on truncation, ignored on termination
    next_values = np.where(rollout.truncations, final_values, next_values)
    bootstrap = np.logical_not(rollout.terminations).astype(values.dtype)
    continues = np.logical_not(rollout.terminations | rollout.truncations).astype(values.dtype)
    return generalized_advantages(rollout.rewards, values, next_values, bootstrap, continues, gamma, gae_lambda)
