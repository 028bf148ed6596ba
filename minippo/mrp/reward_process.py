"""The Markov reward process ``MRP``, and the two linear-algebra solves of its Bellman equation.

    V(s) = R(s) + γ Σ_{s'} P(s'|s) V(s'),    i.e.    (I − γP) V = R.

``solve_direct`` factorises I − γP; ``solve_krylov`` runs BiCGSTAB on it; value iteration is in
``minippo.mrp.iteration`` and Monte Carlo in ``minippo.mrp.monte_carlo``.  ``MRP`` checks its
tables once, chooses a method, and calls these functions.
"""
import math
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from minippo.checks import check_seed, fraction, integer_at_least, is_real, one_of, positive
from minippo.mrp.iteration import bellman_backup, certified_value_iteration
from minippo.mrp.monte_carlo import NEGLIGIBLE_TAIL_WEIGHT, default_max_steps, monte_carlo_values
from minippo.mrp.tables import (
    as_finite_array,
    as_names,
    as_transition_matrix,
    require_termination,
    terminal_states,
)

METHODS = ("auto", "direct", "iterative", "krylov")
check_method = one_of(*METHODS)  # check_method(method, "method"): the method, or a ValueError listing METHODS

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


class MRP:
    """A Markov reward process: V(s) = R(s) + γ Σ_{s'} P(s'|s) V(s').

    Arguments:
        P: (S, S) transition matrix, a dense array or any ``scipy.sparse`` matrix/array.
            Entry [s, s'] is P(s'|s).  Each row sums to 1, or to 0 for a terminal state
            (the rule of ``minippo.mrp.tables``: |sum − 1| ≤ max(1e-12, S·2.2e-16)).
        R: (S,) rewards; R(s) is collected on every visit to s (terminal states included).
        gamma: discount γ in [0, 1].  γ = 1 requires every state to reach a terminal
            state with probability 1 (otherwise some values are infinite).
        states: optional names for the states (unique, hashable); default 0, 1, ..., S−1.

    Attributes: ``P`` (float64 ndarray, or ``scipy.sparse.csr_array`` if given sparse),
    ``R``, ``gamma``, ``states`` (tuple of names), ``n_states``, ``terminal`` (bool mask).
    """

    def __init__(self, P, R, gamma, states=None):
        self.P = as_transition_matrix(P, "P")
        self.n_states = self.P.shape[0]
        self.states = as_names(states, self.n_states, "states")
        self.terminal = terminal_states(self.P, "P", None if states is None else self.states)
        self.R = as_finite_array(R, "R", (self.n_states,), "one reward per state")
        self.gamma = fraction(gamma, "gamma")
        self._index = {name: i for i, name in enumerate(self.states)}
        if self.gamma == 1:
            require_termination(self.P, self.terminal, self.states)

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
                if not is_real(probability):
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
            if not is_real(rewards[state]):
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
            "direct"     ``solve_direct``: LU factorisation (exact up to rounding; ``tol``
                         is unused).  Sparse LU of a random graph fills in
                         catastrophically: use "krylov" there.
            "iterative"  ``certified_value_iteration`` of ``bellman_backup`` V ← R + γPV,
                         until ‖V − V*‖∞ ≤ tol is guaranteed.
            "krylov"     ``solve_krylov``: BiCGSTAB on I − γP with a Jacobi preconditioner,
                         stopped when ‖R − (I − γP)V‖₂ ≤ tol·‖R‖₂ (or "direct" if BiCGSTAB
                         breaks down).
            "auto"       the method ``auto_method()`` names.
        The achieved accuracy is ``residual(V)``.
        """
        method = check_method(method, "method")
        tol = positive(tol, "tol")
        if method == "auto":
            method = self.auto_method()
        if method == "iterative":
            return self.solve_iterative(tol).values
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, by name
            values = solve_direct(self.P, self.R, self.gamma) if method == "direct" else \
                solve_krylov(self.P, self.R, self.gamma, tol)
        return self.check_finite(values, method)

    def solve_iterative(self, tol=1e-10, max_sweeps=None, watch=None):
        """``certified_value_iteration`` of ``bellman_backup`` V ← R + γPV, with its caps (``max_sweeps``,
        ``watch``); returns its ``ValueIteration`` (values, sweeps, error bound, converged)."""
        with np.errstate(over="ignore", invalid="ignore"):
            result = certified_value_iteration(
                backup=lambda V: bellman_backup(self.P, self.R, self.gamma, V),
                survival_backup=lambda q: self.P @ q,
                gamma=self.gamma,
                reward_bound=np.max(np.abs(self.R)),
                n_states=self.n_states,
                tol=positive(tol, "tol"),
                max_sweeps=max_sweeps,
                watch=watch,
            )
        self.check_finite(result.values, "iterative")
        return result

    def check_finite(self, values, method):
        """``values``, or a FloatingPointError naming the first state whose value overflowed float64."""
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise FloatingPointError(
                f"the values overflow: {method} gives V({self.states[bad[0]]!r}) = {values[bad[0]]} "
                f"({bad.size} of {self.n_states} states are not finite); the rewards (up to "
                f"{np.max(np.abs(self.R)):.3g}) times the expected discounted episode length exceed "
                f"the largest float, {np.finfo(np.float64).max:.3g}"
            )
        return values

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
        if S <= SPARSE_LU_MAX_STATES and bandwidth(self.P) <= GRID_BANDWIDTH_FACTOR * math.sqrt(S):
            return "direct"
        return "krylov"

    def residual(self, values):
        """Relative Bellman residual ‖V − R − γPV‖∞ / ‖V‖∞ (the absolute residual when V = 0)."""
        values = as_finite_array(values, "values", (self.n_states,), "one value per state")
        return bellman_residual(self.P, self.R, self.gamma, values)

    # ----------------------------------------------------------------- simulation
    def monte_carlo(self, n_episodes, seed=None, max_steps=None, watch=None):
        """Estimate V(s) for every s by simulating ``n_episodes`` episodes from each state.

        See ``monte_carlo_values`` for the estimate.  ``n_episodes`` is at least 2 (the
        standard error needs two).  ``seed`` (an int, a ``numpy.random.Generator`` or None)
        fixes every random number: the same seed gives identical estimates.  The default
        ``max_steps`` makes γ^max_steps ≤ NEGLIGIBLE_TAIL_WEIGHT, capped at MAX_DEFAULT_STEPS;
        when γ = 1 it is only a safety cap (episodes end with probability 1).  A RuntimeWarning
        says when truncation may bias the estimate (γ^max_steps > NEGLIGIBLE_TAIL_WEIGHT).
        ``watch(episodes_done)`` may print progress and return True to stop early.

        Returns ``MonteCarloEstimate(values, stderr, n_episodes, truncated)``.
        """
        n_episodes = integer_at_least(n_episodes, "n_episodes", 2)
        if max_steps is None:
            max_steps = default_max_steps(self.gamma)
        max_steps = integer_at_least(max_steps, "max_steps", 1)
        rng = np.random.default_rng(check_seed(seed))
        with np.errstate(over="ignore", invalid="ignore"):
            estimate = monte_carlo_values(self.P, self.R, self.gamma, self.terminal, n_episodes, rng, max_steps,
                                          watch)
        self.check_finite(estimate.values, "Monte Carlo")
        cut = int(estimate.truncated.sum())
        if cut and self.gamma**max_steps > NEGLIGIBLE_TAIL_WEIGHT:
            warnings.warn(f"{cut} of {estimate.truncated.size * estimate.n_episodes} episodes were still running "
                          f"after max_steps={max_steps}; their truncated returns bias the estimate",
                          RuntimeWarning, stacklevel=2)
        return estimate


def solve_direct(P, R, gamma):
    """Solve the Bellman equation as the linear system (I − γP) V = R, by LU factorisation.

    Dense P: ``scipy.linalg.solve``.  Sparse P: ``scipy.sparse.linalg.splu`` with a minimum-degree
    ordering of A + Aᵀ (I − γP is diagonally dominant and usually near-symmetric in pattern, and
    this ordering halves the fill of a 2-D grid compared with the default COLAMD).
    """
    if scipy.sparse.issparse(P):
        system = (scipy.sparse.eye_array(P.shape[0]) - gamma * P).tocsc()
        return scipy.sparse.linalg.splu(system, permc_spec="MMD_AT_PLUS_A").solve(R)
    return scipy.linalg.solve(np.eye(P.shape[0]) - gamma * P, R)


def solve_krylov(P, R, gamma, tol):
    """Solve (I − γP) V = R by BiCGSTAB with a Jacobi preconditioner, to ‖R − (I − γP)V‖₂ ≤ tol·‖R‖₂.

    The preconditioner divides by the diagonal 1 − γP(s|s): it is free, and it rescues chains
    with large self-loop ("stay") probabilities.  The diagonal is positive: γ = 1 with
    P(s|s) = 1 is a state that never terminates, which ``MRP`` rejects.

    Breakdown: BiCGSTAB divides by r̂₀ᵀr_k, the product of the current residual with the first
    one (r̂₀ = R), and on deterministic chains and cycles it is exactly 0: each step moves the
    residual to the predecessors of the states it covered, e.g. from e₀ to e_{S−1} on a cycle
    with R = e₀.  I − γP is nonsingular (γ < 1, or every state terminates), so ``solve_direct``
    then always succeeds, and for such permutation-like P its LU stays about as sparse as P.
    A RuntimeError reports any other failure to converge, unless the values overflowed (they are then
    returned as they are, and ``MRP.solve`` reports the overflow).
    """
    S = P.shape[0]
    system = scipy.sparse.linalg.LinearOperator((S, S), matvec=lambda V: V - gamma * (P @ V), dtype=float)
    diagonal = 1.0 - gamma * P.diagonal()
    preconditioner = scipy.sparse.linalg.LinearOperator((S, S), matvec=lambda V: V / diagonal, dtype=float)
    values, info = scipy.sparse.linalg.bicgstab(system, R, rtol=tol, atol=0.0, M=preconditioner)
    if info < 0:  # breakdown
        return solve_direct(P, R, gamma)
    if info > 0 and np.isfinite(values).all():  # values that overflowed are returned: MRP.solve names them
        residual = bellman_residual(P, R, gamma, values)
        raise RuntimeError(
            f"BiCGSTAB stopped (scipy info={info}) at relative residual {residual:.2e} "
            f"without reaching tol={tol}; use method='direct' or 'iterative'"
        )
    return values


def bellman_residual(P, R, gamma, values):
    """Relative Bellman residual ‖V − R − γPV‖∞ / ‖V‖∞ (the absolute residual when V = 0)."""
    residual = np.max(np.abs(values - R - gamma * (P @ values)))
    scale = np.max(np.abs(values))
    return float(residual / scale if scale > 0 else residual)


def bandwidth(P):
    """max |s − s'| over stored entries of a canonical CSR matrix (sorted column indices)."""
    rows = np.flatnonzero(np.diff(P.indptr))
    if rows.size == 0:
        return 0
    first_column = P.indices[P.indptr[rows]]
    last_column = P.indices[P.indptr[rows + 1] - 1]
    return int(max(np.max(rows - first_column), np.max(last_column - rows)))
