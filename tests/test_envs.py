"""Tests for minippo.envs: dynamics against gymnasium, same-step autoreset, tabular sampling,
the gymnasium adapter, action validation, seeding and the normalisation wrappers."""
import copy
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse

from minippo import envs
from minippo.envs import (
    Box,
    CartPoleEnv,
    Discrete,
    NormalizeObservation,
    NormalizeReward,
    PendulumEnv,
    RunningMeanStd,
    TabularMDPEnv,
)
from minippo.mrp import MDP

THETA_LIMIT = 12 * 2 * np.pi / 360


def balancing_action(obs):
    """A linear controller that keeps CartPole up for the full 500 steps."""
    x, x_dot, theta, theta_dot = obs.T
    return (theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)


def step_gymnasium(gym_env, action):
    obs, reward, terminated, truncated, _ = gym_env.step(action)
    return obs, reward, terminated, truncated


# ------------------------------------------------------------------------------------------------
# Dynamics equal gymnasium's, step by step
# ------------------------------------------------------------------------------------------------
def test_cartpole_matches_gymnasium_including_termination_and_truncation():
    gymnasium = pytest.importorskip("gymnasium")
    gym_env = gymnasium.make("CartPole-v1")
    env = CartPoleEnv(num_envs=1, seed=3)
    obs, _ = env.reset()
    gym_env.reset(seed=0)
    gym_env.unwrapped.state = env.state[:, 0].copy()
    rng = np.random.default_rng(1)
    episode, step_in_episode, endings = 0, 0, []
    while episode < 4:
        # Episode 0 balances (and must be truncated at 500); later ones act randomly and fall.
        action = balancing_action(obs) if episode == 0 else rng.integers(2, size=1)
        obs, reward, terminated, truncated, infos = env.step(action)
        gym_obs, gym_reward, gym_terminated, gym_truncated = step_gymnasium(gym_env, int(action[0]))
        step_in_episode += 1
        assert reward[0] == gym_reward == 1.0
        assert (terminated[0], truncated[0]) == (gym_terminated, gym_truncated)
        if not (gym_terminated or gym_truncated):
            np.testing.assert_array_equal(obs[0], gym_obs)
            assert infos == {}
            continue
        np.testing.assert_array_equal(infos["final_obs"][0], gym_obs)
        assert infos["episode"]["l"][0] == step_in_episode
        assert infos["episode"]["r"][0] == float(step_in_episode)
        endings.append((step_in_episode, bool(gym_terminated), bool(gym_truncated)))
        episode, step_in_episode = episode + 1, 0
        gym_env.reset()
        gym_env.unwrapped.state = env.state[:, 0].copy()
    assert endings[0] == (500, False, True)
    for length, terminated, truncated in endings[1:]:
        assert terminated and not truncated and length < 100
    gym_env.close()


def test_cartpole_termination_observation_is_beyond_a_limit():
    env = CartPoleEnv(num_envs=16, seed=0)
    env.reset()
    ended = 0
    for _ in range(60):  # always pushing right topples every pole within ~10 steps
        obs, _, terminated, _, infos = env.step(np.ones(16, dtype=np.int64))
        if terminated.any():
            final = infos["final_obs"][terminated]
            outside = (np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > THETA_LIMIT)
            assert outside.all()
            ended += terminated.sum()
    assert ended >= 16


def test_pendulum_matches_gymnasium_with_clipping_and_truncation_at_200():
    gymnasium = pytest.importorskip("gymnasium")
    gym_env = gymnasium.make("Pendulum-v1")
    env = PendulumEnv(num_envs=1, seed=7)
    env.reset()
    gym_env.reset(seed=0)
    gym_env.unwrapped.state = env.state[:, 0].copy()
    rng = np.random.default_rng(2)
    for t in range(1, 201):
        action = rng.uniform(-3.0, 3.0, size=(1, 1)).astype(np.float32)  # |u| > 2 gets clipped
        obs, reward, terminated, truncated, infos = env.step(action)
        gym_obs, gym_reward, gym_terminated, gym_truncated = step_gymnasium(gym_env, action[0])
        assert reward[0] == gym_reward
        assert not terminated[0] and not gym_terminated
        assert truncated[0] == gym_truncated == (t == 200)
        np.testing.assert_array_equal(obs[0] if t < 200 else infos["final_obs"][0], gym_obs)
    assert infos["episode"]["l"][0] == 200
    assert np.abs(obs[0, 2]) <= 1.0  # the reset observation: θ̇ ~ U(-1, 1)
    gym_env.close()


