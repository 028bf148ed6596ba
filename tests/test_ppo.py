"""Tests for the actor-critic, PPO and REINFORCE (minippo.rl.actor_critic, gaussian, ppo) and their commands.

Gradients are checked against float64 finite differences; REINFORCE's estimate against the exact
gradient of an enumerable two-step MDP; GAE against a per-episode loop; learning against CartPole
and against the exact optimum of a tabular MDP.
"""
import argparse
import csv
import itertools
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from minippo import envs
from minippo.cli import main
from minippo.commands import evaluate as evaluate_command
from minippo.commands import train_ppo as train_ppo_command
from minippo.mrp import MDP
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.gpt import GPTConfig
from minippo.nn.mlp import MLP
from minippo.rl.actor_critic import ActorCritic, sample_categorical
from minippo.rl.advantages import generalized_advantages, whiten
from minippo.rl.evaluation import evaluate_policy
from minippo.rl.kl import AdaptiveKLController, FixedKLController
from minippo.rl.losses import (
    _weights,
    explained_variance,
    ppo_policy_loss,
    reinforce_loss,
    value_loss,
)
from minippo.rl.ppo import (
    Trainer,
    find_wrapper,
    load_policy,
    make_env,
    ppo_loss_and_gradients,
    reinforce_loss_and_gradients,
)
from minippo.rl.ppo_config import PPOConfig, preset_for
from minippo.rl.rollout_buffer import Batch, RolloutBuffer, gae_targets
from tests.gradcheck import check_gradients

OBS_DIM, N_ACTIONS, ACTION_DIM = 3, 4, 2


def make_agent(continuous, seed=0):
    """A float64 actor-critic with random (not initial) parameters, so that no gradient is trivially 0."""
    action_space = envs.Box(-1.0, 1.0, shape=(ACTION_DIM,)) if continuous else envs.Discrete(N_ACTIONS)
    agent = ActorCritic(envs.Box(-np.inf, np.inf, shape=(OBS_DIM,)), action_space, hidden_sizes=(5, 4),
                        dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for value in agent.params.values():
        value += 0.5 * rng.standard_normal(value.shape)
    return agent


def make_batch(agent, rng, n=8):
    """Stored samples whose ratios and value changes fall on both sides of the clip range (ε = 0.2)."""
    obs = rng.standard_normal((n, OBS_DIM))
    if agent.continuous:
        actions = rng.standard_normal((n, ACTION_DIM))
    else:
        actions = rng.integers(0, N_ACTIONS, n)
    logprobs, _, values = agent.evaluate(obs, actions)
    offsets = np.resize([-0.6, -0.1, 0.1, 0.6], n)  # ρ = e^{-offset}: 1.82, 1.11, 0.90, 0.55
    advantages = rng.standard_normal(n)
    advantages[:4] = [1.0, -1.0, 1.0, -1.0]  # both signs at both kinds of ratio
    return Batch(obs, actions, logprobs + offsets, values + np.resize([0.5, -0.05, 0.05, -0.5], n),
                 advantages, values + rng.standard_normal(n))


def check_loss_gradient(loss_and_gradients, agent, batch, config):
    agent.zero_grad()
    stats = loss_and_gradients(agent, batch, config)
    params = agent.params
    analytic = {name: gradient.copy() for name, gradient in agent.grads.items()}
    check_gradients(lambda: loss_and_gradients(agent, batch, config)["loss"], params, analytic)
    return stats


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_ppo_loss_gradient_matches_finite_differences(continuous):
    agent = make_agent(continuous)
    batch = make_batch(agent, np.random.default_rng(1))
    config = PPOConfig(ent_coef=0.3, vf_coef=0.7)
    stats = check_loss_gradient(ppo_loss_and_gradients, agent, batch, config)
    assert 0 < stats["clipfrac"] < 1  # both the clipped (zero-gradient) and the unclipped branch ran


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
def test_reinforce_loss_gradient_matches_finite_differences(continuous):
    agent = make_agent(continuous, seed=3)
    batch = make_batch(agent, np.random.default_rng(4))
    check_loss_gradient(reinforce_loss_and_gradients, agent, batch, PPOConfig(ent_coef=0.2, vf_coef=0.7))


def test_reinforce_whitens_the_returns_when_norm_adv_is_on():
    """docs/ppo.md: with norm_adv (the default) Â = whiten(A), and A = G without a baseline."""
    agent = make_agent(continuous=False, seed=5)
    batch = make_batch(agent, np.random.default_rng(6))
    config = PPOConfig(algo="reinforce", reinforce_baseline=False, ent_coef=0.0)
    assert config.norm_adv and preset_for("CartPole-v1", "cartpole-reinforce").norm_adv
    logprobs = agent.evaluate(batch.obs, batch.actions).logprobs
    for norm_adv, advantages in [(True, whiten(batch.advantages)), (False, batch.advantages)]:
        stats = reinforce_loss_and_gradients(agent, batch, replace(config, norm_adv=norm_adv))
        assert stats["policy_loss"] == pytest.approx(-np.mean(advantages * logprobs), rel=1e-12)
    assert not np.isclose(np.mean(whiten(batch.advantages) * logprobs), np.mean(batch.advantages * logprobs))


def test_gaussian_head_matches_the_multivariate_normal_density():
    agent = make_agent(continuous=True)
    rng = np.random.default_rng(0)
    obs, actions = rng.standard_normal((5, OBS_DIM)), rng.standard_normal((5, ACTION_DIM))
    logprobs, entropy, _ = agent.evaluate(obs, actions)
    covariance = np.diag(np.exp(2 * agent.params["log_std"]))  # Σ = diag(σ²)
    for action, mean, logprob in zip(actions, agent.actor.forward(obs), logprobs):
        error = action - mean  # log N(a; μ, Σ) = −½ (a − μ)ᵀ Σ⁻¹ (a − μ) − ½ log det(2πΣ)
        log_det = np.linalg.slogdet(2 * np.pi * covariance)[1]
        expected = -0.5 * error @ np.linalg.solve(covariance, error) - 0.5 * log_det
        assert logprob == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(entropy, 0.5 * np.linalg.slogdet(2 * np.pi * np.e * covariance)[1], rtol=1e-12)


def test_sampling_follows_the_policy():
    rng = np.random.default_rng(0)
    probs = np.array([0.1, 0.6, 0.0, 0.3])
    with np.errstate(divide="ignore"):  # log 0 = −inf: an impossible action
        actions = sample_categorical(np.log(np.tile(probs, (200_000, 1))), rng)
    frequencies = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(frequencies, probs, atol=4 * np.sqrt(0.25 / len(actions)))

    agent = make_agent(continuous=True)
    obs = np.tile(rng.standard_normal(OBS_DIM), (100_000, 1))
    actions, logprobs, _ = agent.act(obs, rng)
    mean, std = agent.actor.forward(obs[:1])[0], np.exp(agent.params["log_std"])
    np.testing.assert_allclose(actions.mean(axis=0), mean, atol=4 * std.max() / np.sqrt(len(obs)))
    np.testing.assert_allclose(actions.std(axis=0), std, rtol=0.02)
    np.testing.assert_allclose(logprobs, agent.evaluate(obs, actions).logprobs)
    deterministic, _, _ = agent.act(obs[:3], rng, deterministic=True)
    np.testing.assert_allclose(deterministic, np.tile(mean, (3, 1)), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# REINFORCE against the exact gradient of a two-step MDP
# ------------------------------------------------------------------------------------------------
# State 0 --a--> state 1 or 2 (P below) --a--> the episode ends.  Every episode lasts exactly 2 steps.
TWO_STEP_P = np.zeros((2, 3, 3))
TWO_STEP_P[0, 0] = [0.0, 0.8, 0.2]
TWO_STEP_P[1, 0] = [0.0, 0.3, 0.7]
TWO_STEP_R = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, -1.0]])
LOGITS = np.array([[0.3, -0.2], [0.5, 0.1], [-0.4, 0.6]])  # θ: the policy's logits per state


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def trajectories(logits):
    """Every trajectory τ = (a₀, s₁, a₁) with its probability P(τ), return R(τ) and ∇_θ log P(τ)."""
    pi = softmax(logits)
    for a0, s1, a1 in itertools.product(range(2), (1, 2), range(2)):
        probability = pi[0, a0] * TWO_STEP_P[a0, 0, s1] * pi[s1, a1]
        score = np.zeros_like(logits)  # ∇ log π(a|s) = onehot(a) − π(·|s) in row s
        score[0] += np.eye(2)[a0] - pi[0]
        score[s1] += np.eye(2)[a1] - pi[s1]
        yield probability, TWO_STEP_R[0, a0] + TWO_STEP_R[s1, a1], score


