"""Markov reward processes (MRPs) and Markov decision processes (MDPs), solved exactly.

An MRP is a Markov chain whose states pay rewards.  With transition matrix P (row s
holds P(s'|s)), reward vector R and discount γ ∈ [0, 1], the value of a state is the
expected discounted return V(s) = E[Σ_t γ^t R(s_t) | s_0 = s], which satisfies the
Bellman equation

    V(s) = R(s) + γ Σ_{s'} P(s'|s) V(s'),    i.e.    (I − γP) V = R.

A row of P that sums to 0 is a *terminal* state: its reward is collected and the
episode ends.  ``MRP.solve`` offers four ways to find V (a linear solve, repeated
Bellman backups with a certified error bound, a Krylov solver, and an automatic
choice); ``MRP.monte_carlo`` estimates V by simulation.

An MDP adds actions: P_a(s'|s) and R(s, a).  Fixing a policy turns it into an MRP
(``MDP.evaluate``); the optimal values satisfy V*(s) = max_a [R(s, a) + γ Σ_{s'} P_a(s'|s) V*(s')]
and are found by value iteration or policy iteration.
"""
import collections
import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg

from minippo.checks import is_integer, is_real

METHODS = ("auto", "direct", "iterative", "krylov")

# solve("auto"): LU up to this many states whatever the structure.  A dense LU then takes
# ~0.05 s, and a sparse LU ~0.1 s even when a random graph fills it in completely
# (at 2,000 states that fill-in already costs ~1.5 s, against milliseconds for Krylov).
DIRECT_MAX_STATES = 1_000
# solve("auto"): sparse LU only for "grid-like" P, whose bandwidth in the given state
# order is at most GRID_BANDWIDTH_FACTOR·√S (an n×n grid numbered row by row has
# bandwidth n = √S), and only up to SPARSE_LU_MAX_STATES (a 1000×1000 grid already
# needs about a gigabyte of LU factors).
GRID_BANDWIDTH_FACTOR = 4
SPARSE_LU_MAX_STATES = 1_000_000

# monte_carlo: the default max_steps makes the neglected tail weight γ^max_steps at most
# this, but is never more than MAX_DEFAULT_STEPS (γ = 1, or γ extremely close to 1).
NEGLIGIBLE_TAIL_WEIGHT = 1e-12
MAX_DEFAULT_STEPS = 100_000


class MonteCarloEstimate(NamedTuple):
    """Per-state Monte Carlo estimate of V: the sample mean of the returns and its standard error."""

    values: np.ndarray
    stderr: np.ndarray


class MDPSolution(NamedTuple):
    """Optimal values V*(s) and an optimal deterministic policy (one action index per state)."""

    values: np.ndarray
    policy: np.ndarray