def test_pendulum_reward_and_dynamics_by_hand():
    env = PendulumEnv(num_envs=2, seed=0)
    env.reset()
    env.state[:] = [[np.pi, 0.5], [0.0, -9.0]]  # columns: (θ, θ̇) = (π, 0) and (0.5, -9)
    obs, reward, *_ = env.step(np.array([[5.0], [-1.0]], dtype=np.float32))
    # Env 0: u clipped to 2; norm(π) = -π; θ̇' = (15 sin π + 3·2)·0.05; θ' = π + θ̇'·0.05.
    assert reward[0] == pytest.approx(-(np.pi**2 + 0.001 * 4.0))
    theta_dot = (15 * np.sin(np.pi) + 6.0) * 0.05
    np.testing.assert_allclose(env.state[:, 0], [np.pi + theta_dot * 0.05, theta_dot])
    # Env 1: θ̇ = -9 is penalised, and the new θ̇ is clipped to -8.
    assert reward[1] == pytest.approx(-(0.25 + 0.1 * 81 + 0.001))
    assert env.state[1, 1] == -8.0
    np.testing.assert_allclose(obs[1], [np.cos(0.5 - 0.4), np.sin(0.5 - 0.4), -8.0], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Same-step autoreset and episode statistics
# ------------------------------------------------------------------------------------------------
def test_same_step_autoreset_returns_reset_obs_final_obs_and_episode_statistics():
    env = CartPoleEnv(num_envs=6, seed=11)
    obs, infos = env.reset()
    assert infos == {}
    rng = np.random.default_rng(0)
    lengths = np.zeros(6, dtype=np.int64)
    finished = 0
    for _ in range(200):
        previous_state = env.state.copy()
        obs, rewards, terminated, truncated, infos = env.step(rng.integers(2, size=6))
        lengths += 1
        np.testing.assert_array_equal(rewards, np.ones(6))
        done = terminated | truncated
        np.testing.assert_array_equal(obs, env.state.T.astype(np.float32))  # obs is the live state
        if not done.any():
            assert infos == {}
            continue
        np.testing.assert_array_equal(infos["_final_obs"], done)
        np.testing.assert_array_equal(infos["_episode"], done)
        np.testing.assert_array_equal(infos["episode"]["l"], np.where(done, lengths, 0))
        np.testing.assert_array_equal(infos["episode"]["r"], np.where(done, lengths, 0).astype(float))
        # The new episode starts from U(-0.05, 0.05)^4 ...
        assert np.all(np.abs(obs[done]) <= 0.05)
        # ... while final_obs is the finished episode's last state: one Euler step on from before
        # (x' = x + τ ẋ and θ' = θ + τ θ̇ do not depend on the action).
        np.testing.assert_array_equal(
            infos["final_obs"][done][:, [0, 2]],
            (previous_state[[0, 2]] + 0.02 * previous_state[[1, 3]]).T[done].astype(np.float32),
        )
        lengths[done] = 0
        finished += done.sum()
    assert finished >= 20
    np.testing.assert_array_equal(env.episode_lengths, lengths)


def test_truncation_by_time_limit_reports_final_obs_and_restarts_counters():
    env = CartPoleEnv(num_envs=3, seed=5, max_episode_steps=4)
    env.reset()
    for t in range(1, 9):
        before = env.state.copy()
        obs, rewards, terminated, truncated, infos = env.step(np.array([0, 1, 0]))
        assert not terminated.any()
        np.testing.assert_array_equal(truncated, np.full(3, t % 4 == 0))
        if t % 4:
            assert infos == {}
        else:
            np.testing.assert_array_equal(infos["episode"]["l"], [4, 4, 4])
            np.testing.assert_array_equal(infos["episode"]["r"], [4.0, 4.0, 4.0])
            # final x = x + τ ẋ from the state before the step; the new episode restarts near 0.
            np.testing.assert_array_equal(infos["final_obs"][:, 0], (before[0] + 0.02 * before[1]).astype(np.float32))
            assert np.all(np.abs(obs) <= 0.05)
    np.testing.assert_array_equal(env.episode_lengths, [0, 0, 0])


# ------------------------------------------------------------------------------------------------
# Vectorized = independent single environments
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_class", [CartPoleEnv, PendulumEnv])
def test_vector_env_equals_independent_single_envs_up_to_the_first_episode_end(env_class):
    num_envs = 5
    vector = env_class(num_envs=num_envs, seed=0)
    vector.reset()
    singles = [env_class(num_envs=1, seed=100 + i) for i in range(num_envs)]
    for i, single in enumerate(singles):
        single.reset()
        single.state[:, 0] = vector.state[:, i]
    rng = np.random.default_rng(4)
    for _ in range(200):  # CartPole falls within ~50 random steps; Pendulum is truncated at 200
        actions = vector.action_space.sample(rng)
        obs, rewards, terminated, truncated, infos = vector.step(actions)
        for i, single in enumerate(singles):
            single_obs, single_reward, single_terminated, single_truncated, single_infos = single.step(
                actions[i : i + 1]
            )
            assert rewards[i] == single_reward[0]
            assert (terminated[i], truncated[i]) == (single_terminated[0], single_truncated[0])
            if terminated[i] or truncated[i]:  # after a reset the random initial states differ
                np.testing.assert_array_equal(infos["final_obs"][i], single_infos["final_obs"][0])
            else:
                np.testing.assert_array_equal(obs[i], single_obs[0])
        if infos:
            break
    assert infos and (terminated | truncated).any()


# ------------------------------------------------------------------------------------------------
# Tabular MDPs
# ------------------------------------------------------------------------------------------------
def three_state_mdp():
    """States 0, 1 and a terminal state 2 (its rows are zero); actions 0 and 1."""
    P = np.array(
        [
            [[0.2, 0.5, 0.3], [0.0, 0.1, 0.9], [0.0, 0.0, 0.0]],
            [[0.0, 0.0, 1.0], [0.6, 0.4, 0.0], [0.0, 0.0, 0.0]],
        ]
    )
    R = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    return SimpleNamespace(P=P, R=R, gamma=0.9, n_states=3, n_actions=2)


def sparse_version(mdp):
    return SimpleNamespace(**{**vars(mdp), "P": [scipy.sparse.csr_matrix(P_a) for P_a in mdp.P]})


def test_tabular_transition_frequencies_match_P():
    mdp = three_state_mdp()
    num_envs = 20_000
    for state, action in [(0, 0), (1, 0), (1, 1)]:
        env = TabularMDPEnv(mdp, num_envs=num_envs, initial_state=state, seed=state * 2 + action)
        obs, _ = env.reset()
        np.testing.assert_array_equal(obs, np.eye(3, dtype=np.float32)[np.full(num_envs, state)])
        obs, rewards, terminated, _, infos = env.step(np.full(num_envs, action))
        np.testing.assert_array_equal(rewards, np.full(num_envs, mdp.R[state, action]))
        assert not terminated.any() and infos == {}
        counts = obs.sum(axis=0)
        np.testing.assert_array_equal(counts, np.bincount(env.state, minlength=3))
        expected = num_envs * mdp.P[action, state]
        assert np.all(counts[expected == 0] == 0)  # impossible successors never appear
        positive = expected > 0
        chi_square = np.sum((counts[positive] - expected[positive]) ** 2 / expected[positive])
        assert chi_square < 13.8  # the 99.9% quantile for 2 degrees of freedom
        standard_error = np.sqrt(num_envs * mdp.P[action, state] * (1 - mdp.P[action, state]))
        assert np.all(np.abs(counts - expected) <= 4 * standard_error + 1e-9)


def test_tabular_sparse_and_dense_P_sample_identical_trajectories():
    dense = TabularMDPEnv(three_state_mdp(), num_envs=64, max_episode_steps=7, seed=9)
    sparse = TabularMDPEnv(sparse_version(three_state_mdp()), num_envs=64, max_episode_steps=7, seed=9)
    np.testing.assert_array_equal(dense.reset()[0], sparse.reset()[0])
    rng = np.random.default_rng(0)
    for _ in range(40):
        actions = rng.integers(2, size=64)
        for a, b in zip(dense.step(actions), sparse.step(actions)):
            if isinstance(a, dict):
                assert a.keys() == b.keys()
                if a:
                    np.testing.assert_array_equal(a["final_obs"], b["final_obs"])
                    np.testing.assert_array_equal(a["episode"]["r"], b["episode"]["r"])
            else:
                np.testing.assert_array_equal(a, b)


def test_tabular_terminal_state_pays_its_reward_then_terminates():
    env = TabularMDPEnv(three_state_mdp(), num_envs=4, initial_state=[0.5, 0.0, 0.5], seed=1)
    obs, _ = env.reset()
    env.state[:] = [2, 2, 1, 0]
    _, rewards, terminated, truncated, infos = env.step([0, 1, 1, 1])
    np.testing.assert_array_equal(rewards, [10.0, 20.0, 4.0, 2.0])
    np.testing.assert_array_equal(terminated, [True, True, False, False])
    assert not truncated.any()
    np.testing.assert_array_equal(infos["final_obs"][:2], [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(infos["episode"]["r"], [10.0, 20.0, 0.0, 0.0])
    np.testing.assert_array_equal(infos["episode"]["l"], [1, 1, 0, 0])
    assert set(env.state[:2]) <= {0, 2}  # restarted from the initial distribution
    assert env.state[3] == 2  # P[1][0] = (0, 0, 1)


def test_tabular_deterministic_chain_episode_return_and_length():
    # 0 -> 1 -> 2 -> terminal, reward s + 1 in state s: every episode returns 1 + 2 + 3 = 6 in 3 steps.
    P = np.zeros((1, 3, 3))
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    chain = SimpleNamespace(P=P, R=np.array([[1.0], [2.0], [3.0]]), gamma=1.0, n_states=3, n_actions=1)
    env = TabularMDPEnv(chain, num_envs=2, initial_state=0, seed=0)
    env.reset()
    for t in range(1, 7):
        obs, rewards, terminated, _, infos = env.step(np.zeros(2, dtype=np.int64))
        np.testing.assert_array_equal(rewards, [float((t - 1) % 3 + 1)] * 2)
        assert terminated.all() == (t % 3 == 0)
        if t % 3 == 0:
            np.testing.assert_array_equal(infos["episode"]["r"], [6.0, 6.0])
            np.testing.assert_array_equal(infos["episode"]["l"], [3, 3])
            np.testing.assert_array_equal(obs, [[1, 0, 0], [1, 0, 0]])


def test_tabular_all_terminal_rows_make_a_bandit():
    bandit = SimpleNamespace(P=np.zeros((2, 1, 1)), R=np.array([[0.5, -1.0]]), gamma=0.0, n_states=1, n_actions=2)
    env = TabularMDPEnv(bandit, num_envs=3, seed=0)
    env.reset()
    _, rewards, terminated, _, infos = env.step([0, 1, 0])
    np.testing.assert_array_equal(rewards, [0.5, -1.0, 0.5])
    assert terminated.all()
    np.testing.assert_array_equal(infos["episode"]["l"], [1, 1, 1])


@pytest.mark.parametrize(
    "change, error",
    [
        ({"P": np.full((2, 3, 3), 0.5)}, ValueError),  # rows sum to 1.5
        ({"P": -three_state_mdp().P}, ValueError),
        ({"P": np.ones((2, 3, 2)) / 2}, ValueError),  # not square
        ({"P": three_state_mdp().P[:1]}, ValueError),  # one action missing
        ({"R": np.zeros((2, 3))}, ValueError),
        ({"R": np.full((3, 2), np.nan)}, ValueError),
    ],
)
def test_tabular_rejects_malformed_mdps(change, error):
    mdp = SimpleNamespace(**{**vars(three_state_mdp()), **change})
    with pytest.raises(error):
        TabularMDPEnv(mdp)


def test_tabular_rejects_bad_initial_state_and_duck_type():
    with pytest.raises(ValueError, match="initial_state"):
        TabularMDPEnv(three_state_mdp(), initial_state=3)
    with pytest.raises(ValueError, match="sum to 1"):
        TabularMDPEnv(three_state_mdp(), initial_state=[0.5, 0.1, 0.1])
    with pytest.raises(TypeError, match="n_actions"):
        TabularMDPEnv(SimpleNamespace(P=None, R=None, n_states=1))


def with_P(P):
    return SimpleNamespace(**{**vars(three_state_mdp()), "P": P})


def test_tabular_tables_follow_the_one_rule_of_mrp_and_mdp():
    # Row sums within max(1e-12, S·eps) of 1, as for MRP and MDP: 1 + 1e-9 is refused, rounding is not.
    off = three_state_mdp().P.copy()
    off[0, 0] = [0.2, 0.5, 0.3 + 1e-9]
    with pytest.raises(ValueError, match=r"row 0 of mdp.P\[0\] sums to 1.000000001"):
        TabularMDPEnv(with_P(off))
    with pytest.raises(ValueError, match=r"row 0 of P\[0\] sums to 1.000000001"):
        MDP(off, three_state_mdp().R, 0.9)
    rounded = np.zeros((1, 10, 10))
    rounded[0, :9, 9] = 1.0
    rounded[0, 0, :] = 0.1  # sums to 0.9999999999999999
    rounded[0, 9, :] = 0.0
    env = TabularMDPEnv(SimpleNamespace(P=rounded, R=np.zeros((10, 1)), n_states=10, n_actions=1))
    np.testing.assert_array_equal(env.terminal, np.arange(10) == 9)
    # A terminal state has an all-zero row under every action.
    one_action_ends = three_state_mdp().P.copy()
    one_action_ends[1, 1] = 0.0
    with pytest.raises(ValueError, match=r"state 1 has an all-zero \(terminal\) row in one of mdp.P\[0\], mdp.P\[1\]"):
        TabularMDPEnv(with_P(one_action_ends))
    with pytest.raises(ValueError, match=r"mdp.P\[0\]\[0, 0\] = -0.2 is negative"):
        TabularMDPEnv(with_P(-three_state_mdp().P))
    with pytest.raises(ValueError, match=r"mdp.R\[0, 0\] is nan; mdp.R must be finite"):
        TabularMDPEnv(SimpleNamespace(**{**vars(three_state_mdp()), "R": np.full((3, 2), np.nan)}))


# ------------------------------------------------------------------------------------------------
# gymnasium adapter
# ------------------------------------------------------------------------------------------------
def run_adapter(env, steps, seed):
    """Step ``env`` with actions from ``seed``; check same-step semantics; return what it saw."""
    rng = np.random.default_rng(seed)
    lengths = np.zeros(env.num_envs, dtype=np.int64)
    record = []
    for _ in range(steps):
        obs, rewards, terminated, truncated, infos = env.step(rng.integers(2, size=env.num_envs))
        lengths += 1
        done = terminated | truncated
        if done.any():
            final = infos["final_obs"][done]
            assert np.all((np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > THETA_LIMIT))
            assert np.all(np.abs(obs[done]) <= 0.05)  # the next episode's first observation
            np.testing.assert_array_equal(infos["episode"]["l"], np.where(done, lengths, 0))
            np.testing.assert_array_equal(infos["episode"]["r"], np.where(done, lengths, 0.0))
            lengths[done] = 0
        record.append((obs, rewards, terminated, truncated, infos.get("final_obs")))
    return record


def test_gymnasium_adapter_gives_same_step_autoreset_in_every_gymnasium_mode():
    gymnasium = pytest.importorskip("gymnasium")
    from minippo.envs import GymnasiumAdapter

    same_step = envs.make("gymnasium:CartPole-v1", num_envs=3, seed=0)
    assert same_step.autoreset_mode == gymnasium.vector.AutoresetMode.SAME_STEP
    assert same_step.single_observation_space == CartPoleEnv().single_observation_space
    assert same_step.action_space == Discrete(2, shape=(3,))
    next_step = GymnasiumAdapter(gymnasium.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync"))
    assert next_step.autoreset_mode == gymnasium.vector.AutoresetMode.NEXT_STEP
    first_obs, _ = same_step.reset()
    np.testing.assert_array_equal(first_obs, next_step.reset(seed=0)[0])
    seen_same, seen_next = run_adapter(same_step, 120, seed=3), run_adapter(next_step, 120, seed=3)
    assert sum(record[2].sum() for record in seen_same) >= 10
    # Both ways of getting same-step semantics from gymnasium produce the same trajectory.
    for a, b in zip(seen_same, seen_next):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    same_step.close()
    next_step.close()


def test_gymnasium_adapter_follows_native_dynamics():
    pytest.importorskip("gymnasium")
    adapter = envs.make("gymnasium:CartPole-v1", num_envs=2, seed=0)
    native = CartPoleEnv(num_envs=2, seed=0)
    adapter.reset()
    native.reset()
    for i, sub_env in enumerate(adapter.gym_env.envs):
        sub_env.unwrapped.state = native.state[:, i].copy()
    for _ in range(5):
        actions = np.array([1, 0])
        for ours, theirs in zip(native.step(actions)[:4], adapter.step(actions)[:4]):
            np.testing.assert_array_equal(ours, theirs)


def test_gymnasium_adapter_refuses_what_it_cannot_convert():
    gymnasium = pytest.importorskip("gymnasium")
    from minippo.envs import GymnasiumAdapter

    vector_entry_point = gymnasium.make_vec("CartPole-v1", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="reset_mask"):
        GymnasiumAdapter(vector_entry_point)
    with pytest.raises(TypeError, match="VectorEnv"):
        GymnasiumAdapter(gymnasium.make("CartPole-v1"))
    with pytest.raises(ValueError, match="gymnasium cannot make"):
        envs.make("gymnasium:NoSuchEnv-v0")


def test_gymnasium_ids_without_gymnasium_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # makes `import gymnasium` fail
    with pytest.raises(ImportError, match=r'pip install "minippo\[bench\]"'):
        envs.make("gymnasium:CartPole-v1")
    assert envs.make("CartPole-v1").num_envs == 1  # native envs never need it


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "actions, error, message",
    [
        (np.array([0, 1]), ValueError, "shape"),
        (np.array([[0], [1], [0]]), ValueError, "shape"),
        (np.array([0, 2, 1]), ValueError, r"in \{0, ..., 1\}"),
        (np.array([0, -1, 1]), ValueError, r"in \{0, ..., 1\}"),
        (np.array([0.0, 1.0, 1.0]), TypeError, "integers"),
        (np.array([True, False, True]), TypeError, "integers"),
        (["left", "right", "left"], TypeError, "integers"),
    ],
)
def test_cartpole_rejects_bad_actions(actions, error, message):
    env = CartPoleEnv(num_envs=3, seed=0)
    env.reset()
    with pytest.raises(error, match=message):
        env.step(actions)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64, ">i8"])
def test_discrete_checks_the_range_in_every_integer_dtype(dtype):
    space = Discrete(3, shape=(4,))
    for valid in ([0, 1, 2, 2], [2, 0, 0, 1]):
        checked = space.check_action(np.array(valid, dtype=dtype))
        assert checked.dtype == np.int64 and checked.tolist() == valid
    info = np.iinfo(dtype)
    bad_values = [3, info.max] + ([-1, info.min] if info.min < 0 else [])
    for bad in bad_values:  # at every position
        for position in range(4):
            actions = np.zeros(4, dtype=dtype)
            actions[position] = bad
            with pytest.raises(ValueError, match=r"in \{0, ..., 2\}"):
                space.check_action(actions)
    assert Discrete(3).contains(np.uint8(2)) and not Discrete(3).contains(np.int8(-1))
    assert space.check_action(np.zeros((8,), dtype=dtype)[::2]).tolist() == [0, 0, 0, 0]  # strided


@pytest.mark.parametrize(
    "actions, error, message",
    [
        (np.array([[0.0], [np.nan]]), ValueError, "finite"),
        (np.array([0.0, 1.0]), ValueError, "shape"),
        (np.array([[1 + 1j], [0]]), TypeError, "real"),
    ],
)
def test_pendulum_rejects_bad_actions(actions, error, message):
    env = PendulumEnv(num_envs=2, seed=0)
    env.reset()
    with pytest.raises(error, match=message):
        env.step(actions)


def test_continuous_actions_are_clipped_into_the_box_before_the_cast():
    env, twin = PendulumEnv(num_envs=4, seed=0), PendulumEnv(num_envs=4, seed=0)
    env.reset()
    twin.reset()
    # float64 1e39 would be float32 inf if cast first; ±inf are clipped to the bounds like any value.
    _, rewards, *_ = env.step(np.array([[1e39], [-1e39], [np.inf], [-np.inf]]))
    _, expected, *_ = twin.step(np.array([[2.0], [-2.0], [2.0], [-2.0]], dtype=np.float32))
    np.testing.assert_array_equal(rewards, expected)
    np.testing.assert_array_equal(env.state, twin.state)

    box = Box(-np.inf, [1.0, np.inf])
    np.testing.assert_array_equal(box.check_action(np.array([-5.0, 1e30])), np.float32([-5.0, 1e30]))
    np.testing.assert_array_equal(box.check_action(np.array([np.inf, 0.0])), np.float32([1.0, 0.0]))
    for beyond_float32 in ([0.0, 1e39], [-1e39, 0.0], [0.0, np.inf]):  # infinite bound: nothing to clip to
        with pytest.raises(ValueError, match="finite float32"):
            box.check_action(np.array(beyond_float32))
        assert not box.contains(np.array(beyond_float32))
    assert box.contains(np.array([0.5, 1e30])) and not box.contains(np.array([2.0, 0.0]))


def test_step_before_reset_and_after_close_raise():
    env = envs.make("CartPole-v1", num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0, 1])
    env.reset()
    env.step([0, 1])
    env.close()
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0, 1])


