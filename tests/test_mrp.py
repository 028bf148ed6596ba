"""Tests for minippo.mrp: the MRP solvers, Monte Carlo, the MDP solvers and input validation."""
import itertools

import numpy as np
import pytest
import scipy.sparse
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minippo.mrp.monte_carlo
import minippo.mrp.reward_process
from minippo.mrp import (
    MDP,
    MRP,
    MonteCarloEstimate,
    action_values,
    bellman_backup,
    bellman_optimality_backup,
    plain_value_iteration,
    policy_evaluation,
    policy_tables,
    solve_direct,
)
from minippo.mrp.tables import successor_sampler

SOLVE_METHODS = ["direct", "iterative", "krylov", "auto"]


def seed_example(gamma=0.8):
    return MRP.from_dict(
        {"吃饭": {"喝酒": 0.5, "喝茶": 0.5}, "喝酒": {"醉": 1.0}, "喝茶": {"醒": 1.0}},
        rewards={"吃饭": 6, "喝酒": 3, "喝茶": 5, "醉": 10, "醒": 4},
        gamma=gamma,
    )


def random_transitions(rng, n_states, density=0.4, terminal_fraction=0.2, absorbing=False):
    """A random (S, S) transition matrix with some all-zero (terminal) rows.

    With ``absorbing``, state 0 is terminal and every other state s has a positive
    probability of moving to a state below s, so every state terminates with probability 1.
    """
    weights = rng.random((n_states, n_states)) * (rng.random((n_states, n_states)) < density)
    if absorbing:
        for s in range(1, n_states):
            weights[s, rng.integers(s)] += rng.random() + 0.1
        terminal = np.arange(n_states) == 0
    else:
        weights[np.arange(n_states), rng.integers(n_states, size=n_states)] += 0.1  # no accidental empty rows
        terminal = rng.random(n_states) < terminal_fraction
    weights[terminal] = 0.0
    sums = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)


def random_mrp(seed, n_states, gamma, sparse, absorbing=False):
    rng = np.random.default_rng(seed)
    P = random_transitions(rng, n_states, absorbing=absorbing)
    return MRP(scipy.sparse.csr_array(P) if sparse else P, rng.normal(size=n_states), gamma)


# --------------------------------------------------------------------- the seed example
@pytest.mark.parametrize("method", SOLVE_METHODS)
def test_seed_example_every_method(method):
    mrp = seed_example()
    values = mrp.solve(method)
    np.testing.assert_allclose(values, [13.68, 11.0, 8.2, 10.0, 4.0], rtol=0, atol=1e-12)
    assert abs(mrp.value("吃饭", method) - 13.68) <= 1e-12
    assert mrp.residual(values) <= 1e-15


def test_seed_example_reads_like_the_math():
    mrp = seed_example()
    assert mrp.states == ("吃饭", "喝酒", "喝茶", "醉", "醒")
    np.testing.assert_array_equal(mrp.terminal, [False, False, False, True, True])
    np.testing.assert_array_equal(mrp.R, [6, 3, 5, 10, 4])
    assert mrp.P[0, 1] == mrp.P[0, 2] == 0.5 and mrp.P[1, 3] == 1.0
    assert mrp.index("喝茶") == 2
    expected = {"吃饭": 13.68, "喝酒": 11.0, "喝茶": 8.2, "醉": 10.0, "醒": 4.0}
    assert mrp.values_by_name() == pytest.approx(expected, abs=1e-12)
    assert mrp.auto_method() == "direct"


@pytest.mark.parametrize("method", SOLVE_METHODS)
def test_seed_example_with_gamma_one(method):
    # Episodes always end, so γ = 1 is allowed: V(吃饭) = 6 + 0.5·(3 + 10) + 0.5·(5 + 4).
    np.testing.assert_allclose(seed_example(gamma=1).solve(method), [17.0, 13.0, 9.0, 10.0, 4.0], rtol=0, atol=1e-12)