class MRP:
    """A Markov reward process: V(s) = R(s) + γ Σ_{s'} P(s'|s) V(s').

    Arguments:
        P: (S, S) transition matrix, a dense array or any ``scipy.sparse`` matrix/array.
            Entry [s, s'] is P(s'|s).  Each row sums to 1, or to 0 for a terminal state.
        R: (S,) rewards; R(s) is collected on every visit to s (terminal states included).
        gamma: discount γ in [0, 1].  γ = 1 requires every state to reach a terminal
            state with probability 1 (otherwise some values are infinite).
        states: optional names for the states (unique, hashable); default 0, 1, ..., S−1.

    Attributes: ``P`` (float64 ndarray, or ``scipy.sparse.csr_array`` if given sparse),
    ``R``, ``gamma``, ``states`` (tuple of names), ``n_states``, ``terminal`` (bool mask).
    """

    def __init__(self, P, R, gamma, states=None):
        self.P = _as_square_matrix(P, "P")
        self.n_states = self.P.shape[0]
        self.states = _as_names(states, self.n_states, "states")
        self.terminal = _terminal_states(self.P, "P", None if states is None else self.states)
        self.R = _as_finite_array(R, "R", (self.n_states,), "one reward per state")
        self.gamma = _as_gamma(gamma)
        self._index = {name: i for i, name in enumerate(self.states)}
        if self.gamma == 1:
            _require_termination(self.P, self.terminal, self.states)

    @classmethod
    def from_dict(cls, transitions, rewards, gamma):
        """Build an MRP that reads like the math, e.g. ::

            MRP.from_dict(
                {"吃饭": {"喝酒": 0.5, "喝茶": 0.5}, "喝酒": {"醉": 1.0}, "喝茶": {"醒": 1.0}},
                rewards={"吃饭": 6, "喝酒": 3, "喝茶": 5, "醉": 10, "醒": 4},
                gamma=0.8,
            )

        ``transitions[s][s2]`` is P(s2|s).  States are ordered as they first appear
        (keys, then successors).  A state that is not a key, or whose successor dict is
        empty, is terminal.  ``rewards`` must name exactly these states.
        """
        if not isinstance(transitions, dict):
            kind = type(transitions).__name__
            raise TypeError(f"transitions must be a dict {{state: {{next state: probability}}}}; got {kind}")
        if not isinstance(rewards, dict):
            raise TypeError(f"rewards must be a dict {{state: reward}}; got {type(rewards).__name__}")
        rows, columns, probabilities = [], [], []
        for state, successors in transitions.items():
            if not isinstance(successors, dict):
                kind = type(successors).__name__
                raise TypeError(f"transitions[{state!r}] must be a dict {{next state: probability}}; got {kind}")
            for successor, probability in successors.items():
                if not _is_real_number(probability):
                    kind = type(probability).__name__
                    raise TypeError(f"transitions[{state!r}][{successor!r}] must be a probability; got {kind}")
                rows.append(state)
                columns.append(successor)
                probabilities.append(probability)
        states = list(dict.fromkeys([*transitions, *columns]))
        index = {state: i for i, state in enumerate(states)}
        for state in states:
            if state not in rewards:
                raise ValueError(f"rewards has no entry for state {state!r}; every state needs a reward")
            if not _is_real_number(rewards[state]):
                raise TypeError(f"rewards[{state!r}] must be a number; got {type(rewards[state]).__name__}")
        for state in rewards:
            if state not in index:
                raise ValueError(f"rewards names state {state!r}, which does not appear in transitions")
        row_indices, column_indices = [index[s] for s in rows], [index[s] for s in columns]
        P = scipy.sparse.csr_array(
            (np.array(probabilities, dtype=np.float64), (row_indices, column_indices)),
            shape=(len(states), len(states)),
        )
        return cls(P, [rewards[state] for state in states], gamma, states=states)

    def __repr__(self):
        return f"MRP(n_states={self.n_states}, gamma={self.gamma}, n_terminal={int(self.terminal.sum())})"

    # ----------------------------------------------------------------- names
    def index(self, state):
        """Position of the state called ``state`` in P, R and every value array."""
        try:
            return self._index[state]
        except (KeyError, TypeError):
            shown = ", ".join(repr(name) for name in self.states[:10]) + (", ..." if self.n_states > 10 else "")
            raise ValueError(f"unknown state {state!r}; the states are {shown}") from None

    def value(self, state, method="auto"):
        """V(state), found by ``solve(method)``; that solves for every state, so call it once for many."""
        return float(self.solve(method)[self.index(state)])

    def values_by_name(self, method="auto"):
        """{state name: V(state)} from ``solve(method)``."""
        return dict(zip(self.states, self.solve(method).tolist()))

    # ----------------------------------------------------------------- solvers
    def solve(self, method="auto", tol=1e-10):
        """Solve (I − γP) V = R and return V as a float64 array of shape (S,).

        method:
            "direct"     LU factorisation: ``scipy.linalg.solve`` for dense P,
                         ``scipy.sparse.linalg.splu`` for sparse P (exact up to rounding;
                         ``tol`` is unused).  Sparse LU of a random graph fills in
                         catastrophically: use "krylov" there.
            "iterative"  Bellman backups V ← R + γPV until ‖V − V*‖∞ ≤ tol is guaranteed
                         (see ``_certified_value_iteration`` for the bound).
            "krylov"     BiCGSTAB on I − γP with a Jacobi (diagonal) preconditioner,
                         stopped when ‖R − (I − γP)V‖₂ ≤ tol·‖R‖₂.  If BiCGSTAB breaks
                         down (see ``_solve_krylov``), the solve falls back to "direct".
            "auto"       the method ``auto_method()`` names.
        The achieved accuracy is ``residual(V)``.
        """
        method = _as_method(method)
        tol = _as_positive_float(tol, "tol")
        if method == "auto":
            method = self.auto_method()
        if method == "direct":
            return self._solve_direct()
        if method == "iterative":
            return _certified_value_iteration(
                bellman_backup=lambda V: self.R + self.gamma * (self.P @ V),
                survival_backup=lambda q: self.P @ q,
                gamma=self.gamma,
                reward_bound=np.max(np.abs(self.R)),
                n_states=self.n_states,
                tol=tol,
            )
        return self._solve_krylov(tol)

    def auto_method(self):
        """The method ``solve("auto")`` uses, decided from size and sparsity alone.

        - S ≤ DIRECT_MAX_STATES: "direct" (a small LU costs less than any iteration count).
        - dense P: "krylov" (LU costs S³/3, a Krylov iteration only a product with P).
        - sparse P with bandwidth ≤ GRID_BANDWIDTH_FACTOR·√S in the given state order and
          S ≤ SPARSE_LU_MAX_STATES: "direct".  Chains and row-by-row numbered 2-D grids
          qualify; their sparse LU stays small, while these slowly mixing chains are the
          ones that need many Krylov iterations.
        - otherwise "krylov": random graphs mix fast (BiCGSTAB needs a handful of
          iterations) but their LU fills in to a dense matrix.
        The bandwidth is measured in the order you gave; renumber scrambled grids (e.g.
        with ``scipy.sparse.csgraph.reverse_cuthill_mckee``) or pass method="direct".
        """
        S = self.n_states
        if S <= DIRECT_MAX_STATES:
            return "direct"
        if not scipy.sparse.issparse(self.P):
            return "krylov"
        if S <= SPARSE_LU_MAX_STATES and _bandwidth(self.P) <= GRID_BANDWIDTH_FACTOR * math.sqrt(S):
            return "direct"
        return "krylov"

    def residual(self, values):
        """Relative Bellman residual ‖V − R − γPV‖∞ / ‖V‖∞ (the absolute residual when V = 0)."""
        values = _as_finite_array(values, "values", (self.n_states,), "one value per state")
        residual = np.max(np.abs(values - self.R - self.gamma * (self.P @ values)))
        scale = np.max(np.abs(values))
        return float(residual / scale if scale > 0 else residual)

    def _solve_direct(self):
        if scipy.sparse.issparse(self.P):
            system = (scipy.sparse.eye_array(self.n_states) - self.gamma * self.P).tocsc()
            # Minimum degree on the pattern of A + Aᵀ: I − γP is diagonally dominant and
            # usually near-symmetric in pattern, and this ordering halves the fill of a
            # 2-D grid compared with the default COLAMD.
            return scipy.sparse.linalg.splu(system, permc_spec="MMD_AT_PLUS_A").solve(self.R)
        return scipy.linalg.solve(np.eye(self.n_states) - self.gamma * self.P, self.R)

    def _solve_krylov(self, tol):
        S, P, gamma = self.n_states, self.P, self.gamma
        system = scipy.sparse.linalg.LinearOperator((S, S), matvec=lambda V: V - gamma * (P @ V), dtype=float)
        # Jacobi preconditioner: divide by the diagonal 1 − γP(s|s).  It is free, and it
        # rescues chains with large self-loop ("stay") probabilities.  The diagonal is
        # positive: γ = 1 with P(s|s) = 1 is a state that never terminates, rejected above.
        diagonal = 1.0 - gamma * P.diagonal()
        preconditioner = scipy.sparse.linalg.LinearOperator((S, S), matvec=lambda V: V / diagonal, dtype=float)
        values, info = scipy.sparse.linalg.bicgstab(system, self.R, rtol=tol, atol=0.0, M=preconditioner)
        if info < 0:
            # Breakdown: BiCGSTAB divides by r̂₀ᵀr_k, the product of the current residual
            # with the first one (r̂₀ = R), and on deterministic chains and cycles it is
            # exactly 0: each step moves the residual to the predecessors of the states
            # it covered, e.g. from e₀ to e_{S−1} on a cycle with R = e₀.  I − γP is
            # nonsingular (γ < 1, or every state terminates), so an LU always succeeds,
            # and for such permutation-like P it stays about as sparse as P.
            return self._solve_direct()
        if info > 0:
            raise RuntimeError(
                f"BiCGSTAB stopped (scipy info={info}) at relative residual {self.residual(values):.2e} "
                f"without reaching tol={tol}; use method='direct' or 'iterative'"
            )
        return values

    # ----------------------------------------------------------------- simulation
    def monte_carlo(self, n_episodes, seed=None, max_steps=None):
        """Estimate V(s) for every s by simulating ``n_episodes`` episodes from each state.

        The return of an episode s_0, s_1, ... is G = Σ_{t < T} γ^t R(s_t), where T is the
        step at which a terminal state's reward has been collected, or ``max_steps``,
        whichever comes first.  All S·n_episodes episodes advance together, one time step
        per loop iteration.  ``seed`` (an int, a ``numpy.random.Generator`` or None) fixes
        every random number: the same seed gives identical estimates.

        Truncation at ``max_steps`` biases the estimate by at most γ^max_steps·max|R|/(1 − γ).
        The default max_steps makes γ^max_steps ≤ NEGLIGIBLE_TAIL_WEIGHT, capped at
        MAX_DEFAULT_STEPS; when γ = 1 it is only a safety cap (episodes end with probability
        1).  A warning is issued if episodes were cut while γ^max_steps was not negligible.

        Returns ``MonteCarloEstimate(values, stderr)``; stderr is the sample standard
        deviation of the returns divided by √n_episodes.
        """
        n_episodes = _as_int(n_episodes, "n_episodes", minimum=2, why=" (the standard error needs two episodes)")
        if max_steps is None:
            max_steps = _default_max_steps(self.gamma)
        max_steps = _as_int(max_steps, "max_steps", minimum=1)
        rng = np.random.default_rng(seed)
        sample_successors = _successor_sampler(self.P)

        returns = np.zeros(self.n_states * n_episodes)
        running = np.arange(returns.size)  # episode ids; episode e starts in state e // n_episodes
        states = running // n_episodes
        discount = 1.0
        for _ in range(max_steps):
            returns[running] += discount * self.R[states]
            continuing = ~self.terminal[states]
            running, states = running[continuing], states[continuing]
            if running.size == 0:
                break
            states = sample_successors(states, rng)
            discount *= self.gamma
        if running.size and self.gamma**max_steps > NEGLIGIBLE_TAIL_WEIGHT:
            warnings.warn(
                f"{running.size} of {returns.size} episodes were still running after max_steps={max_steps}; "
                f"their truncated returns bias the estimate",
                RuntimeWarning,
                stacklevel=2,
            )
        returns = returns.reshape(self.n_states, n_episodes)
        return MonteCarloEstimate(returns.mean(axis=1), returns.std(axis=1, ddof=1) / math.sqrt(n_episodes))