def test_make_rejects_unknown_ids_and_bad_arguments():
    with pytest.raises(ValueError, match="CartPole-v1, Pendulum-v1"):
        envs.make("MountainCar-v0")
    with pytest.raises(TypeError, match="num_envs"):
        envs.make("CartPole-v1", num_envs=2.0)
    with pytest.raises(ValueError, match="num_envs"):
        envs.make("CartPole-v1", num_envs=0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        envs.make("Pendulum-v1", max_episode_steps=0)
    with pytest.raises(ValueError, match="options"):
        envs.make("CartPole-v1").reset(options={"low": -0.1})


@pytest.mark.parametrize("g, error", [(float("nan"), ValueError), (np.inf, ValueError), (-1.0, ValueError),
                                      ("x", TypeError), (None, TypeError), (True, TypeError)])
def test_pendulum_rejects_bad_gravity(g, error):
    with pytest.raises(error, match="g must be"):
        envs.make("Pendulum-v1", g=g)


def test_pendulum_gravity_sets_the_dynamics():
    env = envs.make("Pendulum-v1", num_envs=1, seed=0, g=np.float32(0.0))
    env.reset()
    env.state[:] = [[1.0], [0.0]]
    env.step(np.zeros((1, 1), dtype=np.float32))
    np.testing.assert_array_equal(env.state, [[1.0], [0.0]])  # no gravity and no torque: no motion
    assert env.g == 0.0 and type(env.g) is float


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)])
@pytest.mark.parametrize("make_env", [
    lambda seed: envs.make("CartPole-v1", seed=seed),
    lambda seed: envs.make("Pendulum-v1", seed=seed),
    lambda seed: TabularMDPEnv(three_state_mdp(), seed=seed),
    lambda seed: envs.make("CartPole-v1").reset(seed=seed),
], ids=["CartPole", "Pendulum", "tabular", "reset"])
def test_bad_seeds_are_rejected_by_name(make_env, seed, error):
    with pytest.raises(error, match="seed"):
        make_env(seed)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError)])
