"""An environment that samples episodes from a finite MDP given by its tables.

The MDP is any object with

* ``P`` -- transition probabilities ``P[a][s, s'] = Pr(s' | s, a)``: an ``(A, S, S)`` array or a
  sequence of ``A`` ``(S, S)`` matrices (dense or ``scipy.sparse``);
* ``R`` -- an ``(S, A)`` array, ``R[s, a]`` the reward for taking action ``a`` in state ``s``;
* ``n_states == S`` and ``n_actions == A``

(``minippo.mrp.MDP`` is one; a ``types.SimpleNamespace`` with these attributes is another).

One step from state ``s`` with action ``a`` pays ``R[s, a]`` and moves to ``s' ~ P[a][s, ·]``.  A
row ``P[a][s, ·]`` that sums to 0 marks ``s`` as terminal for ``a``: the reward ``R[s, a]`` is
collected and the episode terminates (the final observation is ``s`` itself).  Every other row
must sum to 1.

The observation is the one-hot vector of the state (float32, shape ``(S,)``), so that the same
MLP policies as for CartPole apply; ``env.state`` holds the state indices ``(num_envs,)``.

**Sampling all sub-environments at once (inverse CDF).**  The ``A·S`` rows are stacked into one
sparse matrix (row ``a·S + s``) whose non-zeros are laid out row after row; ``C`` is the running
sum of all those probabilities, with ``C[0] = 0``.  Row ``r`` owns entries ``start..end-1``, so its
CDF runs from ``C[start]`` to ``C[end]``.  With ``u ~ U[0, 1)``, the sampled entry is the ``k`` with
``C[k] <= C[start] + u (C[end] - C[start]) < C[k+1]``: one ``searchsorted`` for every
sub-environment, whatever its row, and dense and sparse MDPs share the code.
"""
import numpy as np
import scipy.sparse

from minippo.checks import is_integer
from minippo.envs.spaces import Box, Discrete
from minippo.envs.vector_env import VectorEnv

ROW_SUM_TOLERANCE = 1e-8


def stack_transition_rows(P, n_states, n_actions):
    """``P`` as one CSR matrix of shape ``(A·S, S)``: row ``a·S + s`` is ``P[a][s, ·]``.

    Checks shapes, finiteness, non-negativity and that every row sums to 0 or 1.
    """
    if len(P) != n_actions:
        raise ValueError(f"mdp.P must hold n_actions={n_actions} matrices, got {len(P)}")
    blocks = []
    for action, matrix in enumerate(P):
        block = scipy.sparse.csr_array(matrix, dtype=np.float64)
        if block.shape != (n_states, n_states):
            raise ValueError(
                f"mdp.P[{action}] must have shape (n_states, n_states)=({n_states}, {n_states}), "
                f"got {block.shape}"
            )
        blocks.append(block)
    rows = scipy.sparse.vstack(blocks, format="csr")
    if not np.isfinite(rows.data).all() or (rows.data < 0).any():
        raise ValueError("mdp.P must contain finite, non-negative probabilities")
    rows.eliminate_zeros()
    rows.sort_indices()
    row_sums = np.asarray(rows.sum(axis=1)).ravel()
    bad = ~((row_sums == 0) | (np.abs(row_sums - 1) <= ROW_SUM_TOLERANCE))
    if bad.any():
        action, state = divmod(int(np.flatnonzero(bad)[0]), n_states)
        raise ValueError(
            f"each row mdp.P[a][s, :] must sum to 1 (or 0 for a terminal state); "
            f"P[{action}][{state}, :] sums to {row_sums[bad][0]!r}"
        )
    return rows


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
    if abs(distribution.sum() - 1) > ROW_SUM_TOLERANCE:
        raise ValueError(f"initial_state distribution must sum to 1, got {distribution.sum()!r}")
    return distribution / distribution.sum()


class TabularMDPEnv(VectorEnv):
    """``num_envs`` copies of a finite MDP (see the module docstring), observed as one-hot vectors."""

    def __init__(self, mdp, num_envs=1, initial_state=None, max_episode_steps=None, seed=None):
        missing = [name for name in ("P", "R", "n_states", "n_actions") if not hasattr(mdp, name)]
        if missing:
            raise TypeError(f"mdp must have attributes P, R, n_states and n_actions; missing {missing}")
        n_states, n_actions = int(mdp.n_states), int(mdp.n_actions)
        rewards = np.asarray(mdp.R, dtype=np.float64)
        if rewards.shape != (n_states, n_actions):
            raise ValueError(
                f"mdp.R must have shape (n_states, n_actions)=({n_states}, {n_actions}), got {rewards.shape}"
            )
        if not np.isfinite(rewards).all():
            raise ValueError("mdp.R must be finite")
        super().__init__(
            num_envs, Box(0.0, 1.0, shape=(n_states,)), Discrete(n_actions), seed, max_episode_steps
        )
        self.n_states = n_states
        self.rewards = rewards
        self.initial_distribution = initial_distribution(initial_state, n_states)
        rows = stack_transition_rows(mdp.P, n_states, n_actions)
        self._row_starts = rows.indptr
        # A terminal row owns no entries; its gather in _advance reads entry start-1 (-1 when
        # start is 0) and np.where discards it.  The spare last entry keeps that read in bounds
        # even when every row is terminal (a bandit).
        self._next_states = np.append(rows.indices, 0)
        self._cumulative = np.concatenate([[0.0], np.cumsum(rows.data)])
        self.state = np.zeros(self.num_envs, dtype=np.int64)
        self._env_index = np.arange(self.num_envs)

    def _advance(self, actions):
        rewards = self.rewards[self.state, actions]
        row = actions * self.n_states + self.state
        start, end = self._row_starts[row], self._row_starts[row + 1]
        terminations = start == end
        target = self._cumulative[start] + self.rng.random(self.num_envs) * (
            self._cumulative[end] - self._cumulative[start]
        )
        entry = np.searchsorted(self._cumulative, target, side="right") - 1
        entry = np.minimum(entry, end - 1)  # rounding can land a hair past the row's last entry
        self.state = np.where(terminations, self.state, self._next_states[entry])
        return rewards, terminations, self._time_limit_reached()

    def _observe(self):
        one_hot = np.zeros((self.num_envs, self.n_states), dtype=np.float32)
        one_hot[self._env_index, self.state] = 1.0
        return one_hot

    def _reset_envs(self, mask):
        self.state[mask] = self.rng.choice(
            self.n_states, size=np.count_nonzero(mask), p=self.initial_distribution
        )