class MDP:
    """A Markov decision process: V*(s) = max_a [R(s, a) + γ Σ_{s'} P_a(s'|s) V*(s')].

    Arguments:
        P: transition probabilities per action, an (A, S, S) array (P[a][s, s'] = P_a(s'|s))
            or a list of A ``scipy.sparse`` (S, S) matrices.  Every P[a] obeys the MRP
            rules, and a terminal state must have an all-zero row under every action.
        R: (S, A) rewards R(s, a), or (S,) rewards paid whatever the action.
        gamma: discount γ in [0, 1].  γ = 1 requires *every* policy to reach a terminal
            state with probability 1 from every state (the "all policies are proper"
            condition of stochastic shortest-path problems); then the optimal values are
            finite and both value and policy iteration converge.  It is checked by peeling
            off states until none is left that some action keeps away from termination,
            one pass per step of the longest such path.
        states, actions: optional names (unique, hashable).

    Attributes: ``P`` (float64 (A, S, S) ndarray or list of ``csr_array``), ``R`` ((S, A)
    float64), ``gamma``, ``states``, ``actions``, ``n_states``, ``n_actions``, ``terminal``.
    """

    def __init__(self, P, R, gamma, states=None, actions=None):
        self.P = _as_square_matrices(P)
        self.n_actions = len(self.P)
        self.n_states = self.P[0].shape[0]
        self.states = _as_names(states, self.n_states, "states")
        self.actions = _as_names(actions, self.n_actions, "actions", unit="actions")
        self.terminal = _common_terminal_states(self.P, None if states is None else self.states)
        S, A = self.n_states, self.n_actions
        rewards = _as_float_array(R, "R", f"an ({S}, {A}) array of rewards R(s, a), or ({S},) rewards R(s)")
        if rewards.ndim == 1:  # the same reward whatever the action
            rewards = _as_finite_array(rewards, "R", (S,), f"one reward per state, or an ({S}, {A}) array")
            rewards = np.repeat(rewards[:, None], A, axis=1)
        self.R = _as_finite_array(rewards, "R", (S, A), f"one reward per (state, action), or ({S},) per state")
        self.gamma = _as_gamma(gamma)
        if self.gamma == 1:
            _require_proper_policies(self.P, self.terminal, self.states, self.actions)

    def __repr__(self):
        return f"MDP(n_states={self.n_states}, n_actions={self.n_actions}, gamma={self.gamma})"

    def action_values(self, values):
        """Q(s, a) = R(s, a) + γ Σ_{s'} P_a(s'|s) V(s'), an (S, A) array."""
        return self.R + self.gamma * self._expected_next(values)

    def value_iteration(self, tol=1e-10):
        """Optimal values and policy by V ← max_a Q(s, a) until ‖V − V*‖∞ ≤ tol is guaranteed.

        The bound is the MRP one (see ``_certified_value_iteration``) with the
        horizon taken over the worst policy.  The returned policy is greedy for the
        returned values; it is optimal whenever tol is below half the gap between the
        best and second-best action values.
        """
        values = _certified_value_iteration(
            bellman_backup=lambda V: self.action_values(V).max(axis=1),
            survival_backup=lambda q: self._expected_next(q).max(axis=1),
            gamma=self.gamma,
            reward_bound=np.max(np.abs(self.R)),
            n_states=self.n_states,
            tol=_as_positive_float(tol, "tol"),
        )
        return MDPSolution(values, self.action_values(values).argmax(axis=1))

    def policy_iteration(self, method="auto"):
        """Optimal values and policy by alternating evaluation and greedy improvement.

        Start from action 0 everywhere; evaluate the policy exactly (``evaluate(policy)
        .solve(method)``); switch a state to its best action only if that improves Q by
        more than rounding noise (1e-10 relative), so ties cannot cycle; stop when no
        state switches.  Each switch strictly improves the policy, so it terminates.
        """
        policy = np.zeros(self.n_states, dtype=np.int64)
        while True:
            values = self.evaluate(policy).solve(method)
            q = self.action_values(values)
            noise = 1e-10 * max(1.0, np.max(np.abs(values)))
            improves = q.max(axis=1) > q[np.arange(self.n_states), policy] + noise
            if not improves.any():
                return MDPSolution(values, policy)
            policy = np.where(improves, q.argmax(axis=1), policy)

    def evaluate(self, policy):
        """The MRP a policy induces: P_π(s'|s) = Σ_a π(a|s) P_a(s'|s), R_π(s) = Σ_a π(a|s) R(s, a).

        ``policy`` is either deterministic, an int array of one action index per state,
        or stochastic, an (S, A) array whose row s holds π(·|s).
        """
        weights = self._policy_weights(policy)
        R = np.sum(weights * self.R, axis=1)
        if isinstance(self.P, np.ndarray):
            P = np.einsum("sa,ast->st", weights, self.P)
        else:
            P = sum(scipy.sparse.diags_array(weights[:, a]) @ P_a for a, P_a in enumerate(self.P))
        return MRP(P, R, self.gamma, states=self.states)

    def _expected_next(self, values):
        """E[V(s') | s, a] = Σ_{s'} P_a(s'|s) V(s') as an (S, A) array."""
        return np.column_stack([P_a @ values for P_a in self.P])

    def _policy_weights(self, policy):
        """The policy as an (S, A) array of probabilities π(a|s) (one-hot for a deterministic one)."""
        S, A = self.n_states, self.n_actions
        expected = f"an int array of shape ({S},) (one action per state) or a ({S}, {A}) array of probabilities"
        array = np.asarray(policy)
        if array.shape == (S,):
            if array.dtype.kind not in "iu":
                raise TypeError(f"policy must be {expected}; got dtype {array.dtype}")
            bad = np.flatnonzero((array < 0) | (array >= A))
            if bad.size:
                raise ValueError(f"policy[{bad[0]}] = {array[bad[0]]} is not an action index in [0, {A})")
            return np.eye(A)[array]
        weights = _as_finite_array(array, "policy", (S, A), expected)
        bad = np.argwhere(weights < 0)
        if bad.size:
            s, a = bad[0]
            raise ValueError(f"policy[{s}, {a}] = {weights[s, a]} is negative; probabilities must be >= 0")
        sums = weights.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1) > _row_sum_tolerance(A))
        if bad.size:
            s = bad[0]
            raise ValueError(f"row {s} of policy sums to {float(sums[s])}; action probabilities must sum to 1")
        return weights