def test_gymnasium_adapter_rejects_bad_seeds_by_name(seed, error):
    pytest.importorskip("gymnasium")
    with pytest.raises(error, match="seed"):
        envs.make("gymnasium:CartPole-v1", seed=seed)
    env = envs.make("gymnasium:CartPole-v1")
    with pytest.raises(error, match="seed"):
        env.reset(seed=seed)


# ------------------------------------------------------------------------------------------------
# Seeding
# ------------------------------------------------------------------------------------------------
def rollout(env, steps, action_seed):
    rng = np.random.default_rng(action_seed)
    outputs = [env.reset()[0]]
    for _ in range(steps):
        obs, rewards, terminated, truncated, infos = env.step(env.action_space.sample(rng))
        outputs += [obs, rewards, terminated, truncated, infos.get("final_obs", np.zeros(0))]
    return outputs


@pytest.mark.parametrize(
    "make_env",
    [
        lambda seed: envs.make("CartPole-v1", num_envs=4, seed=seed),
        lambda seed: envs.make("Pendulum-v1", num_envs=4, seed=seed, max_episode_steps=30),
        lambda seed: TabularMDPEnv(three_state_mdp(), num_envs=4, max_episode_steps=5, seed=seed),
    ],
)
def test_same_seed_same_trajectory_different_seed_different_trajectory(make_env):
    first, again, other = (rollout(make_env(seed), 100, action_seed=0) for seed in (42, 42, 43))
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))