def exact_return(logits):
    return sum(p * ret for p, ret, _ in trajectories(logits))


def test_exact_policy_gradient_agrees_with_finite_differences():
    exact = sum(p * ret * score for p, ret, score in trajectories(LOGITS))  # ∇E[R] = E[R(τ) ∇log P(τ)]
    logits, h = LOGITS.copy(), 1e-6
    numerical = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        logits[index] += h
        plus = exact_return(logits)
        logits[index] -= 2 * h
        numerical[index] = (plus - exact_return(logits)) / (2 * h)
        logits[index] += h
    np.testing.assert_allclose(exact, numerical, atol=1e-8)


def test_reinforce_estimate_converges_to_the_exact_gradient():
    num_envs, rollouts = 64, 400
    mdp = types.SimpleNamespace(P=TWO_STEP_P, R=TWO_STEP_R, n_states=3, n_actions=2)
    env = envs.TabularMDPEnv(mdp, num_envs=num_envs, initial_state=0, seed=0)
    config = PPOConfig(algo="reinforce", num_envs=num_envs, num_steps=2, total_steps=2 * num_envs, gamma=1.0,
                       norm_adv=False, reinforce_baseline=False, ent_coef=0.0, hidden_sizes=())
    trainer = Trainer(config, env=env)
    # With one-hot observations and no hidden layer, row s of the weight matrix *is* the logits of s.
    trainer.agent.params["actor.layers.0.weight"][...] = LOGITS
    trainer.agent.params["actor.layers.0.bias"][...] = 0.0
    estimates = []
    for _ in range(rollouts):
        rollout = trainer.collect_rollout()
        assert rollout.terminations[1].all() and not rollout.terminations[0].any()  # whole episodes only
        advantages, returns = gae_targets(rollout, config.gamma, 1.0, use_critic=False)
        trainer.agent.zero_grad()
        reinforce_loss_and_gradients(trainer.agent, trainer.flat_batch(advantages, returns), config)
        # L = −(1/(T·N)) Σ_t G_t log π(a_t|s_t): the mean per-episode estimate Σ_t G_t ∇log π is −T ∇L.
        estimates.append(-config.num_steps * trainer.agent.grads["actor.layers.0.weight"].astype(np.float64))
    estimates = np.array(estimates)
    mean, standard_error = estimates.mean(axis=0), estimates.std(axis=0, ddof=1) / np.sqrt(rollouts)
    exact = sum(p * ret * score for p, ret, score in trajectories(LOGITS))
    assert np.all(np.abs(mean - exact) < 4 * standard_error), (mean, exact, standard_error)
    assert standard_error.max() < 0.05 * np.abs(exact).max()  # the check has teeth