# --------------------------------------------------------------------- iteration
def _certified_value_iteration(bellman_backup, survival_backup, gamma, reward_bound, n_states, tol):
    """Iterate V_{k+1} = B(V_k) from V_0 = 0 until ‖V_{k+1} − V*‖∞ ≤ tol is guaranteed.

    B is the Bellman backup of an MRP, B(V) = R + γPV, or of an MDP,
    B(V) = max_a [R_a + γP_a V] (then read "P" below as the worst action's).

    The error bound.  Let q_k = (γP)^k 1, the discounted probability of an episode still
    running after k steps, and L_k = Σ_{t<k} q_t.  Because L_k − γP L_k = 1 − q_k, the
    vector U = L_k / (1 − ‖q_k‖∞) satisfies U ≥ 1 + γPU whenever ‖q_k‖∞ < 1, and so
    bounds the expected discounted episode length: (I − γP)^{-1} 1 ≤ U.  With
    H = ‖U‖∞ this gives two guarantees:

        a posteriori   ‖V_{k+1} − V*‖∞ ≤ (H − 1) ‖V_{k+1} − V_k‖∞
                       (from V* − V_{k+1} = γP (I − γP)^{-1} (V_{k+1} − V_k)),
        a priori       ‖V_k − V*‖∞ ≤ ‖q_k‖∞ ‖V*‖∞ ≤ ‖q_k‖∞ H max|R|,

    and we stop as soon as either is ≤ tol.  The a priori bound shrinks geometrically
    even when rounding stalls ‖V_{k+1} − V_k‖∞, so the loop always ends.

    For γ < 1 we do not iterate q: the scalar γ^k bounds it, giving H = 1/(1 − γ) and the
    textbook ‖V_{k+1} − V*‖∞ ≤ γ/(1 − γ) ‖V_{k+1} − V_k‖∞.  For γ = 1 we iterate
    q_{k+1} = Pq_k (``survival_backup``) alongside V; q_k → 0 because every state (every
    policy, for an MDP) reaches termination, which the constructors check.
    """
    values = np.zeros(n_states)
    still_running = 1.0 if gamma < 1 else np.ones(n_states)  # q_k
    expected_length = 0.0  # L_k
    while True:
        expected_length = expected_length + still_running
        next_values = bellman_backup(values)
        still_running = gamma * still_running if gamma < 1 else survival_backup(still_running)
        change = np.max(np.abs(next_values - values))
        values = next_values
        survival = np.max(still_running)
        if survival < 1:
            horizon = np.max(expected_length) / (1 - survival)
            if min((horizon - 1) * change, survival * horizon * reward_bound) <= tol:
                return values