def test_reset_with_seed_reseeds_and_generators_are_accepted():
    env = CartPoleEnv(num_envs=3)
    obs_a, _ = env.reset(seed=5)
    env.step([0, 1, 0])
    obs_b, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs_a, obs_b)
    obs_c, _ = CartPoleEnv(num_envs=3, seed=np.random.default_rng(5)).reset()
    np.testing.assert_array_equal(obs_a, obs_c)
    assert np.all(np.abs(obs_a) <= 0.05)


def test_gymnasium_generator_seeds_are_reproducible():
    pytest.importorskip("gymnasium")

    def make(rng):
        return envs.make("gymnasium:CartPole-v1", num_envs=2, seed=rng)

    first, again, other = (rollout(make(np.random.default_rng(seed)), 60, action_seed=0) for seed in (0, 0, 1))
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], other[0])
    # The generator gives the integer seed int(rng.integers(2**32)), as documented.
    integer = int(np.random.default_rng(0).integers(2**32))
    np.testing.assert_array_equal(first[0], envs.make("gymnasium:CartPole-v1", num_envs=2, seed=integer).reset()[0])
    env = make(None)
    np.testing.assert_array_equal(env.reset(seed=np.random.default_rng(0))[0], first[0])
    np.testing.assert_array_equal(envs.make("gymnasium:CartPole-v1", num_envs=2, seed=np.int64(integer)).reset()[0],
                                  first[0])  # a NumPy integer seed is passed on as an int