def test_seed_example_monte_carlo_within_four_standard_errors():
    estimate = seed_example().monte_carlo(4000, seed=0)
    assert isinstance(estimate, MonteCarloEstimate)
    assert abs(estimate.values[0] - 13.68) <= 4 * estimate.stderr[0]
    # The returns from 吃饭 are 6 + 0.8·11 or 6 + 0.8·8.2, each w.p. 1/2: standard deviation 1.12.
    assert estimate.stderr[0] == pytest.approx(1.12 / np.sqrt(4000), rel=0.05)
    # The other states are deterministic.
    np.testing.assert_allclose(estimate.values[1:], [11.0, 8.2, 10.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(estimate.stderr[1:], 0.0, atol=1e-12)


def test_names_errors():
    mrp = seed_example()
    with pytest.raises(ValueError, match="unknown state '咖啡'"):
        mrp.index("咖啡")
    with pytest.raises(ValueError, match="unknown state"):
        mrp.value(["unhashable"])
    unnamed = MRP([[0, 1], [0, 0]], [1, 2], 0.5)
    assert unnamed.states == (0, 1) and unnamed.value(0) == 2.0


# --------------------------------------------------------------------- solvers agree
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_states=st.integers(1, 25),
    gamma=st.floats(0.0, 0.99),
    sparse=st.booleans(),
)
def test_direct_iterative_and_krylov_agree(seed, n_states, gamma, sparse):
    mrp = random_mrp(seed, n_states, gamma, sparse)
    direct = mrp.solve("direct")
    scale = max(1.0, np.max(np.abs(direct)))
    assert mrp.residual(direct) <= 1e-12
    # "iterative" guarantees ‖V − V*‖∞ ≤ tol (up to rounding in V* itself).
    np.testing.assert_allclose(mrp.solve("iterative", tol=1e-9), direct, rtol=0, atol=1e-9 + 1e-12 * scale)
    krylov = mrp.solve("krylov", tol=1e-12)
    np.testing.assert_allclose(krylov, direct, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(mrp.solve("auto"), direct, rtol=0, atol=1e-12 * scale)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_states=st.integers(1, 25), sparse=st.booleans())
def test_solvers_agree_with_gamma_one_on_absorbing_chains(seed, n_states, sparse):
    mrp = random_mrp(seed, n_states, 1.0, sparse, absorbing=True)
    direct = mrp.solve("direct")
    scale = max(1.0, np.max(np.abs(direct)))
    np.testing.assert_allclose(mrp.solve("iterative", tol=1e-9), direct, rtol=0, atol=1e-9 + 1e-11 * scale)
    np.testing.assert_allclose(mrp.solve("krylov", tol=1e-12), direct, rtol=0, atol=1e-8 * scale)


@pytest.mark.parametrize("gamma", [0.99, 1.0])
@pytest.mark.parametrize("tol", [1e-2, 1e-6])
def test_iterative_meets_its_guaranteed_bound_on_slow_chains(gamma, tol):
    # A lazy random walk on a line of 20 states, absorbed at state 0 only: the expected time
    # to absorption is about a thousand steps, so "stop when the change is below tol"
    # would stop far from V* (the error is up to ~horizon × change).
    n = 20
    P = np.zeros((n, n))
    for s in range(1, n):
        P[s, s - 1] = 0.3
        P[s, min(s + 1, n - 1)] += 0.3
        P[s, s] += 0.4
    mrp = MRP(P, np.ones(n), gamma)
    error = np.max(np.abs(mrp.solve("iterative", tol=tol) - mrp.solve("direct")))
    assert error <= tol
    assert error > tol / 1e4  # and it does not reach the bound by running needlessly long


def test_auto_picks_by_size_and_structure(monkeypatch):
    monkeypatch.setattr(minippo.mrp.reward_process, "DIRECT_MAX_STATES", 100)  # keep the "large" problems small
    rng = np.random.default_rng(0)
    n = 400
    chain = scipy.sparse.diags_array([np.full(n - 1, 0.5), np.r_[0.5 * np.ones(n - 1), 0.0]], offsets=[1, 0]).tocsr()
    chain[n - 2, n - 2] = 0.5  # rows sum to 1 except the terminal last state
    chain_mrp = MRP(chain, rng.normal(size=n), 0.95)
    assert chain_mrp.auto_method() == "direct"
    successors = rng.integers(n, size=(n, 5))
    random_graph = scipy.sparse.csr_array((np.full(5 * n, 0.2), successors.ravel(), np.arange(0, 5 * n + 1, 5)),
                                          shape=(n, n))
    random_mrp_ = MRP(random_graph, rng.normal(size=n), 0.95)
    assert random_mrp_.auto_method() == "krylov"
    dense_mrp = MRP(random_graph.toarray(), random_mrp_.R, 0.95)
    assert dense_mrp.auto_method() == "krylov"
    for mrp in (chain_mrp, random_mrp_, dense_mrp):
        direct = mrp.solve("direct")
        np.testing.assert_allclose(mrp.solve("auto"), direct, rtol=0, atol=1e-8 * np.max(np.abs(direct)))
        assert mrp.residual(mrp.solve("auto")) < 1e-9
    monkeypatch.undo()
    assert random_mrp_.auto_method() == "direct"  # 400 states: small enough for LU whatever the structure


def test_krylov_handles_sticky_chains():
    rng = np.random.default_rng(1)
    P = random_transitions(rng, 200, density=0.05, terminal_fraction=0.0)
    stay = rng.uniform(0.9, 0.999, size=200)
    P = stay[:, None] * np.eye(200) + (1 - stay)[:, None] * P
    mrp = MRP(scipy.sparse.csr_array(P), rng.normal(size=200), 0.999)
    np.testing.assert_allclose(mrp.solve("krylov", tol=1e-12), mrp.solve("direct"), rtol=1e-7)


def cycle(n_states, gamma):
    """s → s + 1 (mod S) with probability 1, and a reward of 1 in state 0 only."""
    P = scipy.sparse.csr_array((np.ones(n_states), (np.arange(n_states), (np.arange(n_states) + 1) % n_states)))
    return MRP(P, np.eye(n_states)[0], gamma)


@pytest.mark.parametrize(
    "mrp, expected",
    [
        # a → b → c (terminal, reward 1): V = (γ², γ, 1)
        (MRP.from_dict({"a": {"b": 1}, "b": {"c": 1}}, {"a": 0, "b": 0, "c": 1}, 0.5), [0.25, 0.5, 1.0]),
        # 0 → 1 → 2 → 0: V(0) = 1 / (1 − γ³), then V(2) = γV(0), V(1) = γV(2)
        (cycle(3, 0.5), [8 / 7, 2 / 7, 4 / 7]),
    ],
)
def test_krylov_falls_back_to_lu_when_bicgstab_breaks_down(mrp, expected):
    # BiCGSTAB's r̂₀ᵀr_k is exactly 0 on deterministic chains and cycles (scipy info < 0)
    np.testing.assert_allclose(mrp.solve("krylov"), expected, rtol=1e-14)
    np.testing.assert_allclose(mrp.solve("krylov"), mrp.solve("direct"), rtol=1e-14)


def test_auto_solves_a_large_sparse_cycle():
    mrp = cycle(2000, 0.9)
    assert mrp.auto_method() == "krylov"  # the wrap-around edge 1999 → 0 makes the bandwidth S − 1
    values = mrp.solve()
    np.testing.assert_allclose(values, mrp.solve("direct"), rtol=1e-14)
    assert values[0] == pytest.approx(1 / (1 - 0.9**2000))
    assert values[1] == pytest.approx(0.9**1999 / (1 - 0.9**2000))
    assert mrp.residual(values) < 1e-14


def test_residual_is_relative_to_the_values():
    mrp = seed_example()
    assert mrp.residual(np.zeros(5)) == 10.0  # V = 0: the absolute residual max|R|
    values = mrp.solve("direct")
    values[0] += 0.1368  # 1% too large in one state: residual 0.1368 / 13.8168
    assert mrp.residual(values) == pytest.approx(0.1368 / 13.8168)


# --------------------------------------------------------------------- the equations, one function each
def test_bellman_backup_and_plain_value_iteration_are_the_textbook_equations():
    mrp = seed_example()
    P, R, gamma = mrp.P, mrp.R, mrp.gamma
    exact = solve_direct(P, R, gamma)
    np.testing.assert_allclose(bellman_backup(P, R, gamma, exact), exact, rtol=0, atol=1e-14)  # V* = R + γPV*
    np.testing.assert_array_equal(plain_value_iteration(P, R, gamma, 0), np.zeros(5))
    np.testing.assert_allclose(plain_value_iteration(P, R, gamma, 2), R + gamma * (P @ R), rtol=0, atol=1e-15)
    # Episodes last at most three steps, so three sweeps are exact.
    np.testing.assert_allclose(plain_value_iteration(P, R, gamma, 3), exact, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sparse", [False, True])
def test_plain_value_iteration_converges_as_its_docstring_bounds(sparse):
    mrp = random_mrp(seed=6, n_states=15, gamma=0.9, sparse=sparse)
    exact = mrp.solve("direct")
    sweeps = 50
    bound = 0.9**sweeps * np.max(np.abs(mrp.R)) / (1 - 0.9)  # γ^k max|R| / (1 − γ)
    error = np.max(np.abs(plain_value_iteration(mrp.P, mrp.R, mrp.gamma, sweeps) - exact))
    assert 1e-6 * bound < error <= bound  # within the bound, and not far below it
    np.testing.assert_allclose(mrp.solve("iterative", tol=1e-12), plain_value_iteration(mrp.P, mrp.R, mrp.gamma, 400),
                               rtol=0, atol=1e-11)


def test_bellman_optimality_backup_and_policy_evaluation():
    mdp = random_mdp(seed=8, n_states=6, n_actions=3, gamma=0.9, sparse=True)
    optimum = mdp.policy_iteration()
    # V* = max_a Q*(s, a) is the fixed point of the optimality backup, and the policy is greedy for Q*.
    np.testing.assert_allclose(bellman_optimality_backup(mdp.P, mdp.R, mdp.gamma, optimum.values), optimum.values,
                               rtol=0, atol=1e-12)
    q = action_values(mdp.P, mdp.R, mdp.gamma, optimum.values)
    np.testing.assert_array_equal(q, mdp.action_values(optimum.values))
    np.testing.assert_array_equal(q.argmax(axis=1)[~mdp.terminal], optimum.policy[~mdp.terminal])
    mix = np.random.default_rng(1).dirichlet([1, 1, 1], size=6)
    P_policy, R_policy = policy_tables(mdp.P, mdp.R, mix)
    np.testing.assert_allclose(P_policy.toarray(), sum(mix[:, [a]] * mdp.P[a].toarray() for a in range(3)), atol=1e-15)
    np.testing.assert_array_equal(R_policy, np.sum(mix * mdp.R, axis=1))
    np.testing.assert_array_equal(policy_evaluation(mdp.P, mdp.R, mdp.gamma, mix), mdp.evaluate(mix).solve())


def test_successor_sampler_inverts_each_rows_cdf():
    # Rows 0 and 2 of a (3, 4) table, one terminal row between them: row 0 has P = (0.2, 0.3, 0.5)
    # on columns 1, 2, 3, so u in [0, 0.2) picks 1, [0.2, 0.5) picks 2 and [0.5, 1) picks 3.
    table = np.array([[0.0, 0.2, 0.3, 0.5], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    sample = successor_sampler(table)
    uniforms = np.array([0.0, 0.1999, 0.2, 0.4999, 0.5, 0.9999999])
    np.testing.assert_array_equal(sample(np.zeros(6, dtype=np.int64), uniforms), [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(sample(np.full(6, 2), uniforms), np.zeros(6))
    np.testing.assert_array_equal(sample(np.array([2, 0, 2]), np.array([0.3, 0.3, 0.99])), [0, 2, 0])


# --------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("sparse", [False, True])
def test_monte_carlo_matches_the_exact_values(sparse):
    mrp = random_mrp(seed=3, n_states=12, gamma=0.9, sparse=sparse)
    exact = mrp.solve("direct")
    estimate = mrp.monte_carlo(3000, seed=5)
    assert np.all(np.abs(estimate.values - exact) <= 4 * estimate.stderr + 1e-12)
    assert np.all(estimate.stderr[~mrp.terminal] > 0)


def test_monte_carlo_same_seed_same_numbers_and_dense_equals_sparse():
    dense = random_mrp(seed=4, n_states=10, gamma=0.9, sparse=False)
    sparse = MRP(scipy.sparse.csr_array(dense.P), dense.R, dense.gamma)
    first = dense.monte_carlo(50, seed=7)
    np.testing.assert_array_equal(first.values, dense.monte_carlo(50, seed=7).values)
    np.testing.assert_array_equal(first.stderr, dense.monte_carlo(50, seed=np.random.default_rng(7)).stderr)
    np.testing.assert_array_equal(first.values, sparse.monte_carlo(50, seed=7).values)
    assert not np.array_equal(first.values, dense.monte_carlo(50, seed=8).values)


def test_monte_carlo_samples_successors_with_the_right_frequencies():
    # One step from "start" to terminal states paying 1, 10 or 100 w.p. 0.2, 0.3, 0.5; the
    # explicit zero entry must never be sampled.
    P = scipy.sparse.csr_array(([0.2, 0.0, 0.3, 0.5], ([0, 0, 0, 0], [1, 2, 3, 4])), shape=(5, 5))
    mrp = MRP(P, [0.0, 1.0, 1000.0, 10.0, 100.0], 1.0)
    estimate = mrp.monte_carlo(20000, seed=0)
    assert abs(estimate.values[0] - 53.2) <= 4 * estimate.stderr[0]
    return_std = np.sqrt(0.2 * 1 + 0.3 * 100 + 0.5 * 10000 - 53.2**2)
    assert estimate.stderr[0] == pytest.approx(return_std / np.sqrt(20000), rel=0.03)


def test_monte_carlo_truncation():
    # A single non-terminal state with a self-loop and reward 1: V = 1 / (1 − γ) = 2, and
    # truncating after T rewards gives exactly 2 − 2·0.5^T.
    loop = MRP([[1.0]], [1.0], 0.5)
    assert abs(loop.monte_carlo(2, seed=0).values[0] - 2.0) <= 1e-11  # the default T makes the tail negligible
    with pytest.warns(RuntimeWarning, match="still running after max_steps=10"):
        truncated = loop.monte_carlo(2, seed=0, max_steps=10)
    assert truncated.values[0] == 2.0 - 2.0 * 0.5**10


# --------------------------------------------------------------------- MDPs
def random_mdp(seed, n_states, n_actions, gamma, sparse, absorbing=False):
    rng = np.random.default_rng(seed)
    if absorbing:  # every action moves down towards the terminal state 0, so every policy terminates
        P = np.stack([random_transitions(rng, n_states, absorbing=True) for _ in range(n_actions)])
    else:
        terminal = rng.random(n_states) < 0.2
        P = np.stack([random_transitions(rng, n_states, terminal_fraction=0.0) for _ in range(n_actions)])
        P[:, terminal] = 0.0
    R = rng.normal(size=(n_states, n_actions))
    return MDP([scipy.sparse.csr_array(P_a) for P_a in P] if sparse else P, R, gamma)


def assume_unique_optimum(mdp, values):
    q = np.sort(mdp.action_values(values)[~mdp.terminal], axis=1)
    assume(q.shape[0] == 0 or mdp.n_actions == 1 or np.min(q[:, -1] - q[:, -2]) > 1e-6)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_states=st.integers(1, 12),
    n_actions=st.integers(1, 4),
    gamma=st.floats(0.0, 0.98),
    sparse=st.booleans(),
)
def test_value_iteration_equals_policy_iteration(seed, n_states, n_actions, gamma, sparse):
    mdp = random_mdp(seed, n_states, n_actions, gamma, sparse)
    by_policy = mdp.policy_iteration()
    assume_unique_optimum(mdp, by_policy.values)
    by_value = mdp.value_iteration(tol=1e-10)
    np.testing.assert_allclose(by_value.values, by_policy.values, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(by_value.policy[~mdp.terminal], by_policy.policy[~mdp.terminal])
    np.testing.assert_allclose(mdp.evaluate(by_value.policy).solve(), by_policy.values, rtol=0, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_states=st.integers(1, 10), n_actions=st.integers(1, 3))
def test_mdp_with_gamma_one_when_every_policy_terminates(seed, n_states, n_actions):
    mdp = random_mdp(seed, n_states, n_actions, 1.0, sparse=False, absorbing=True)
    by_policy = mdp.policy_iteration()
    assume_unique_optimum(mdp, by_policy.values)
    by_value = mdp.value_iteration(tol=1e-9)
    np.testing.assert_allclose(by_value.values, by_policy.values, rtol=0,
                               atol=1e-9 + 1e-12 * np.max(np.abs(by_policy.values)))
    np.testing.assert_array_equal(by_value.policy[1:], by_policy.policy[1:])


def test_optimal_policy_beats_every_deterministic_policy():
    mdp = random_mdp(seed=11, n_states=5, n_actions=3, gamma=0.9, sparse=False)
    optimum = mdp.policy_iteration()
    every_policy = np.array([mdp.evaluate(np.array(p)).solve() for p in itertools.product(range(3), repeat=5)])
    np.testing.assert_allclose(optimum.values, every_policy.max(axis=0), rtol=0, atol=1e-12)


def test_evaluate_stochastic_policy():
    mdp = random_mdp(seed=2, n_states=6, n_actions=2, gamma=0.9, sparse=True)
    mix = np.random.default_rng(0).dirichlet([1, 1], size=6)
    mrp = mdp.evaluate(mix)
    expected_P = sum(mix[:, [a]] * mdp.P[a].toarray() for a in range(2))
    np.testing.assert_allclose(mrp.P.toarray(), expected_P, atol=1e-15)
    np.testing.assert_allclose(mrp.R, np.sum(mix * mdp.R, axis=1))
    one_hot = mdp.evaluate(np.eye(2)[[0, 1, 1, 0, 1, 0]])
    np.testing.assert_array_equal(one_hot.solve(), mdp.evaluate([0, 1, 1, 0, 1, 0]).solve())


def test_mdp_attributes_and_reward_broadcast():
    P = np.array([[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])  # action 0 ends, action 1 loops
    mdp = MDP(P, [1.0, 5.0], 0.5, states=["start", "end"], actions=["go", "stay"])
    assert (mdp.n_states, mdp.n_actions, mdp.gamma) == (2, 2, 0.5)
    np.testing.assert_array_equal(mdp.R, [[1.0, 1.0], [5.0, 5.0]])
    assert mdp.R.dtype == np.float64 and mdp.P.shape == (2, 2, 2)
    # go: 1 + 0.5·5 = 3.5; stay forever: 1 / (1 − 0.5) = 2.
    solution = mdp.policy_iteration()
    np.testing.assert_allclose(solution.values, [3.5, 5.0])
    assert solution.policy[0] == 0
    sparse = MDP([scipy.sparse.csr_matrix(P_a) for P_a in P], [[1, 1], [5, 5]], 0.5)
    assert isinstance(sparse.P, list) and scipy.sparse.issparse(sparse.P[0])
    np.testing.assert_allclose(sparse.value_iteration().values, [3.5, 5.0], atol=1e-10)


def test_mdp_gamma_one_rejects_a_policy_that_never_terminates():
    P = np.array([[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])  # "stay" loops forever in start
    with pytest.raises(ValueError, match="every policy to reach a terminal state.*action 'stay' in state 'start'"):
        MDP(P, [1.0, 5.0], 1.0, states=["start", "end"], actions=["go", "stay"])
    assert MDP(P[:1], [1.0, 5.0], 1.0).policy_iteration().values.tolist() == [6.0, 5.0]


# --------------------------------------------------------------------- bad input
GOOD_P = [[0.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    "P, R, gamma, states, error, message",
    [
        ([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], [1, 2], 0.9, None, ValueError,
         r"P must be a square \(S, S\) matrix.*got shape \(2, 3\)"),
        (np.zeros((0, 0)), [], 0.9, None, ValueError, r"got shape \(0, 0\)"),
        ([[1.1, -0.1], [0.0, 0.0]], [1, 2], 0.9, None, ValueError, r"P\[0, 1\] = -0.1 is negative"),
        ([[np.nan, 1.0], [0.0, 0.0]], [1, 2], 0.9, None, ValueError,
         r"P\[0, 0\] is nan; transition probabilities must be finite"),
        ([[np.inf, 1.0], [0.0, 0.0]], [1, 2], 0.9, None, ValueError, r"P\[0, 0\] is inf"),
        ([[0.5, 0.2], [0.0, 0.0]], [1, 2], 0.9, None, ValueError,
         r"row 0 of P sums to 0.7; each row must sum to 1, or 0 for a terminal state"),
        ([[0.5, 0.2], [0.0, 0.0]], [1, 2], 0.9, ["a", "b"], ValueError, r"row 0 \(state 'a'\) of P sums to 0.7"),
        ([[0.5, 0.5 + 1e-9], [0.0, 0.0]], [1, 2], 0.9, None, ValueError, r"row 0 of P sums to 1.000000001"),
        (GOOD_P, [1, 2, 3], 0.9, None, ValueError,
         r"R must have shape \(2,\) \(one reward per state\); got shape \(3,\)"),
        (GOOD_P, [1, np.nan], 0.9, None, ValueError, r"R\[1\] is nan; R must be finite"),
        (GOOD_P, [1, -np.inf], 0.9, None, ValueError, r"R\[1\] is -inf"),
        (GOOD_P, [1, 2], 1.5, None, ValueError, r"gamma must be in \[0, 1\], got 1.5"),
        (GOOD_P, [1, 2], -0.1, None, ValueError, r"gamma must be in \[0, 1\], got -0.1"),
        (GOOD_P, [1, 2], float("nan"), None, ValueError, r"gamma must be a finite number, got nan"),
        (GOOD_P, [1, 2], "0.9", None, TypeError, r"gamma must be a finite number, got str '0.9'"),
        (GOOD_P, [1, 2], True, None, TypeError, r"gamma must be a finite number, got bool True"),
        (GOOD_P, [1, 2], 0.9, ["a", "a"], ValueError, r"states must be unique; 'a' appears more than once"),
        (GOOD_P, [1, 2], 0.9, ["a", "b", "c"], ValueError, r"states has 3 names but P has 2 states"),
        (GOOD_P, [1, 2], 0.9, "ab", TypeError, r"states must be a list of 2 names; got str"),
        (GOOD_P, [1, 2], 0.9, [["a"], ["b"]], TypeError, r"states must contain hashable names"),
        ("not a matrix", [1, 2], 0.9, None, TypeError, r"P must be a square \(S, S\) matrix.*got str"),
        ([[0.5, "x"], [0, 0]], [1, 2], 0.9, None, TypeError, r"P must be"),
        ([[1.0], [0.0, 0.0]], [1, 2], 0.9, None, ValueError, r"P must be a square"),
        (GOOD_P, ["a", "b"], 0.9, None, TypeError, r"R must be"),
        ([[0.0, 1.0], [0.0, 1.0]], [1, 2], 1.0, ["a", "b"], ValueError,
         r"gamma = 1 requires every state to reach a terminal state, but state 'a' never does"),
        ([[0.5, 0.5], [0.5, 0.5]], [1, 2], 1, None, ValueError,
         r"state 0 never does \(2 of 2 states cannot\), so its value is not finite"),
    ],
)
def test_mrp_rejects_bad_input(P, R, gamma, states, error, message):
    with pytest.raises(error, match=message):
        MRP(P, R, gamma, states=states)


def test_sparse_input_is_validated_the_same_way():
    P = scipy.sparse.csr_array(np.array([[0.5, 0.2], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"row 0 of P sums to 0.7"):
        MRP(P, [1, 2], 0.9)
    with pytest.raises(ValueError, match=r"P\[1, 0\] = -1.0 is negative"):
        MRP(scipy.sparse.coo_array(([1.0, -1.0, 2.0], ([0, 1, 1], [1, 0, 1])), shape=(2, 2)), [1, 2], 0.9)
    with pytest.raises(ValueError, match=r"P\[0, 1\] is nan"):
        MRP(scipy.sparse.csr_matrix(np.array([[0.0, np.nan], [0.0, 0.0]])), [1, 2], 0.9)
    with pytest.raises(ValueError, match=r"row 1 of P sums to 0.5.*\(1 more rows are invalid\)"):
        MRP(scipy.sparse.csr_array(np.array([[1.0, 0, 0], [0.5, 0, 0], [0, 2.0, 0]])), [1, 2, 3], 0.9)


def test_row_sum_tolerance_accepts_rounding():
    MRP([[0.1] * 10] + [[0.0] * 10] * 9, np.ones(10), 0.9)  # 0.1 × 10 = 0.9999999999999999


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda mrp: mrp.solve("lu"), ValueError,
         r"method must be one of \('auto', 'direct', 'iterative', 'krylov'\), got 'lu'"),
        (lambda mrp: mrp.solve("iterative", tol=0), ValueError, r"tol must be > 0, got 0"),
        (lambda mrp: mrp.solve("krylov", tol="small"), TypeError, r"tol must be a finite number, got str 'small'"),
        (lambda mrp: mrp.monte_carlo(1), ValueError, r"n_episodes must be an integer >= 2, got 1"),
        (lambda mrp: mrp.monte_carlo(10.0), TypeError, r"n_episodes must be an integer >= 2, got float 10.0"),
        (lambda mrp: mrp.monte_carlo(10, max_steps=0), ValueError, r"max_steps must be an integer >= 1, got 0"),
        (lambda mrp: mrp.residual([1.0]), ValueError, r"values must have shape \(5,\)"),
        (lambda mrp: mrp.monte_carlo(10, seed=-1), ValueError, r"seed must be an integer >= 0, got -1"),
        (lambda mrp: mrp.monte_carlo(10, seed=True), TypeError, r"seed must be None, an int >= 0 or a numpy Generator"),
    ],
)
def test_method_arguments_are_validated(call, error, message):
    with pytest.raises(error, match=message):
        call(seed_example())


@pytest.mark.parametrize(
    "transitions, rewards, error, message",
    [
        ({"a": {"b": 0.7}}, {"a": 1, "b": 2}, ValueError, r"row 0 \(state 'a'\) of P sums to 0.7"),
        ({"a": {"b": -0.5, "c": 1.5}}, {"a": 1, "b": 2, "c": 3}, ValueError,
         r"P\[0, 1\] \(from 'a' to 'b'\) = -0.5 is negative"),
        ({"a": {"b": 1.0}}, {"a": 1}, ValueError, r"rewards has no entry for state 'b'"),
        ({"a": {"b": 1.0}}, {"a": 1, "b": 2, "c": 3}, ValueError,
         r"rewards names state 'c', which does not appear in transitions"),
        ({"a": {"b": "half"}}, {"a": 1, "b": 2}, TypeError,
         r"transitions\['a'\]\['b'\] must be a probability; got str"),
        ({"a": ["b"]}, {"a": 1, "b": 2}, TypeError, r"transitions\['a'\] must be a dict"),
        ([("a", "b")], {"a": 1, "b": 2}, TypeError, r"transitions must be a dict"),
        ({"a": {"b": 1.0}}, [1, 2], TypeError, r"rewards must be a dict"),
        ({"a": {"b": 1.0}}, {"a": 1, "b": None}, TypeError, r"rewards\['b'\] must be a number; got NoneType"),
    ],
)
def test_from_dict_rejects_bad_input(transitions, rewards, error, message):
    with pytest.raises(error, match=message):
        MRP.from_dict(transitions, rewards, 0.9)


@pytest.mark.parametrize(
    "P, R, actions, error, message",
    [
        (np.full((2, 2, 2), 0.5)[:, :, :1], [1, 2], None, ValueError,
         r"P must be an \(A, S, S\) array.*got shape \(2, 2, 1\)"),
        (np.full((2, 2), 0.5), [1, 2], None, ValueError, r"got shape \(2, 2\)"),
        (np.array([[[0.5, 0.5], [0, 0]], [[0.5, 0.2], [0, 0]]]), [1, 2], None, ValueError,
         r"row 0 of P\[1\] sums to 0.7"),
        (np.array([[[0.5, 0.5], [0, 0]], [[0.5, 0.5], [0, 1]]]), [1, 2], None, ValueError,
         r"state 1 has an all-zero \(terminal\) row in one of P\[0\], P\[1\]"),
        (np.full((2, 2, 2), 0.5), [[1, 2, 3], [1, 2, 3]], None, ValueError, r"R must have shape \(2, 2\)"),
        (np.full((2, 2, 2), 0.5), [1, 2, 3], None, ValueError, r"R must have shape \(2,\)"),
        (np.full((2, 2, 2), 0.5), [[1, np.nan], [1, 2]], None, ValueError, r"R\[0, 1\] is nan"),
        (np.full((2, 2, 2), 0.5), [1, 2], ["left"], ValueError, r"actions has 1 names but P has 2 actions"),
        (scipy.sparse.csr_array(np.full((2, 2), 0.5)), [1, 2], None, TypeError, r"got a single sparse matrix"),
        ([scipy.sparse.csr_array(np.eye(2)), np.eye(2)], [1, 2], None, TypeError, r"a list mixing sparse and dense"),
        ([scipy.sparse.csr_array(np.eye(2)), scipy.sparse.csr_array(np.eye(3))], [1, 2], None, ValueError,
         r"P\[1\] has shape \(3, 3\) but P\[0\] has shape \(2, 2\)"),
    ],
)
def test_mdp_rejects_bad_input(P, R, actions, error, message):
    with pytest.raises(error, match=message):
        MDP(P, R, 0.9, actions=actions)


@pytest.mark.parametrize(
    "policy, error, message",
    [
        ([0, 2, 1], ValueError, r"policy\[1\] = 2 is not an action index in \[0, 2\)"),
        ([0.0, 1.0, 1.0], TypeError, r"policy must be an int array of shape \(3,\)"),
        ([0, 1], ValueError, r"policy must have shape \(3, 2\)"),
        ([[0.5, 0.5], [1.2, -0.2], [0, 1]], ValueError, r"policy\[1, 1\] = -0.2 is negative"),
        ([[0.5, 0.5], [0.5, 0.4], [0, 1]], ValueError,
         r"row 1 of policy sums to 0.9; action probabilities must sum to 1"),
    ],
)
def test_evaluate_rejects_bad_policies(policy, error, message):
    mdp = random_mdp(seed=0, n_states=3, n_actions=2, gamma=0.9, sparse=False)
    with pytest.raises(error, match=message):
        mdp.evaluate(policy)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda mdp: mdp.policy_iteration("lu"), ValueError,
         r"method must be one of \('auto', 'direct', 'iterative', 'krylov'\), got 'lu'"),
        (lambda mdp: mdp.value_iteration(tol=-1.0), ValueError, r"tol must be > 0, got -1.0"),
        (lambda mdp: mdp.value_iteration(tol=None), TypeError, r"tol must be a finite number, got NoneType None"),
    ],
)
def test_mdp_method_arguments_are_validated(call, error, message):
    with pytest.raises(error, match=message):
        call(random_mdp(seed=0, n_states=3, n_actions=2, gamma=0.9, sparse=False))


# --------------------------------------------------------------------- limits: streaming, caps, overflow
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40), st.data())
def test_merged_moments_equal_those_of_the_whole_sample(numbers, data):
    from minippo.mrp.monte_carlo import merge_moments

    cuts = sorted(data.draw(st.sets(st.integers(1, len(numbers) - 1), max_size=5)))
    count, mean, m2 = 0, 0.0, 0.0
    for piece in np.split(np.array(numbers), cuts):
        count, mean, m2 = merge_moments(count, mean, m2, piece)
    whole = np.array(numbers)
    assert count == len(numbers)
    assert mean == pytest.approx(whole.mean(), rel=1e-9, abs=1e-6)
    assert m2 == pytest.approx(((whole - whole.mean()) ** 2).sum(), rel=1e-8, abs=1e-3)


def test_monte_carlo_streams_in_bounded_chunks(monkeypatch):
    import tracemalloc

    mrp = seed_example()
    tracemalloc.start()
    estimate = mrp.monte_carlo(200_000, seed=0)  # 10^6 episodes: ~40 MB as one batch of arrays
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 25e6
    assert estimate.n_episodes == 200_000 and not estimate.truncated.any()
    assert abs(estimate.values[0] - 13.68) <= 4 * estimate.stderr[0]
    assert estimate.stderr[0] == pytest.approx(1.12 / np.sqrt(200_000), rel=0.05)
    # many small chunks give the same statistics as the samples taken together
    monkeypatch.setattr("minippo.mrp.monte_carlo.CHUNK_EPISODES", 10)
    chunks = []
    real_simulate = minippo.mrp.monte_carlo.simulate_returns

    def recording_simulate(*args):
        returns, cut = real_simulate(*args)
        chunks.append(returns)
        return returns, cut

    monkeypatch.setattr("minippo.mrp.monte_carlo.simulate_returns", recording_simulate)
    estimate = mrp.monte_carlo(25, seed=1)
    returns = np.concatenate(chunks, axis=1)
    assert [chunk.shape for chunk in chunks] == [(5, 2)] * 12 + [(5, 1)]
    np.testing.assert_allclose(estimate.values, returns.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(estimate.stderr, returns.std(axis=1, ddof=1) / 5, rtol=1e-9, atol=1e-15)


def test_monte_carlo_watch_can_stop_it_early():
    seen = []
    estimate = seed_example().monte_carlo(10**12, seed=0, watch=lambda done: seen.append(done) or len(seen) == 2)
    assert estimate.n_episodes == seen[-1] == 2 * seen[0]


def test_value_iteration_caps_report_where_they_stopped():
    slow = MRP([[0.999999, 1e-6], [0.0, 0.0]], [1.0, 0.0], 1.0)  # V = (1e6, 0), ~4e7 sweeps to certify
    result = slow.solve_iterative(max_sweeps=100)
    assert not result.converged and result.sweeps == 100 and result.values[0] == pytest.approx(100, rel=1e-4)
    assert result.error_bound >= 1e6 - 100 - 1e-3  # the bound holds: V* − V_100 = 1e6 − 100
    calls = []
    result = slow.solve_iterative(watch=lambda sweeps, bound: calls.append((sweeps, bound)) or sweeps == 7)
    assert result.sweeps == 7 and calls[0] == (0, np.inf) and len(calls) == 8
    done = seed_example().solve_iterative()
    assert done.converged and done.error_bound <= 1e-10 and done.values[0] == pytest.approx(13.68, abs=1e-10)


@pytest.mark.parametrize("method", ["direct", "iterative", "krylov"])
def test_values_that_overflow_are_reported_not_returned(method):
    mrp = MRP([[0.0, 1.0], [1.0, 0.0]], [1e306, 1e306], 0.999, states=["a", "b"])
    with pytest.raises(FloatingPointError, match=rf"the values overflow: {method} gives V\('a'\) = (inf|nan)"):
        mrp.solve(method)
    with pytest.raises(FloatingPointError, match="the values overflow: Monte Carlo gives"):
        mrp.monte_carlo(2, seed=0)