# --------------------------------------------------------------------- simulation helpers
def _successor_sampler(P):
    """A function (states, rng) -> one successor s' ~ P(·|s) for each s, by inverse CDF.

    Every stored entry of row s gets the key s + F_s(j), where F_s(j) is the cumulative
    probability of the row up to and including entry j (so row s ends exactly at s + 1).
    The keys of all rows form one sorted array, and for u ~ Uniform[0, 1) the first key
    greater than s + u is the sampled entry of row s: one ``searchsorted`` for all
    episodes.  Probabilities are resolved to about S·1e-16 (the spacing of floats near S).
    """
    P = scipy.sparse.csr_array(P)  # a validated P stores no zeros: every stored entry is a possible successor
    row_lengths = np.diff(P.indptr)
    row_of_entry = np.repeat(np.arange(P.shape[0]), row_lengths)
    cumulative = np.cumsum(P.data)
    total_before_row = np.concatenate([[0.0], cumulative])[P.indptr[:-1]]
    within_row = cumulative - total_before_row[row_of_entry]
    row_total = np.zeros(P.shape[0])
    nonempty = row_lengths > 0
    row_total[nonempty] = within_row[P.indptr[1:][nonempty] - 1]
    keys = row_of_entry + within_row / row_total[row_of_entry]

    def sample(states, rng):
        entry = np.searchsorted(keys, states + rng.random(states.size), side="right")
        return P.indices[np.minimum(entry, P.indptr[states + 1] - 1)]

    return sample