# ------------------------------------------------------------------------------------------------
# Spaces
# ------------------------------------------------------------------------------------------------
def test_spaces_sample_contains_and_batch():
    box = Box(-1.0, [1.0, 2.0, np.inf])
    assert box.shape == (3,) and box.dtype == np.float32
    samples = np.array([box.sample(i) for i in range(200)])
    assert all(box.contains(s) for s in samples)
    assert samples[:, 1].max() > 1.0 and samples[:, 2].max() > 2.0  # uses the whole range
    np.testing.assert_array_equal(box.sample(3), box.sample(np.random.default_rng(3)))
    assert not box.contains([0.0, 3.0, 0.0]) and not box.contains([0.0, 0.0]) and not box.contains([0, np.nan, 0])
    assert box.batch(4) == Box(-1.0, [1.0, 2.0, np.inf], shape=(4, 3))

    discrete = Discrete(3)
    assert discrete.contains(2) and not discrete.contains(3) and not discrete.contains(1.0)
    batch = discrete.batch(5)
    assert batch.shape == (5,) and batch.contains(batch.sample(0))
    counts = np.bincount(Discrete(3, shape=(3000,)).sample(0), minlength=3)
    assert counts.min() > 900
    with pytest.raises(ValueError):
        Box(1.0, 0.0)
    with pytest.raises(TypeError):
        Discrete(2.5)
    for shape in [(1.5,), 1.5, "ab", (True,), None]:
        with pytest.raises(TypeError, match="shape must be a tuple of ints"):
            Discrete(2, shape=shape)
    with pytest.raises(TypeError, match="shape"):
        Box(0.0, 1.0, shape=(1.5,))
    assert Box(0.0, 1.0, shape=np.int64(2)).shape == (2,) and Discrete(2, shape=(np.int32(3),)).shape == (3,)


