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

Each equation is one function, with the equation in its docstring:

==============================  =====================================================  ===================
equation                        function                                               module
==============================  =====================================================  ===================
V ← R + γPV                     ``bellman_backup``                                     ``iteration``
V_{k+1} = R + γPV_k, k sweeps   ``plain_value_iteration`` (the textbook loop)          ``iteration``
… until ‖V − V*‖∞ ≤ tol         ``certified_value_iteration`` (a proven stopping rule) ``iteration``
(I − γP) V = R                  ``solve_direct`` (LU), ``solve_krylov`` (BiCGSTAB)     ``reward_process``
V(s) ≈ mean of sampled returns  ``monte_carlo_values``                                 ``monte_carlo``
Q = R + γ P_a V                 ``action_values``                                      ``decision_process``
V ← max_a Q                     ``bellman_optimality_backup``                          ``decision_process``
P_π = Σ_a π P_a, R_π = Σ_a π R  ``policy_tables``, ``policy_evaluation``               ``decision_process``
π ← argmax_a Q_π                ``policy_iteration``                                   ``decision_process``
==============================  =====================================================  ===================

``minippo.mrp.tables`` holds the one rule for valid transition tables (row sums, terminal
states) and the successor sampler, shared with ``minippo.envs.TabularMDPEnv``.  ``MRP`` and
``MDP`` check their arguments once; the functions they call trust them.
"""
from minippo.mrp.decision_process import (
    MDP,
    MDPSolution,
    action_values,
    bellman_optimality_backup,
    policy_evaluation,
    policy_iteration,
    policy_tables,
)
from minippo.mrp.iteration import bellman_backup, certified_value_iteration, plain_value_iteration
from minippo.mrp.monte_carlo import MonteCarloEstimate, monte_carlo_values
from minippo.mrp.reward_process import METHODS, MRP, solve_direct, solve_krylov

__all__ = [
    "MDP",
    "METHODS",
    "MRP",
    "MDPSolution",
    "MonteCarloEstimate",
    "action_values",
    "bellman_backup",
    "bellman_optimality_backup",
    "certified_value_iteration",
    "monte_carlo_values",
    "plain_value_iteration",
    "policy_evaluation",
    "policy_iteration",
    "policy_tables",
    "solve_direct",
    "solve_krylov",
]