def _default_max_steps(gamma):
    """Smallest T with γ^T ≤ NEGLIGIBLE_TAIL_WEIGHT, capped at MAX_DEFAULT_STEPS."""
    if gamma == 0:
        return 1
    if gamma == 1:
        return MAX_DEFAULT_STEPS
    return min(MAX_DEFAULT_STEPS, math.ceil(math.log(NEGLIGIBLE_TAIL_WEIGHT) / math.log(gamma)))


def _bandwidth(P):
    """max |s − s'| over stored entries of a canonical CSR matrix (sorted column indices)."""
    rows = np.flatnonzero(np.diff(P.indptr))
    if rows.size == 0:
        return 0
    first_column = P.indices[P.indptr[rows]]
    last_column = P.indices[P.indptr[rows + 1] - 1]
    return int(max(np.max(rows - first_column), np.max(last_column - rows)))


# --------------------------------------------------------------------- validation
def _as_square_matrix(P, argument):
    """A float64 copy of P: an ndarray, or if sparse a canonical ``csr_array`` (sorted, no duplicates or zeros)."""
    expected = "a square (S, S) matrix of transition probabilities (array or scipy.sparse)"
    if scipy.sparse.issparse(P):
        if P.dtype.kind not in "biuf":
            raise TypeError(f"{argument} must be {expected}; got a sparse matrix of dtype {P.dtype}")
        P = scipy.sparse.csr_array(P, dtype=np.float64, copy=True)
        P.sum_duplicates()
        P.eliminate_zeros()
    else:
        P = _as_float_array(P, argument, expected)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] == 0:
        raise ValueError(f"{argument} must be {expected}; got shape {P.shape}")
    return P