def test_spaces_from_gymnasium():
    gymnasium = pytest.importorskip("gymnasium")
    from minippo.envs.gymnasium_adapter import space_from_gymnasium

    box = space_from_gymnasium(gymnasium.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32), "space")
    assert box == PendulumEnv().single_action_space
    assert space_from_gymnasium(gymnasium.spaces.Discrete(4), "space") == Discrete(4)
    with pytest.raises(ValueError, match="start"):
        space_from_gymnasium(gymnasium.spaces.Discrete(4, start=1), "space")
    with pytest.raises(ValueError, match="floating"):
        space_from_gymnasium(gymnasium.spaces.Box(0, 255, shape=(2,), dtype=np.uint8), "space")


# ------------------------------------------------------------------------------------------------
# Running statistics and normalisation wrappers
# ------------------------------------------------------------------------------------------------
def test_running_mean_std_equals_statistics_of_the_concatenated_data():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) * [1.0, 10.0, 0.1] for n in (1, 7, 0, 64, 2, 500)]
    rms = RunningMeanStd(shape=(3,))
    np.testing.assert_array_equal(rms.var, np.ones(3))
    for batch in batches:
        rms.update(batch)
    data = np.concatenate(batches)
    assert rms.count == len(data) == 574
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-12)

    restored = RunningMeanStd(shape=(3,))
    restored.load_state_dict({key: value.tolist() for key, value in rms.state_dict().items()})  # via JSON
    assert restored.count == 574
    more = rng.normal(size=(10, 3))
    rms.update(more)
    restored.update(more)
    np.testing.assert_array_equal(restored.mean, rms.mean)
    np.testing.assert_allclose(restored.var, np.concatenate([data, more]).var(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        rms.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="keys"):
        restored.load_state_dict({"mean": np.zeros(3)})


def test_running_mean_std_shapes_and_scalar_updates():
    scalar = RunningMeanStd()
    for value in (1.0, np.float32(4.0), np.array([7.0, 10.0])):  # a number is a batch of one
        scalar.update(value)
    assert scalar.count == 4 and scalar.mean == 5.5 and scalar.var == np.var([1.0, 4.0, 7.0, 10.0])
    assert RunningMeanStd(shape=3).shape == (3,) and RunningMeanStd(shape=[2, np.int64(2)]).mean.shape == (2, 2)
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd(shape=3).update(1.0)  # a scalar is not a sample of shape (3,)
    for shape in [(1.5,), "ab", None]:
        with pytest.raises(TypeError, match="shape must be a tuple of ints"):
            RunningMeanStd(shape=shape)
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd(shape=(-1,))


def test_normalize_observation_uses_all_observations_seen_so_far():
    env = NormalizeObservation(CartPoleEnv(num_envs=4, seed=0), clip=5.0)
    raw = copy.deepcopy(env.unwrapped)  # an identical twin that shows the raw observations
    seen = [raw.reset()[0]]
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.integers(2, size=4)
        raw_obs, _, _, _, raw_infos = raw.step(actions)
        obs, _, _, _, infos = env.step(actions)
        seen.append(raw_obs)
        data = np.concatenate(seen)
        expected = np.clip((raw_obs - data.mean(axis=0)) / np.sqrt(data.var(axis=0) + 1e-8), -5, 5)
        np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-6)
        if "final_obs" in raw_infos:
            np.testing.assert_allclose(infos["final_obs"], env.normalize(raw_infos["final_obs"]))
    assert obs.dtype == np.float32 and np.abs(obs).max() <= 5.0
    env.update_stats = False
    count = env.obs_rms.count
    env.step(np.zeros(4, dtype=np.int64))
    assert env.obs_rms.count == count


