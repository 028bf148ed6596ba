"""Interrupted and resumed training runs are bit-identical to uninterrupted ones: PPO on the native
control tasks (and their environments' saved state), RLHF on a tiny GPT."""
import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from minippo import envs
from minippo.nn.checkpoint import rng_from_state, rng_state, save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import load_model
from minippo.rl.ppo import Trainer, load_policy
from minippo.rl.ppo_config import preset_for
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.text.tokenizer import ByteTokenizer

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


# ------------------------------------------------------------------------------------------------
# RLHF
# ------------------------------------------------------------------------------------------------
PROMPTS = ["Q: hi A:", "Q: yes? A:", "Q: no A:", "Q: ok A:"]


def count_a(prompts, responses):
    return np.array([response.count("a") - 0.1 * len(response) for response in responses])


def rlhf_trainer(algo, dtype, seed=0):
    policy = GPT(GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16,
                           dtype=dtype), seed=seed)
    config = RLHFConfig(algo=algo, batch_size=4, minibatch_size=2, num_generations=2, max_new_tokens=5,
                        update_epochs=2, kl_target=0.5, kl_horizon=8.0, learning_rate=1e-2, seed=3)
    return RLHFTrainer(policy, count_a, ByteTokenizer(), config)


def train(trainer, iterations, prompt_rng):
    return [trainer.iteration([PROMPTS[i] for i in prompt_rng.integers(0, len(PROMPTS),
                                                                        trainer.config.prompts_per_iteration)])
            for _ in range(iterations)]


def without_timings(stats):
    return [{key: value for key, value in row.items() if not key.startswith("time/")} for row in stats]


@pytest.mark.parametrize("algo, dtype", [("ppo", "float64"), ("ppo", "float32"), ("grpo", "float32")])
def test_a_resumed_rlhf_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, algo, dtype):
    straight = rlhf_trainer(algo, dtype)
    expected = without_timings(train(straight, 4, np.random.default_rng(0)))
    first, prompt_rng = rlhf_trainer(algo, dtype), np.random.default_rng(0)
    train(first, 2, prompt_rng)
    first.save(tmp_path / "run.npz", extra={"prompt_rng": rng_state(prompt_rng)})
    resumed = rlhf_trainer(algo, dtype)
    extra = resumed.load_state(tmp_path / "run.npz")
    assert resumed.iterations_done == 2 and resumed.kl_controller.beta == first.kl_controller.beta != 0.2
    got = without_timings(train(resumed, 2, rng_from_state(extra["prompt_rng"])))
    assert got == expected[2:]
    for name, value in straight.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)
    assert load_model(tmp_path / "run.npz").config.n_embd == 16  # the file is also a policy checkpoint


def test_an_rlhf_run_resumes_only_from_its_own_start(tmp_path):
    first = rlhf_trainer("ppo", "float64")
    first.save(tmp_path / "run.npz")
    with pytest.raises(ValueError, match="started from another policy"):
        rlhf_trainer("ppo", "float64", seed=1).load_state(tmp_path / "run.npz")
    other = rlhf_trainer("ppo", "float64")
    other.config = replace(other.config, learning_rate=0.5)
    with pytest.raises(ValueError, match=r"learning_rate: checkpoint 0.01, now 0.5"):
        other.load_state(tmp_path / "run.npz")
    threads = rlhf_trainer("ppo", "float64")
    threads.config = replace(threads.config, blas_threads=2)  # how fast, not what: it may change
    threads.load_state(tmp_path / "run.npz")
    save_checkpoint(tmp_path / "weights.npz", first.policy.params, first.policy.config.to_dict(), kind="gpt")
    with pytest.raises(ValueError, match="holds a policy without an RLHF run's state"):
        rlhf_trainer("ppo", "float64").load_state(tmp_path / "weights.npz")


@pytest.mark.parametrize("normalize", [False, True])
def test_a_gymnasium_run_resumes_with_new_episodes(tmp_path, normalize):
    """gymnasium environments have no pickle-free state: their episodes start anew, the rest continues (also
    inside the normalisation wrappers, whose state is saved around the environment's None)."""
    pytest.importorskip("gymnasium")
    config = replace(small_config("gymnasium:CartPole-v1", "float32", updates=2), normalize_obs=normalize,
                     normalize_reward=normalize)
    first = Trainer(config)
    first.train(lambda trainer, stats: stats["update"] == 1)
    first.save(tmp_path / "run.npz")
    resumed = Trainer(config)
    resumed.load_state(tmp_path / "run.npz")
    assert resumed.next_obs is None  # the next rollout resets the environments
    for name, value in first.agent.params.items():
        np.testing.assert_array_equal(resumed.agent.params[name], value, err_msg=name)
    assert len(resumed.train().updates) == 2 and resumed.global_step == config.total_steps


def test_a_policy_saved_without_its_training_state_is_not_resumed(tmp_path):
    trainer = Trainer(small_config("CartPole-v1", "float32"))
    save_checkpoint(tmp_path / "old.npz", trainer.agent.params, asdict(trainer.config), kind="ppo_policy",
                    extra={"obs_rms": None})
    with pytest.raises(ValueError, match="old.npz.*holds a policy without its training state"):
        trainer.load_state(tmp_path / "old.npz")
