"""Interrupted and resumed training runs are bit-identical to uninterrupted ones: PPO on the native
control tasks (and their environments' saved state), RLHF on a tiny GPT."""
import json
from dataclasses import replace

import numpy as np
import pytest

from minippo import envs
from minippo.rl.ppo import Trainer, load_policy
from minippo.rl.ppo_config import preset_for

TIMING = ("time", "sps")  # wall-clock figures differ from run to run


def assert_same_updates(resumed, straight):
    assert len(resumed) == len(straight)
    for mine, theirs in zip(resumed, straight):
        assert mine.keys() == theirs.keys()
        for key in mine.keys() - set(TIMING):
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)  # NaN equals NaN here


def small_config(env_id, dtype, updates=4):
    config = replace(preset_for(env_id), num_envs=2, num_steps=64, num_minibatches=4, dtype=dtype)
    return replace(config, total_steps=updates * config.num_envs * config.num_steps)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_resumed_ppo_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, env_id, dtype):
    config = small_config(env_id, dtype)
    straight = Trainer(config)
    straight.train()
    first = Trainer(config)
    first.train(lambda trainer, stats: stats["update"] == 2)  # "interrupted" after two updates
    first.save(tmp_path / "run.npz")
    resumed = Trainer(replace(config, seed=config.seed + 1))  # a different start: all must come from the file
    with pytest.raises(ValueError, match="seed: checkpoint"):
        resumed.load_state(tmp_path / "run.npz")
    resumed = Trainer(config)
    resumed.load_state(tmp_path / "run.npz")
    assert resumed.global_step == first.global_step and len(resumed.history.updates) == 2
    resumed.train()
    for name, value in straight.agent.params.items():
        np.testing.assert_array_equal(resumed.agent.params[name], value, err_msg=name)
        assert resumed.agent.params[name].dtype == np.dtype(dtype)
    assert_same_updates(resumed.history.updates, straight.history.updates)
    assert resumed.history.episodes == straight.history.episodes and straight.history.episodes
    assert resumed.global_step == straight.global_step
    # the file stays what `minippo evaluate` loads
    agent, loaded_config, _ = load_policy(tmp_path / "run.npz")
    assert loaded_config == config


def test_a_run_may_be_extended_but_not_changed(tmp_path):
    config = small_config("CartPole-v1", "float64", updates=2)
    first = Trainer(config)
    first.train()
    first.save(tmp_path / "run.npz")
    longer = Trainer(replace(config, total_steps=2 * config.total_steps))
    longer.load_state(tmp_path / "run.npz")
    assert len(longer.train().updates) == 4
    changed = Trainer(replace(config, learning_rate=1e-3))
    with pytest.raises(ValueError, match=r"run.npz.*learning_rate: checkpoint 0.002, now 0.001.*only total_steps"):
        changed.load_state(tmp_path / "run.npz")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_a_wrapped_environment_continues_from_its_saved_state(env_id):
    def make(seed):
        return envs.NormalizeReward(envs.NormalizeObservation(envs.make(env_id, num_envs=3, seed=seed)))

    env, rng = make(1), np.random.default_rng(0)
    env.reset()
    for _ in range(250):  # past the first time limits: the episode counters matter
        env.step(env.action_space.sample(rng))
    state = json.loads(json.dumps(env.state_dict()))  # JSON, as in a checkpoint
    actions = [env.action_space.sample(rng) for _ in range(250)]
    copy = make(2)
    copy.load_state_dict(state)
    for action in actions:
        expected, got = env.step(action), copy.step(action)
        for mine, theirs in zip(got[:4], expected[:4]):
            np.testing.assert_array_equal(mine, theirs)
        assert got[4].keys() == expected[4].keys()


def test_a_saved_environment_state_that_does_not_fit_is_refused():
    state = envs.make("CartPole-v1", num_envs=3, seed=0).state_dict()
    with pytest.raises(ValueError, match="do not fit 2 sub-environments"):
        envs.make("CartPole-v1", num_envs=2, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="NormalizeObservation state must be a dict with the keys"):
        envs.NormalizeObservation(envs.make("CartPole-v1", num_envs=3)).load_state_dict(state)