# ------------------------------------------------------------------------------------------------
# GAE targets of a rollout against a per-episode loop
# ------------------------------------------------------------------------------------------------
def naive_targets(rewards, values, terminations, truncations, final_values, last_values, gamma, lam):
    """A_t = Σ_k (γλ)^(k−t) δ_k over the rest of t's episode inside the rollout, one env at a time."""
    T, N = rewards.shape
    advantages = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                if terminations[k, n]:
                    next_value = 0.0
                elif truncations[k, n]:
                    next_value = final_values[k, n]
                else:
                    next_value = values[k + 1, n] if k + 1 < T else last_values[n]
                total += weight * (rewards[k, n] + gamma * next_value - values[k, n])
                if terminations[k, n] or truncations[k, n]:
                    break
                weight *= gamma * lam
            advantages[t, n] = total
    return advantages, advantages + values


def synthetic_rollout(seed=0, T=12, N=3):
    rng = np.random.default_rng(seed)
    rollout = RolloutBuffer(T, N, (OBS_DIM,), (), np.int64, np.float64)
    rollout.rewards[...] = rng.standard_normal((T, N))
    rollout.values[...] = rng.standard_normal((T, N))
    rollout.final_values[...] = rng.standard_normal((T, N))
    rollout.last_values[...] = rng.standard_normal(N)
    rollout.terminations[[2, 7, 9], [0, 1, 2]] = True
    rollout.truncations[[4, 7, 11, 5], [0, 1, 1, 2]] = True  # (7, 1): terminated and truncated at once
    return rollout


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
def test_gae_targets_match_a_per_episode_loop(gamma, lam):
    rollout = synthetic_rollout()
    advantages, returns = gae_targets(rollout, gamma, lam)
    expected = naive_targets(rollout.rewards, rollout.values, rollout.terminations, rollout.truncations,
                             rollout.final_values, rollout.last_values, gamma, lam)
    np.testing.assert_allclose(advantages, expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(returns, expected[1], rtol=1e-12, atol=1e-12)


def test_gae_batch_major_equals_time_major_bit_for_bit():
    """RLHF passes (B, T) arrays with time_axis=1; the control tasks (T, N) with time along axis 0."""
    rollout = synthetic_rollout(seed=3)
    rng = np.random.default_rng(4)
    time_major = (rollout.rewards, rollout.values, rng.standard_normal(rollout.values.shape),
                  (rng.random(rollout.values.shape) > 0.2).astype(np.float64),
                  (rng.random(rollout.values.shape) > 0.3).astype(np.float64))
    expected = generalized_advantages(*time_major, 0.97, 0.9)
    batch_major = generalized_advantages(*(np.ascontiguousarray(a.T) for a in time_major), 0.97, 0.9, time_axis=1)
    for got, want in zip(batch_major, expected):
        assert got.shape == want.T.shape
        np.testing.assert_array_equal(got, want.T)


def test_gae_keeps_the_rewards_dtype_and_checks_gamma_and_lam():
    rollout = synthetic_rollout(seed=2)
    args64 = (rollout.rewards, rollout.values, rollout.values[::-1], np.ones_like(rollout.values),
              np.ones_like(rollout.values))
    rewards32, values32 = (a.astype(np.float32) for a in args64[:2])
    # np.float64 γ and float64 next values / flags: still float32 out, no silent upcast.
    advantages, returns = generalized_advantages(rewards32, values32, *args64[2:], np.float64(0.9), 0.8)
    assert advantages.dtype == returns.dtype == np.float32
    expected, _ = generalized_advantages(*args64, 0.9, 0.8)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    for gamma, lam, error, name in [("0.9", 0.8, TypeError, "gamma"), (0.9, None, TypeError, "lam"),
                                    (True, 0.8, TypeError, "gamma"), (float("nan"), 0.8, ValueError, "gamma"),
                                    (0.9, 1.5, ValueError, "lam")]:
        with pytest.raises(error, match=name):
            generalized_advantages(*args64, gamma, lam)
    with pytest.raises(TypeError, match="rewards"):
        generalized_advantages(np.ones((2, 2), dtype=np.int64), *(np.ones((2, 2)),) * 4, 0.9, 0.8)


def test_returns_to_go_without_critic_are_discounted_reward_sums():
    rollout = synthetic_rollout(seed=1)
    advantages, returns = gae_targets(rollout, 0.9, 1.0, use_critic=False)
    zeros = np.zeros_like(rollout.values)
    expected, _ = naive_targets(rollout.rewards, zeros, rollout.terminations, rollout.truncations,
                                zeros, zeros[0], 0.9, 1.0)
    np.testing.assert_allclose(advantages, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(returns, expected, rtol=1e-12, atol=1e-12)
    # env 0: the episode ends at t = 2 (terminated), so G_0 = r_0 + 0.9 r_1 + 0.81 r_2.
    r = rollout.rewards[:, 0]
    assert returns[0, 0] == pytest.approx(r[0] + 0.9 * r[1] + 0.81 * r[2], rel=1e-12)


def test_rollout_bootstraps_from_the_final_observation_on_truncation_only():
    config = PPOConfig(num_envs=2, num_steps=12, total_steps=24)
    env = envs.make("CartPole-v1", num_envs=2, seed=0, max_episode_steps=5)
    trainer = Trainer(config, env=env)
    rollout = trainer.collect_rollout()
    truncated = rollout.truncations & ~rollout.terminations
    assert truncated.any() and rollout.terminations.sum() < truncated.sum()
    assert np.all(rollout.final_values[truncated] != 0) and np.all(rollout.final_values[~truncated] == 0)
    # V(final_obs): the observation of the 5th step, not the new episode's first one.
    check_env = envs.make("CartPole-v1", num_envs=2, seed=0, max_episode_steps=5)
    check_env.reset(seed=config.seed)
    for t in range(int(np.argmax(truncated[:, 0])) + 1):
        _, _, _, _, infos = check_env.step(rollout.actions[t])
    final_obs = infos["final_obs"][:1]
    assert rollout.final_values[t, 0] == pytest.approx(trainer.agent.value(final_obs)[0], rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------
def learn(env_id, preset, target=float("inf"), **overrides):
    """Train (on one BLAS thread, the config default); stop once the last 20 episodes average ``target``."""
    config = replace(preset_for(env_id, preset), **overrides)
    reached = []

    def stop(trainer, stats):
        if len(trainer.history.episodes) >= 20 and trainer.history.recent_return() >= target:
            reached.append(stats["global_step"])
            return True

    history = Trainer(config).train(stop)
    return {"recent_return": history.recent_return(), "reached": reached[0] if reached else None}


def test_ppo_cartpole_learns_quickly():
    result = learn("CartPole-v1", "cartpole-fast", total_steps=40_960)
    assert result["recent_return"] > 150  # a random policy averages about 22


def test_reinforce_cartpole_learns_quickly():
    result = learn("CartPole-v1", "cartpole-reinforce", total_steps=81_920)
    assert result["recent_return"] > 100


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ppo_solves_cartpole(seed):
    result = learn("CartPole-v1", "cartpole-fast", target=475, seed=seed)
    assert result["reached"] is not None, result


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ppo_solves_gymnasium_cartpole(seed):
    pytest.importorskip("gymnasium")
    result = learn("gymnasium:CartPole-v1", "cartpole-fast", target=475, seed=seed)
    assert result["reached"] is not None, result


def chain_mdp(n_states=6, gamma=0.9):
    """A chain: "right" moves right w.p. 0.9 (else stays), "left" moves left.  Taking "right" at the
    right end pays 1; "left" at the left end pays 0.5: from state 0 that is worth 5, going right 5.59."""
    P = np.zeros((2, n_states, n_states))
    for s in range(n_states):
        P[0, s, max(s - 1, 0)] = 1.0
        P[1, s, min(s + 1, n_states - 1)] += 0.9
        P[1, s, s] += 0.1
    R = np.zeros((n_states, 2))
    R[0, 0], R[-1, 1] = 0.5, 1.0
    return MDP(P, R, gamma)


def test_ppo_finds_the_optimal_policy_of_a_tabular_mdp():
    mdp = chain_mdp()
    config = PPOConfig(num_envs=16, num_steps=32, total_steps=16 * 32 * 100, gamma=mdp.gamma, learning_rate=3e-3,
                       ent_coef=0.0, seed=0, hidden_sizes=(16,))
    # Episodes never terminate: a time limit cuts them, and PPO bootstraps from V(final_obs).
    env = envs.TabularMDPEnv(mdp, num_envs=config.num_envs, max_episode_steps=20, seed=config.seed)
    trainer = Trainer(config, env=env)
    trainer.train()
    one_hot = np.eye(mdp.n_states, dtype=np.float32)
    policy = np.exp(trainer.agent.evaluate(np.repeat(one_hot, 2, axis=0), np.tile([0, 1], mdp.n_states))
                    .logprobs.astype(np.float64)).reshape(mdp.n_states, 2)
    policy /= policy.sum(axis=1, keepdims=True)  # float32 rounding
    optimal = mdp.value_iteration().values
    achieved = mdp.evaluate(policy).solve()
    assert np.all(achieved >= 0.99 * optimal), (achieved, optimal)


def test_same_seed_gives_the_same_learning_curve():
    config = replace(preset_for("CartPole-v1", "cartpole"), total_steps=4 * 128 * 3, seed=7)
    runs = [Trainer(config) for _ in range(2)]
    histories = [trainer.train() for trainer in runs]
    assert histories[0].episodes == histories[1].episodes and len(histories[0].episodes) > 20
    timing = ("time", "sps")
    strip = [[{k: v for k, v in update.items() if k not in timing} for update in h.updates] for h in histories]
    assert strip[0] == strip[1]
    for name, value in runs[0].agent.params.items():
        np.testing.assert_array_equal(value, runs[1].agent.params[name])
    other = Trainer(replace(config, seed=8)).train()
    assert other.episodes != histories[0].episodes


def test_pendulum_preset_runs_with_normalisation_wrappers():
    config = replace(preset_for("Pendulum-v1"), total_steps=2048)
    trainer = Trainer(config)
    history = trainer.train()
    assert isinstance(trainer.env, envs.NormalizeReward) and isinstance(trainer.env.env, envs.NormalizeObservation)
    assert len(history.episodes) == 2048 // 200 and all(length == 200 for _, _, length in history.episodes)
    assert all(-2000 < episode_return < 0 for _, episode_return, _ in history.episodes)  # raw, unscaled returns
    assert np.isfinite(history.updates[-1]["loss"]) and trainer.agent.params["log_std"].dtype == np.float32


def training_dtypes(trainer):
    """The dtypes of the flat batch (floats), the parameters, the gradients and Adam's moments."""
    advantages, returns = gae_targets(trainer.rollout, 0.99, 0.95)
    batch = trainer.flat_batch(advantages, returns)
    floats = [array for name, array in batch._asdict().items() if name != "actions" or trainer.agent.continuous]
    arrays = [*floats, *trainer.agent.params.values(), *trainer.agent.grads.values(), *trainer.optimizer.m.values()]
    return {array.dtype for array in arrays}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_training_stays_in_the_configured_dtype(env_id, dtype, tmp_path):
    config = replace(preset_for(env_id), num_envs=2, num_steps=64, num_minibatches=2, total_steps=128, dtype=dtype)
    trainer = Trainer(config)
    history = trainer.train()
    assert np.isfinite(history.updates[-1]["loss"])
    assert training_dtypes(trainer) == {np.dtype(dtype)} and trainer.rollout.final_values.dtype == dtype
    if config.normalize_obs and dtype == "float64":  # normalised in float64, not rounded to float32 first
        assert not np.array_equal(trainer.rollout.obs, trainer.rollout.obs.astype(np.float32))
    stored = replace(config, dtype=np.dtype(dtype)).dtype
    assert isinstance(stored, str) and stored == dtype  # a NumPy dtype is stored by its name (JSON)
    trainer.save(tmp_path / "policy.npz")
    agent, _, _ = load_policy(tmp_path / "policy.npz")
    assert agent.dtype == dtype
    for name, value in trainer.agent.params.items():
        np.testing.assert_array_equal(agent.params[name], value)
    returns = evaluate_policy(agent, make_env(config, num_envs=2, seed=0, training=False), np.random.default_rng(0))
    assert np.all(returns >= 1) if env_id == "CartPole-v1" else np.all((-2000 < returns) & (returns < 0))


class Float64CartPole(envs.CartPoleEnv):
    """CartPole with float64 observations, as some gymnasium environments have."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.single_observation_space = envs.Box(self.single_observation_space.low,
                                                 self.single_observation_space.high, dtype=np.float64)
        self.observation_space = self.single_observation_space.batch(self.num_envs)

    def _observe(self):
        return self.state.T.copy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float64_observations_are_converted_to_the_network_dtype(dtype):
    config = PPOConfig(num_envs=2, num_steps=32, num_minibatches=2, total_steps=64, dtype=dtype)
    env = Float64CartPole(num_envs=2, seed=0, max_episode_steps=10)  # truncations: V(final_obs) is used
    trainer = Trainer(config, env=env)
    assert env.reset()[0].dtype == np.float64
    trainer.train()
    assert training_dtypes(trainer) == {np.dtype(dtype)} and trainer.rollout.truncations.any()
    # The stored observations are the environment's, rounded to the network's dtype.
    check_env = Float64CartPole(num_envs=2, seed=0, max_episode_steps=10)
    np.testing.assert_array_equal(trainer.rollout.obs[0], check_env.reset(seed=config.seed)[0].astype(dtype))


class WideCartPole(envs.CartPoleEnv):
    """CartPole that also observes a constant: 5 numbers, so a network for CartPole-v1 does not fit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        low, high = self.single_observation_space.low, self.single_observation_space.high
        self.single_observation_space = envs.Box(np.append(low, 0.0), np.append(high, 1.0), dtype=np.float32)
        self.observation_space = self.single_observation_space.batch(self.num_envs)

    def _observe(self):
        return np.concatenate([super()._observe(), np.ones((self.num_envs, 1), np.float32)], axis=1)


def test_load_policy_takes_the_environment_a_policy_was_trained_on(tmp_path):
    config = PPOConfig(num_envs=2, num_steps=32, num_minibatches=2, total_steps=64)
    trainer = Trainer(config, env=WideCartPole(num_envs=2, seed=0))
    trainer.train()
    trainer.save(tmp_path / "wide.npz")
    with pytest.raises(ValueError, match=r"does not fit the spaces of 'CartPole-v1' \(config.env_id\).*"
                                         r"pass the environment.*actor.*shape"):
        load_policy(tmp_path / "wide.npz")
    agent, loaded_config, _ = load_policy(tmp_path / "wide.npz", env=WideCartPole(num_envs=1, seed=0))
    assert loaded_config == config
    for name, value in trainer.agent.params.items():
        np.testing.assert_array_equal(agent.params[name], value)
    with pytest.raises(ValueError, match="does not fit the spaces of the env given"):
        load_policy(tmp_path / "wide.npz", env=envs.make("CartPole-v1", num_envs=1, seed=0))
    state = load_checkpoint(tmp_path / "wide.npz")  # the right network, a broken value: no hint about spaces
    state["params"]["actor.layers.0.bias"][0] = np.nan
    save_checkpoint(tmp_path / "nan.npz", state["params"], state["config"], extra=state["extra"], kind="ppo_policy")
    with pytest.raises(ValueError) as error:
        load_policy(tmp_path / "nan.npz", env=WideCartPole(num_envs=1, seed=0))
    assert str(error.value) == (f"{str(tmp_path / 'nan.npz')!r}: cannot load state_dict: actor.layers.0.bias: "
                                f"contains NaN or inf (in float32)")


def test_evaluating_an_episode_that_never_ends_is_an_error_not_a_hang():
    endless = envs.TabularMDPEnv(MDP(np.ones((1, 1, 1)), [1.0], 0.9), num_envs=2, seed=0)  # one state, no time limit
    agent = ActorCritic(endless.single_observation_space, endless.single_action_space, seed=0)
    with pytest.raises(RuntimeError, match=r"sub-environments \[0, 1\] did not end within max_steps=50"):
        evaluate_policy(agent, endless, np.random.default_rng(0), max_steps=50)
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        evaluate_policy(agent, endless, np.random.default_rng(0), max_steps=0)
    short = envs.TabularMDPEnv(MDP(np.ones((1, 1, 1)), [1.0], 0.9), num_envs=2, seed=0, max_episode_steps=5)
    np.testing.assert_array_equal(evaluate_policy(agent, short, np.random.default_rng(0), max_steps=5), [5.0, 5.0])


def test_trainer_checks_the_dtype_of_a_given_agent():
    env = envs.make("CartPole-v1", num_envs=2, seed=0)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match="dtype"):
        Trainer(PPOConfig(num_envs=2, total_steps=256), env=env, agent=agent)


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------
def parse(module, argv):
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_train_ppo_and_evaluate_commands(tmp_path, capsys):
    log, checkpoint = tmp_path / "run.csv", tmp_path / "run.npz"
    args = parse(train_ppo_command, ["train-ppo", "--env", "CartPole-v1", "--num-envs", "4", "--total-steps", "4096",
                                     "--seed", "3", "--log-csv", str(log), "--save", str(checkpoint)])
    args.func(args)
    output = capsys.readouterr().out
    assert "update    1/8" in output and "SPS" in output and "ETA" in output
    written = [line.removeprefix("wrote ") for line in output.splitlines() if line.startswith("wrote ")]
    assert written[:2] == [str(checkpoint), str(log)]  # the checkpoint first, then the CSV, then the plot
    with open(log, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["global_step", "episode_return", "episode_length"] and len(rows) > 10
    assert all(float(ret) == int(length) for _, ret, length in rows[1:])  # CartPole pays 1 per step
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "run.png").exists()
    else:
        assert (tmp_path / "run.png").stat().st_size > 0

    args = parse(evaluate_command, ["evaluate", "--load", str(checkpoint), "--episodes", "5", "--deterministic"])
    assert args.func(args) == 0
    assert "CartPole-v1: mean return" in capsys.readouterr().out


def test_train_ppo_saves_the_checkpoint_before_a_failing_plot(tmp_path):
    pytest.importorskip("matplotlib")
    checkpoint = tmp_path / "run.npz"
    args = parse(train_ppo_command, ["train-ppo", "--num-envs", "4", "--total-steps", "512", "--save",
                                     str(checkpoint), "--plot", str(tmp_path / "curve.no-such-format")])
    with pytest.raises(ValueError, match="no-such-format"):  # matplotlib knows no such image format
        args.func(args)
    agent, config, _ = load_policy(checkpoint)
    assert config.total_steps == 512


@pytest.mark.parametrize("option", ["--save", "--log-csv", "--plot"])
@pytest.mark.parametrize("problem", ["directory", "parent is a file"])
def test_train_ppo_checks_output_paths_before_training(tmp_path, capsys, option, problem):
    (tmp_path / "file").write_text("")
    path = tmp_path if problem == "directory" else tmp_path / "file" / "out"
    args = parse(train_ppo_command, ["train-ppo", "--num-envs", "4", "--total-steps", "512", option, str(path)])
    with pytest.raises(ValueError, match=f"{option} .*{'is a directory' if problem == 'directory' else 'directory'}"):
        args.func(args)
    assert "update" not in capsys.readouterr().out  # failed before training


def test_a_missing_optional_dependency_is_a_one_line_cli_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # `import gymnasium` now raises ImportError
    assert main(["train-ppo", "--env", "gymnasium:Taxi-v3", "--total-steps", "512"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("minippo train-ppo: error: this needs gymnasium") and error.count("\n") == 1


def test_checkpoint_keeps_the_observation_statistics(tmp_path):
    config = replace(preset_for("Pendulum-v1"), total_steps=2048)
    trainer = Trainer(config)
    trainer.train()
    trainer.save(tmp_path / "pendulum.npz")
    agent, loaded_config, obs_rms = load_policy(tmp_path / "pendulum.npz")
    assert loaded_config == config
    saved = find_wrapper(trainer.env, envs.NormalizeObservation).obs_rms
    np.testing.assert_array_equal(obs_rms["mean"], saved.mean)
    np.testing.assert_array_equal(obs_rms["var"], saved.var)
    for name, value in trainer.agent.params.items():
        np.testing.assert_array_equal(agent.params[name], value)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,error,name", [
    ({"num_minibatches": 3}, ValueError, "num_minibatches"),
    ({"algo": "a2c"}, ValueError, "algo"),
    ({"num_envs": 0}, ValueError, "num_envs"),
    ({"num_steps": 2.5}, TypeError, "num_steps"),
    ({"gamma": 1.5}, ValueError, "gamma"),
    ({"target_kl": 0.0}, ValueError, "target_kl"),
    ({"total_steps": 100}, ValueError, "total_steps"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
    ({"seed": 1.0}, TypeError, "seed"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"dtype": "int64"}, ValueError, "dtype"),
    ({"dtype": None}, TypeError, "dtype must be float32 or float64, got None"),
    ({"learning_rate": "3e-4"}, TypeError, "learning_rate"),
    ({"gamma": True}, TypeError, "gamma"),
    ({"gae_lambda": None}, TypeError, "gae_lambda"),
    ({"ent_coef": float("nan")}, ValueError, "ent_coef"),
    ({"vf_coef": "0.5"}, TypeError, "vf_coef"),
    ({"max_grad_norm": float("inf")}, ValueError, "max_grad_norm"),
    ({"target_kl": "0.01"}, TypeError, "target_kl"),
    ({"clip_coef": False}, TypeError, "clip_coef"),
    ({"obs_clip": [10.0]}, TypeError, "obs_clip"),
])
def test_config_rejects_bad_values(overrides, error, name):
    with pytest.raises(error, match=name):
        PPOConfig(**overrides)


def test_make_env_takes_num_envs_as_given():
    config = PPOConfig()
    assert make_env(config, num_envs=3).num_envs == 3 and make_env(config).num_envs == config.num_envs
    with pytest.raises(ValueError, match="num_envs"):
        make_env(config, num_envs=0)
    with pytest.raises(ValueError, match="seed"):
        make_env(config, seed=-1)


def test_mlp_checks_the_dtype_of_x_and_the_shape_and_dtype_of_dout():
    mlp = MLP([3, 4, 2], dtype=np.float32, seed=0)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        mlp.forward(np.zeros((5, 3)))
    out = mlp.forward(np.zeros((5, 3), dtype=np.float32))
    for dout in (np.ones((5, 1), dtype=np.float32), np.ones(5, dtype=np.float32), np.ones((2, 5, 2), np.float32)):
        with pytest.raises(ValueError, match=r"dout must have shape \(5, 2\)"):
            mlp.backward(dout)
    with pytest.raises(TypeError, match="dout must have dtype float32, got float64"):
        mlp.backward(np.ones((5, 2)))  # would make every gradient below it float64
    assert mlp.backward(np.ones_like(out)).shape == (5, 3)
    assert {gradient.dtype for gradient in mlp.grads.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_actor_critic_backward_checks_its_gradients(env_id):
    env = envs.make(env_id, num_envs=4, seed=0)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, dtype=np.float32, seed=0)
    obs = env.reset(seed=0)[0]
    actions, _, _ = agent.act(obs, np.random.default_rng(0))
    good = np.ones(4, np.float32)
    for bad_name, bad, error in [("dlogprobs", np.ones(4), TypeError), ("dentropy", np.ones(3, np.float32), ValueError),
                                 ("dvalues", np.ones((4, 1), np.float32), ValueError)]:
        agent.evaluate(obs, actions)
        gradients = {"dlogprobs": good, "dentropy": good, "dvalues": good, bad_name: bad}
        with pytest.raises(error, match=bad_name):
            agent.backward(**gradients)
    agent.evaluate(obs, actions)
    agent.backward(good, good, good)
    assert {gradient.dtype for gradient in agent.grads.values()} == {np.dtype(np.float32)}


def test_advantages_whitened_over_one_sample_are_refused():
    """(A − mean A)/(std A + ε) of a single advantage is 0: such a run would learn nothing."""
    with pytest.raises(ValueError, match="minibatches, which here hold one sample"):
        PPOConfig(num_envs=2, num_steps=4, num_minibatches=8, total_steps=8)
    with pytest.raises(ValueError, match=r"batches \(num_envs \* num_steps\), which here hold one sample"):
        PPOConfig(algo="reinforce", num_envs=1, num_steps=1, num_minibatches=1, total_steps=1)
    assert PPOConfig(num_envs=2, num_steps=4, num_minibatches=8, total_steps=8, norm_adv=False).minibatch_size == 1


@pytest.mark.parametrize("spelling", ["float64", np.float64, np.dtype("float64"), "f8"])
def test_ppo_config_takes_the_dtype_spellings_gpt_config_takes_and_stores_the_name(spelling):
    assert PPOConfig(dtype=spelling).dtype == "float64" == GPTConfig(2, 2, 1, 1, 2, dtype=spelling).dtype.name


def test_ppo_config_stores_its_real_numbers_as_python_floats():
    """A NumPy float64 coefficient would turn float32 arithmetic float64 (NumPy's promotion rules)."""
    config = PPOConfig(vf_coef=np.float64(0.5), clip_coef=np.float32(0.2), learning_rate=np.float64(1e-3))
    assert type(config.vf_coef) is float and type(config.clip_coef) is float and type(config.learning_rate) is float
    assert config.clip_coef == float(np.float32(0.2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_weights_are_in_the_loss_dtype(dtype):
    """The 1/n weights multiply every term of a loss: float64 weights would make a float32 loss float64."""
    weights = _weights((6,), np.array([1, 1, 0, 1, 1, 1]), dtype)
    assert weights.dtype == dtype
    np.testing.assert_array_equal(weights, np.array([1, 1, 0, 1, 1, 1], dtype) * dtype(0.2))


def test_loss_functions_refuse_to_broadcast_mismatched_shapes():
    n = np.zeros(4)
    column = np.zeros((4, 1))  # would broadcast against (4,) to (4, 4)
    calls = [
        (lambda: ppo_policy_loss(n, n, column, 0.2), "advantages"),
        (lambda: ppo_policy_loss(n, column, n, 0.2), "old_logprobs"),
        (lambda: reinforce_loss(n, column), "advantages"),
        (lambda: value_loss(n, n, column), "returns"),
        (lambda: value_loss(n, column, n, 0.2), "old_values"),
        (lambda: explained_variance(column, n), "predicted"),
    ]
    for call, name in calls:
        with pytest.raises(ValueError, match=rf"{name} must have the shape of \w+ \(4,\), got \(4, 1\)"):
            call()
    assert value_loss(n, None, n)[0] == 0.0  # without clipping old_values is not needed


@pytest.mark.parametrize("clip_coef, error", [(0.0, ValueError), (-0.2, ValueError), (float("nan"), ValueError),
                                              (float("inf"), ValueError), ("0.2", TypeError), (True, TypeError)])
def test_loss_functions_check_the_clip_coefficient(clip_coef, error):
    x = np.linspace(-1.0, 1.0, 4)
    with pytest.raises(error, match="clip_coef"):
        ppo_policy_loss(x, x[::-1], x, clip_coef)
    with pytest.raises(error, match="clip_coef"):
        value_loss(x, x[::-1], x, clip_coef)


def test_kl_controller_bounds_each_update_and_checks_its_input():
    # n <= horizon: Ziegler et al.'s rule, exactly as before the cap.
    adaptive = AdaptiveKLController(0.1, target=6.0, horizon=500.0)
    assert adaptive.update(60.0, 64) == 0.1 * (1.0 + 0.2 * 64 / 500.0)
    beta = adaptive.beta
    assert adaptive.update(5.7, 500) == beta * (1.0 + (5.7 / 6.0 - 1.0) * 500 / 500.0)
    # n > 5 · horizon used to make β negative (1 − 0.2 · 6); the cap moves it by 20% at most.
    capped = AdaptiveKLController(0.1, target=1.0, horizon=10)
    assert capped.update(0.0, 60) == pytest.approx(0.08, rel=1e-15)
    assert capped.update(100.0, 10**6) == pytest.approx(0.096, rel=1e-15)
    for kl, n_samples, error, name in [(float("nan"), 10, ValueError, "kl"), (float("inf"), 10, ValueError, "kl"),
                                       ("1.0", 10, TypeError, "kl"), (1.0, 0, ValueError, "n_samples"),
                                       (1.0, 2.5, TypeError, "n_samples")]:
        with pytest.raises(error, match=name):
            capped.update(kl, n_samples)
    assert capped.beta == pytest.approx(0.096, rel=1e-15)  # a refused update leaves β alone
    # a float32 KL (an RLHF run in float32) within ±20% of the target: β stays a Python float (JSON)
    in_band = AdaptiveKLController(0.1, target=6.0, horizon=500)
    assert type(in_band.update(np.float32(5.9), 64)) is float
    assert in_band.beta == 0.1 * (1.0 + (float(np.float32(5.9)) / 6.0 - 1.0) * 64 / 500)
    for beta, error in [(float("nan"), ValueError), (float("inf"), ValueError), (-0.1, ValueError),
                        ("0.1", TypeError)]:
        for make in (FixedKLController, lambda b: AdaptiveKLController(b, target=1.0, horizon=10)):
            with pytest.raises(error, match="beta"):
                make(beta)


def test_actor_critic_rejects_bad_input():
    with pytest.raises(TypeError, match="action_space"):
        ActorCritic(envs.Box(-1, 1, shape=(3,)), envs.Box(-1, 1, shape=(2, 2)))
    with pytest.raises(TypeError, match="observation_space"):
        ActorCritic(envs.Discrete(3), envs.Discrete(2))
    agent = ActorCritic(envs.Box(-1, 1, shape=(3,)), envs.Discrete(2), seed=0)
    with pytest.raises(TypeError, match="obs"):
        agent.value(np.zeros((1, 3)))  # float64 into a float32 network: no silent upcast
    with pytest.raises(ValueError, match="actions"):
        agent.evaluate(np.zeros((2, 3), dtype=np.float32), np.array([0, 2]))
    with pytest.raises(ValueError, match="preset"):
        preset_for("CartPole-v1", "no-such-preset")
