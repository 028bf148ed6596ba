"""An environment that samples episodes from a finite MDP given by its tables.

The MDP is any object with

* ``P`` -- transition probabilities ``P[a][s, s'] = Pr(s' | s, a)``: an ``(A, S, S)`` array or a
  sequence of ``A`` ``(S, S)`` matrices (dense or ``scipy.sparse``);
* ``R`` -- an ``(S, A)`` array, ``R[s, a]`` the reward for taking action ``a`` in state ``s``;
* ``n_states == S`` and ``n_actions == A``

(``minippo.mrp.MDP`` is one; a ``types.SimpleNamespace`` with these attributes is another).

One step from state ``s`` with action ``a`` pays ``R[s, a]`` and moves to ``s' ~ P[a][s, ·]``.
The tables follow the one rule of ``minippo.mrp.tables``, the same as ``MRP`` and ``MDP``:
entries are finite and >= 0, and every row sums to 1 within max(1e-12, S·2.2e-16), or to 0.  A
state whose rows are all zero, under every action, is terminal: the reward ``R[s, a]`` is
collected and the episode terminates (the final observation is ``s`` itself).

The observation is the one-hot vector of the state (float32, shape ``(S,)``), so that the same
MLP policies as for CartPole apply; ``env.state`` holds the state indices ``(num_envs,)`` and
``env.terminal`` the terminal-state mask ``(S,)``.

All sub-environments move at once: the ``A·S`` rows are stacked into one ``(A·S, S)`` table (row
``a·S + s`` is ``P[a][s, ·]``) and ``minippo.mrp.tables.successor_sampler`` draws a successor
for every moving sub-environment with one ``searchsorted`` (inverse CDF), for dense and sparse
MDPs alike.
"""
import numpy as np
import scipy.sparse

from minippo.checks import is_integer
from minippo.envs.spaces import Box, Discrete
from minippo.envs.vector_env import VectorEnv
from minippo.mrp.tables import (
    as_finite_array,
    as_transition_matrix,
    common_terminal_states,
    row_sum_tolerance,
    successor_sampler,
)


def stack_transition_rows(P, n_states, n_actions):
    """``P`` checked by the rule of ``minippo.mrp.tables``, as one CSR matrix of shape ``(A·S, S)``
    (row ``a·S + s`` is ``P[a][s, ·]``), and the terminal-state mask ``(S,)``."""
    if len(P) != n_actions:
        raise ValueError(f"mdp.P must hold n_actions={n_actions} matrices, got {len(P)}")
    matrices = [as_transition_matrix(matrix, f"mdp.P[{action}]") for action, matrix in enumerate(P)]
    for action, matrix in enumerate(matrices):
        if matrix.shape != (n_states, n_states):
            raise ValueError(
                f"mdp.P[{action}] must have shape (n_states, n_states)=({n_states}, {n_states}), "
                f"got {matrix.shape}"
            )
    terminal = common_terminal_states(matrices, None, argument="mdp.P")
    rows = scipy.sparse.vstack([scipy.sparse.csr_array(matrix) for matrix in matrices], format="csr")
    return rows, terminal


def initial_distribution(initial_state, n_states):
    """The initial-state distribution as a probability vector of length ``n_states``.

    ``None`` is uniform over all states, an int ``s`` always starts in ``s``, and an array is
    taken as the distribution itself.
    """
    if initial_state is None:
        return np.full(n_states, 1.0 / n_states)
    if is_integer(initial_state):
        if not 0 <= initial_state < n_states:
            raise ValueError(f"initial_state must be in {{0, ..., {n_states - 1}}}, got {initial_state}")
        distribution = np.zeros(n_states)
        distribution[initial_state] = 1.0
        return distribution
    distribution = np.asarray(initial_state, dtype=np.float64)
    if distribution.shape != (n_states,):
        raise ValueError(
            f"initial_state must be None, a state index or a distribution of shape ({n_states},), "
            f"got shape {distribution.shape}"
        )
    if not np.isfinite(distribution).all() or (distribution < 0).any():
        raise ValueError("initial_state distribution must be finite and non-negative")
    if abs(distribution.sum() - 1) > row_sum_tolerance(n_states):
        raise ValueError(f"initial_state distribution must sum to 1, got {distribution.sum()!r}")
    return distribution / distribution.sum()


class TabularMDPEnv(VectorEnv):
    """``num_envs`` copies of a finite MDP (see the module docstring), observed as one-hot vectors."""

    def __init__(self, mdp, num_envs=1, initial_state=None, max_episode_steps=None, seed=None):
        missing = [name for name in ("P", "R", "n_states", "n_actions") if not hasattr(mdp, name)]
        if missing:
            raise TypeError(f"mdp must have attributes P, R, n_states and n_actions; missing {missing}")
        n_states, n_actions = int(mdp.n_states), int(mdp.n_actions)
        rewards = as_finite_array(mdp.R, "mdp.R", (n_states, n_actions), "one reward per (state, action)")
        super().__init__(
            num_envs, Box(0.0, 1.0, shape=(n_states,)), Discrete(n_actions), seed, max_episode_steps
        )
        self.n_states = n_states
        self.rewards = rewards
        self.initial_distribution = initial_distribution(initial_state, n_states)
        rows, self.terminal = stack_transition_rows(mdp.P, n_states, n_actions)
        self._sample_successors = successor_sampler(rows)
        self.state = np.zeros(self.num_envs, dtype=np.int64)
        self._env_index = np.arange(self.num_envs)

    def _advance(self, actions):
        rewards = self.rewards[self.state, actions]
        terminations = self.terminal[self.state]
        uniforms = self.rng.random(self.num_envs)  # one per sub-environment; a terminating one ignores its own
        moving = ~terminations
        next_state = self.state.copy()
        rows = actions[moving] * self.n_states + self.state[moving]  # row a·S + s of the stacked table
        next_state[moving] = self._sample_successors(rows, uniforms[moving])
        self.state = next_state
        return rewards, terminations, self._time_limit_reached()

    def _observe(self):
        one_hot = np.zeros((self.num_envs, self.n_states), dtype=np.float32)
        one_hot[self._env_index, self.state] = 1.0
        return one_hot

    def _reset_envs(self, mask):
        self.state[mask] = self.rng.choice(
            self.n_states, size=np.count_nonzero(mask), p=self.initial_distribution
        )