def _as_square_matrices(P):
    """Per-action matrices: a float64 (A, S, S) ndarray, or a list of canonical ``csr_array``."""
    expected = "an (A, S, S) array or a list of A scipy.sparse (S, S) matrices"
    if isinstance(P, (list, tuple)) and P and all(scipy.sparse.issparse(P_a) for P_a in P):
        matrices = [_as_square_matrix(P_a, f"P[{a}]") for a, P_a in enumerate(P)]
    elif scipy.sparse.issparse(P) or (isinstance(P, (list, tuple)) and any(map(scipy.sparse.issparse, P))):
        raise TypeError(f"P must be {expected}; got a single sparse matrix or a list mixing sparse and dense ones")
    else:
        matrices = _as_float_array(P, "P", expected)
        if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2] or 0 in matrices.shape:
            raise ValueError(f"P must be {expected}; got shape {matrices.shape}")
    for a, P_a in enumerate(matrices):
        if P_a.shape != matrices[0].shape:
            raise ValueError(
                f"P[{a}] has shape {P_a.shape} but P[0] has shape {matrices[0].shape}; "
                f"every action needs the same states"
            )
    return matrices


def _terminal_states(P, argument, names):
    """Check that P holds probabilities and return the terminal-state mask (rows summing to 0).

    Entries must be finite and non-negative, and each row must sum to 1 or to 0 within
    max(1e-12, S·eps).  All checks are vectorized; errors quote the first offender.
    """
    entries = P.data if scipy.sparse.issparse(P) else P.ravel()

    def entry_name(k):  # "P[row, column]" of entries[k]
        if scipy.sparse.issparse(P):
            row, column = int(np.searchsorted(P.indptr, k, side="right")) - 1, int(P.indices[k])
        else:
            row, column = divmod(int(k), P.shape[1])
        between = "" if names is None else f" (from {names[row]!r} to {names[column]!r})"
        return f"{argument}[{row}, {column}]{between}"

    bad = np.flatnonzero(~np.isfinite(entries))
    if bad.size:
        raise ValueError(f"{entry_name(bad[0])} is {entries[bad[0]]}; transition probabilities must be finite")
    bad = np.flatnonzero(entries < 0)
    if bad.size:
        raise ValueError(f"{entry_name(bad[0])} = {entries[bad[0]]} is negative; probabilities must be >= 0")
    row_sums = np.asarray(P.sum(axis=1)).ravel()
    terminal = row_sums == 0
    bad = np.flatnonzero(~terminal & (np.abs(row_sums - 1) > _row_sum_tolerance(P.shape[0])))
    if bad.size:
        row = bad[0]
        state = "" if names is None else f" (state {names[row]!r})"
        others = f" ({bad.size - 1} more rows are invalid)" if bad.size > 1 else ""
        raise ValueError(
            f"row {row}{state} of {argument} sums to {float(row_sums[row])}; "
            f"each row must sum to 1, or 0 for a terminal state{others}"
        )
    return terminal


def _common_terminal_states(P, names):
    """Terminal mask of an MDP: every P[a] must be valid and agree on which rows are all zero."""
    terminal = _terminal_states(P[0], "P[0]", names)
    for a in range(1, len(P)):
        mismatch = np.flatnonzero(_terminal_states(P[a], f"P[{a}]", names) != terminal)
        if mismatch.size:
            state = mismatch[0] if names is None else repr(names[mismatch[0]])
            raise ValueError(
                f"state {state} has an all-zero (terminal) row in one of P[0], P[{a}] but not the other; "
                f"a terminal state must be terminal under every action"
            )
    return terminal


