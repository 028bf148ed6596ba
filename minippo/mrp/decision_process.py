"""The Markov decision process ``MDP``: its Bellman optimality equation, policy evaluation and policy iteration.

An MDP adds actions to an MRP: P_a(s'|s) and R(s, a).  The optimal values satisfy

    V*(s) = max_a Q*(s, a),    Q*(s, a) = R(s, a) + γ Σ_{s'} P_a(s'|s) V*(s').

Fixing a policy π turns the MDP into an MRP (``policy_tables``); value iteration repeats the
optimality backup (``bellman_optimality_backup`` inside ``certified_value_iteration``), and
policy iteration alternates exact evaluation with greedy improvement (``policy_iteration``).
The functions take checked tables (as ``MDP`` holds them) and trust them.
"""
from typing import NamedTuple

import numpy as np
import scipy.sparse

from minippo.checks import fraction, positive
from minippo.mrp.iteration import certified_value_iteration
from minippo.mrp.reward_process import MRP, check_method
from minippo.mrp.tables import (
    as_finite_array,
    as_float_array,
    as_names,
    as_policy_weights,
    as_transition_matrices,
    common_terminal_states,
    require_proper_policies,
)


class MDPSolution(NamedTuple):
    """Optimal values V*(s) and an optimal deterministic policy (one action index per state)."""

    values: np.ndarray
    policy: np.ndarray


def expected_next_values(P, values):
    """E[V(s') | s, a] = Σ_{s'} P_a(s'|s) V(s') as an (S, A) array."""
    return np.column_stack([P_a @ values for P_a in P])


def action_values(P, R, gamma, values):
    """Q(s, a) = R(s, a) + γ Σ_{s'} P_a(s'|s) V(s'), an (S, A) array."""
    return R + gamma * expected_next_values(P, values)


def bellman_optimality_backup(P, R, gamma, values):
    """The Bellman optimality backup: B*(V)(s) = max_a [R(s, a) + γ Σ_{s'} P_a(s'|s) V(s')].

    The optimal values V* are its fixed point, V* = B*(V*).
    """
    return action_values(P, R, gamma, values).max(axis=1)


def policy_tables(P, R, weights):
    """The MRP a policy π induces: P_π(s'|s) = Σ_a π(a|s) P_a(s'|s) and R_π(s) = Σ_a π(a|s) R(s, a).

    ``weights`` is the (S, A) array of π(a|s); returns (P_π, R_π), sparse if P is.
    """
    R_policy = np.sum(weights * R, axis=1)
    if isinstance(P, np.ndarray):
        return np.einsum("sa,ast->st", weights, P), R_policy
    return sum(scipy.sparse.diags_array(weights[:, a]) @ P_a for a, P_a in enumerate(P)), R_policy


def policy_evaluation(P, R, gamma, weights, method="auto"):
    """V_π, the solution of V_π = R_π + γ P_π V_π for the MRP (P_π, R_π) of ``policy_tables``."""
    return MRP(*policy_tables(P, R, weights), gamma).solve(method)


def policy_iteration(P, R, gamma, method="auto"):
    """Optimal values and policy by π_{k+1}(s) = argmax_a Q_{π_k}(s, a), with V_{π_k} solved exactly.

    Start from action 0 everywhere; evaluate the policy exactly (``policy_evaluation`` with
    ``method``); switch a state to its best action only if that improves Q by more than rounding
    noise (1e-10 relative), so ties cannot cycle; stop when no state switches.  Each switch
    strictly improves the policy, so it terminates.
    """
    n_states, n_actions = R.shape
    policy = np.zeros(n_states, dtype=np.int64)
    while True:
        values = policy_evaluation(P, R, gamma, np.eye(n_actions)[policy], method)
        q = action_values(P, R, gamma, values)
        noise = 1e-10 * max(1.0, np.max(np.abs(values)))
        improves = q.max(axis=1) > q[np.arange(n_states), policy] + noise
        if not improves.any():
            return MDPSolution(values, policy)
        policy = np.where(improves, q.argmax(axis=1), policy)


class MDP:
    """A Markov decision process: V*(s) = max_a [R(s, a) + γ Σ_{s'} P_a(s'|s) V*(s')].

    Arguments:
        P: transition probabilities per action, an (A, S, S) array (P[a][s, s'] = P_a(s'|s))
            or a list of A ``scipy.sparse`` (S, S) matrices.  Every P[a] obeys the rule of
            ``minippo.mrp.tables``, and a terminal state must have an all-zero row under every action.
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
        self.P = as_transition_matrices(P)
        self.n_actions = len(self.P)
        self.n_states = self.P[0].shape[0]
        self.states = as_names(states, self.n_states, "states")
        self.actions = as_names(actions, self.n_actions, "actions", unit="actions")
        self.terminal = common_terminal_states(self.P, None if states is None else self.states)
        S, A = self.n_states, self.n_actions
        rewards = as_float_array(R, "R", f"an ({S}, {A}) array of rewards R(s, a), or ({S},) rewards R(s)")
        if rewards.ndim == 1:  # the same reward whatever the action
            rewards = as_finite_array(rewards, "R", (S,), f"one reward per state, or an ({S}, {A}) array")
            rewards = np.repeat(rewards[:, None], A, axis=1)  # [S] -> [S, A]
        self.R = as_finite_array(rewards, "R", (S, A), f"one reward per (state, action), or ({S},) per state")
        self.gamma = fraction(gamma, "gamma")
        if self.gamma == 1:
            require_proper_policies(self.P, self.terminal, self.states, self.actions)

    def __repr__(self):
        return f"MDP(n_states={self.n_states}, n_actions={self.n_actions}, gamma={self.gamma})"

    def action_values(self, values):
        """Q(s, a) = R(s, a) + γ Σ_{s'} P_a(s'|s) V(s'), an (S, A) array (``action_values``)."""
        return action_values(self.P, self.R, self.gamma, values)

    def value_iteration(self, tol=1e-10):
        """Optimal values and policy by V ← max_a Q(s, a) until ‖V − V*‖∞ ≤ tol is guaranteed.

        ``certified_value_iteration`` of ``bellman_optimality_backup``: the MRP bound with the
        horizon taken over the worst policy.  The returned policy is greedy for the returned
        values; it is optimal whenever tol is below half the gap between the best and
        second-best action values.
        """
        values = certified_value_iteration(
            backup=lambda V: bellman_optimality_backup(self.P, self.R, self.gamma, V),
            survival_backup=lambda q: expected_next_values(self.P, q).max(axis=1),
            gamma=self.gamma,
            reward_bound=np.max(np.abs(self.R)),
            n_states=self.n_states,
            tol=positive(tol, "tol"),
        ).values
        return MDPSolution(values, self.action_values(values).argmax(axis=1))

    def policy_iteration(self, method="auto"):
        """Optimal values and policy by alternating exact evaluation and greedy improvement
        (``policy_iteration``; ``method`` is the ``MRP.solve`` method of each evaluation)."""
        return policy_iteration(self.P, self.R, self.gamma, check_method(method, "method"))

    def evaluate(self, policy):
        """The MRP a policy induces: P_π(s'|s) = Σ_a π(a|s) P_a(s'|s), R_π(s) = Σ_a π(a|s) R(s, a).

        ``policy`` is either deterministic, an int array of one action index per state,
        or stochastic, an (S, A) array whose row s holds π(·|s).
        """
        weights = as_policy_weights(policy, self.n_states, self.n_actions)
        return MRP(*policy_tables(self.P, self.R, weights), self.gamma, states=self.states)