def test_normalize_observation_keeps_the_environment_dtype_or_the_one_asked_for():
    """float32 CartPole gives float32 by default; asked for float64 (a float64 PPO run), the float64
    standardised values are returned unrounded."""
    default = NormalizeObservation(CartPoleEnv(num_envs=4, seed=0))
    wide = NormalizeObservation(CartPoleEnv(num_envs=4, seed=0), dtype=np.float64)
    assert default.single_observation_space.dtype == np.float32 and default.reset()[0].dtype == np.float32
    assert wide.single_observation_space.dtype == np.float64 and wide.observation_space.dtype == np.float64
    obs = wide.reset()[0]
    for _ in range(3):
        obs, _, _, _, _ = wide.step(np.ones(4, dtype=np.int64))
    raw = wide.unwrapped.state.T.astype(np.float32).astype(np.float64)  # what the env returned
    np.testing.assert_array_equal(obs, (raw - wide.obs_rms.mean) / np.sqrt(wide.obs_rms.var + 1e-8))
    assert not np.array_equal(obs, obs.astype(np.float32))  # not rounded to float32
    with pytest.raises(TypeError, match="floating dtype"):
        NormalizeObservation(CartPoleEnv(num_envs=4, seed=0), dtype=np.int64)


def test_normalize_reward_scales_by_std_of_discounted_return():
    env = NormalizeReward(PendulumEnv(num_envs=3, seed=0, max_episode_steps=10), gamma=0.9, clip=2.0)
    raw = copy.deepcopy(env.unwrapped)  # an identical twin that shows the raw rewards
    env.reset()
    raw.reset()
    returns, history = np.zeros(3), []
    rng = np.random.default_rng(0)
    for _ in range(25):
        actions = rng.uniform(-2, 2, size=(3, 1)).astype(np.float32)
        _, raw_rewards, _, _, raw_infos = raw.step(actions)
        _, scaled, terminated, truncated, infos = env.step(actions)
        returns = 0.9 * returns + raw_rewards
        history.append(returns.copy())
        variance = np.concatenate(history).var()
        np.testing.assert_allclose(env.return_rms.var, variance, rtol=1e-10)
        np.testing.assert_allclose(scaled, np.clip(raw_rewards / np.sqrt(variance + 1e-8), -2, 2), rtol=1e-10)
        if truncated.any():
            np.testing.assert_array_equal(infos["episode"]["r"], raw_infos["episode"]["r"])  # unscaled
            returns[truncated | terminated] = 0.0
    np.testing.assert_array_equal(env.discounted_returns, returns)


@pytest.mark.parametrize(
    "make_wrapper, error",
    [
        (lambda env: NormalizeReward(env, gamma=1.5), ValueError),
        (lambda env: NormalizeReward(env, gamma="0.9"), TypeError),
        (lambda env: NormalizeReward(env, epsilon=0.0), ValueError),
        (lambda env: NormalizeObservation(env, clip=-1.0), ValueError),
    ],
)
def test_wrappers_reject_bad_arguments(make_wrapper, error):
    with pytest.raises(error):
        make_wrapper(CartPoleEnv())


def test_wrappers_forward_the_interface():
    env = NormalizeReward(NormalizeObservation(CartPoleEnv(num_envs=2, seed=0), clip=3.0))
    assert env.num_envs == 2 and env.action_space == Discrete(2, shape=(2,))
    assert env.single_observation_space == Box(-3.0, 3.0, shape=(4,))
    assert isinstance(env.unwrapped, CartPoleEnv)
    with env:
        obs, _ = env.reset()
        assert obs.shape == (2, 4)
    with pytest.raises(RuntimeError, match="reset"):  # closed by the with block
        env.step([0, 1])
