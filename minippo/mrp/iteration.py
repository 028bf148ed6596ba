"""Value iteration: repeated Bellman backups V_{k+1} = R + γ P V_k, plain and with a certified stopping rule.

``plain_value_iteration`` is the textbook loop; read it first.  ``certified_value_iteration`` runs any
Bellman backup (an MRP's, or an MDP's optimality backup) until a proven bound guarantees
‖V − V*‖∞ ≤ tol; ``MRP.solve("iterative")`` and ``MDP.value_iteration`` call it.

The functions take checked tables (as ``MRP`` and ``MDP`` hold them) and trust them.
"""
from typing import NamedTuple

import numpy as np


def bellman_backup(P, R, gamma, values):
    """The Bellman backup of an MRP: B(V) = R + γ P V, i.e. B(V)(s) = R(s) + γ Σ_{s'} P(s'|s) V(s').

    The values V* are its fixed point, V* = B(V*).  ``P`` is (S, S), dense or sparse; ``R`` and
    ``values`` are (S,).
    """
    return R + gamma * (P @ values)


def plain_value_iteration(P, R, gamma, n_sweeps):
    """The textbook loop: V_0 = 0, then V_{k+1} = R + γ P V_k for ``n_sweeps`` sweeps; returns V_{n_sweeps}.

    V_k is the expected discounted reward of the first k steps, so ‖V_k − V*‖∞ ≤ γ^k max|R| / (1 − γ)
    for γ < 1.  How many sweeps are enough is the hard part near γ = 1, where the last change
    ‖V_{k+1} − V_k‖∞ can be a thousand times smaller than the error: ``certified_value_iteration``
    computes the same iterates and decides when to stop by a proven bound.
    """
    values = np.zeros_like(R)
    for _ in range(n_sweeps):
        values = bellman_backup(P, R, gamma, values)
    return values


class ValueIteration(NamedTuple):
    """What ``certified_value_iteration`` found: the values after ``sweeps`` backups, a proven bound
    ‖values − V*‖∞ ≤ ``error_bound`` (inf while no bound is known yet), and whether it reached tol."""

    values: np.ndarray
    sweeps: int
    error_bound: float
    converged: bool


def certified_value_iteration(backup, survival_backup, gamma, reward_bound, n_states, tol, max_sweeps=None,
                              watch=None):
    """Iterate V_{k+1} = B(V_k) from V_0 = 0 until ‖V_{k+1} − V*‖∞ ≤ tol is guaranteed.

    Returns a ``ValueIteration``.  Two caps end it early, with ``converged`` False and the bound
    reached so far: ``max_sweeps`` backups, and ``watch(sweeps, error_bound)``, called after every
    backup, returning True (e.g. a time limit; it may also print progress).  Values that overflow
    end it too (not converged, error bound inf).

    B (``backup``) is the Bellman backup of an MRP, ``bellman_backup``, or of an MDP,
    ``bellman_optimality_backup`` (then read "P" below as the worst action's).  ``reward_bound``
    is max|R|.

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
    sweeps, error_bound = 0, np.inf
    while error_bound > tol:
        if sweeps == max_sweeps or (watch is not None and watch(sweeps, error_bound)):
            return ValueIteration(values, sweeps, float(error_bound), False)
        expected_length = expected_length + still_running
        next_values = backup(values)
        still_running = gamma * still_running if gamma < 1 else survival_backup(still_running)
        change = np.max(np.abs(next_values - values))
        values = next_values
        sweeps += 1
        if not np.isfinite(change):  # the values overflowed: no bound will ever hold
            return ValueIteration(values, sweeps, np.inf, False)
        survival = np.max(still_running)
        if survival < 1:
            horizon = np.max(expected_length) / (1 - survival)
            error_bound = min((horizon - 1) * change, survival * horizon * reward_bound)
    return ValueIteration(values, sweeps, float(error_bound), True)