def _require_termination(P, terminal, states):
    """Raise unless every state can reach a terminal state (≡ absorption w.p. 1 in a finite chain)."""
    if terminal.any():
        # Multi-source breadth-first search from the terminal states along reversed edges.
        steps = scipy.sparse.csgraph.dijkstra(
            P.T, directed=True, indices=np.flatnonzero(terminal), unweighted=True, min_only=True
        )
        stuck = np.flatnonzero(np.isinf(steps))
    else:
        stuck = np.arange(P.shape[0])
    if stuck.size:
        raise ValueError(
            f"gamma = 1 requires every state to reach a terminal state, but state {states[stuck[0]]!r} never "
            f"does ({stuck.size} of {P.shape[0]} states cannot), so its value is not finite; "
            f"use gamma < 1 or add transitions to a terminal state"
        )


def _require_proper_policies(P, terminal, states, actions):
    """Raise unless every policy reaches a terminal state with probability 1 (needed for γ = 1).

    Some policy avoids termination forever iff there is a non-empty set W of non-terminal
    states in each of which some action keeps the next state inside W.  The largest such
    W is found by peeling: start from all non-terminal states and repeatedly drop those
    whose every action has a positive probability of leaving W.
    """
    inside = ~terminal
    while True:
        outside = (~inside).astype(np.float64)
        stays = np.column_stack([P_a @ outside == 0 for P_a in P])  # stays[s, a]: action a keeps s inside W
        still_inside = inside & stays.any(axis=1)
        if np.array_equal(still_inside, inside):
            break
        inside = still_inside
    if inside.any():
        trapped = np.flatnonzero(inside)
        s = trapped[0]
        shown = ", ".join(repr(states[i]) for i in trapped[:5]) + (", ..." if trapped.size > 5 else "")
        raise ValueError(
            f"gamma = 1 requires every policy to reach a terminal state, but a policy can keep the episode "
            f"among states {shown} forever (e.g. action {actions[np.flatnonzero(stays[s])[0]]!r} in state "
            f"{states[s]!r} never leaves them), so its value is not finite; use gamma < 1"
        )


def _row_sum_tolerance(n):
    return max(1e-12, n * np.finfo(np.float64).eps)


def _as_float_array(value, argument, expected):
    """``value`` as a new float64 array; TypeError if it is not numeric."""
    try:
        array = np.array(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{argument} must be {expected}; {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must be {expected}; got {type(value).__name__} of dtype {array.dtype}")
    return array.astype(np.float64)


def _as_finite_array(value, argument, shape, meaning):
    """A float64 array of exactly ``shape`` with finite entries."""
    shape_text = f"({shape[0]},)" if len(shape) == 1 else str(shape)
    array = _as_float_array(value, argument, f"an array of shape {shape_text} ({meaning})")
    if array.shape != shape:
        raise ValueError(f"{argument} must have shape {shape_text} ({meaning}); got shape {array.shape}")
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = ", ".join(str(i) for i in bad[0])
        raise ValueError(f"{argument}[{index}] is {array[tuple(bad[0])]}; {argument} must be finite")
    return array


def _as_names(names, count, argument, unit="states"):
    """A tuple of ``count`` unique hashable names (default 0, 1, ..., count − 1)."""
    if names is None:
        return tuple(range(count))
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise TypeError(f"{argument} must be a list of {count} names; got {type(names).__name__}")
    names = tuple(names.tolist() if isinstance(names, np.ndarray) else names)
    if len(names) != count:
        raise ValueError(f"{argument} has {len(names)} names but P has {count} {unit}")
    try:
        unique = set(names)
    except TypeError:
        raise TypeError(f"{argument} must contain hashable names (strings or numbers)") from None
    if len(unique) != count:
        duplicate = next(name for name, times in collections.Counter(names).items() if times > 1)
        raise ValueError(f"{argument} must be unique; {duplicate!r} appears more than once")
    return names


def _is_real_number(value):
    return is_real(value)


def _as_gamma(gamma):
    if not _is_real_number(gamma):
        raise TypeError(f"gamma must be a number in [0, 1]; got {type(gamma).__name__}")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1]; got {gamma}")
    return float(gamma)


def _as_method(method):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(map(repr, METHODS))}")
    return method


def _as_positive_float(value, argument):
    if not _is_real_number(value):
        raise TypeError(f"{argument} must be a positive number; got {type(value).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"{argument} must be a positive finite number; got {value}")
    return float(value)


def _as_int(value, argument, minimum, why=""):
    if not is_integer(value):
        raise TypeError(f"{argument} must be an integer; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argument} must be at least {minimum}{why}; got {value}")
    return int(value)
