"""The rollout's and the update's fast paths against their textbook twins, bit for bit: ``ActorCritic.act``
against ``act_reference``, Adam on the one flat parameter array against Adam on every parameter array, the
episodes read from the rollout's buffers against the per-step loop over ``infos``, the losses against their
equations one array per term, whitening without a mask against whitening with a mask of every entry."""
import numpy as np
import pytest

from minippo.envs import CartPoleEnv
from minippo.envs.spaces import Box, Discrete
from minippo.nn.categorical import token_logprobs_forward
from minippo.nn.optim import AdamW
from minippo.rl import ppo
from minippo.rl.actor_critic import ActorCritic, flat_views
from minippo.rl.advantages import whiten
from minippo.rl.losses import loss_weights, ppo_policy_loss, ppo_policy_loss_reference, ratio_stats, value_loss
from minippo.rl.ppo import ADAM_BETAS, ADAM_EPS, Trainer, rollout_values
from minippo.rl.ppo_config import PPOConfig
from minippo.rl.resume import load_optimizer_state, optimizer_state


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_act_equals_act_reference_bit_for_bit(continuous, deterministic, dtype):
    action_space = Box(-1.0, 1.0, shape=(3,)) if continuous else Discrete(5)
    agent = ActorCritic(Box(-np.inf, np.inf, shape=(4,)), action_space, dtype=dtype, seed=1)
    for name, value in agent.params.items():  # a policy far from uniform, so that every action is taken
        value += np.random.default_rng(len(name)).standard_normal(value.shape).astype(dtype)
    obs = np.random.default_rng(2).standard_normal((300, 4)).astype(dtype)
    for count in (300, 7, 300):  # the kept row indices follow the batch size
        fast = agent.act(obs[:count], np.random.default_rng(3), deterministic)
        reference = agent.act_reference(obs[:count], np.random.default_rng(3), deterministic)
        for got, expected in zip(fast, reference):
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)
        for got, expected in zip(agent.sample_actions(obs[:count], np.random.default_rng(3), deterministic), fast):
            np.testing.assert_array_equal(got, expected)  # act without the critic
    if not continuous:
        assert len(np.unique(fast[0])) == 5


def test_parameters_and_gradients_are_views_of_one_flat_array_each():
    agent = ActorCritic(Box(-1.0, 1.0, shape=(4,)), Box(-1.0, 1.0, shape=(2,)), seed=0)
    for flat, arrays in ((agent.flat_params, agent.params), (agent.flat_grads, agent.grads)):
        assert flat.size == sum(array.size for array in arrays.values())
        assert all(np.shares_memory(array, flat) for array in arrays.values())
        np.testing.assert_array_equal(np.concatenate([array.ravel() for array in arrays.values()]), flat)
    for network, prefix in ((agent.actor, "actor"), (agent.critic, "critic")):
        assert all(value is agent.params[f"{prefix}.{name}"] for name, value in network.params.items())
        assert all(value is agent.grads[f"{prefix}.{name}"] for name, value in network.grads.items())
    agent.flat_grads[:] = 1.0
    agent.zero_grad()
    assert not agent.flat_grads.any()
    views = flat_views(np.arange(10.0), {"a": np.zeros((2, 3)), "b": np.zeros(4)})
    np.testing.assert_array_equal(views["a"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(views["b"], [6, 7, 8, 9])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_adam_on_the_flat_array_equals_adam_per_parameter_bit_for_bit(env_id, tmp_path):
    config = PPOConfig(env_id=env_id, num_envs=4, num_steps=32, total_steps=4 * 32 * 3, num_minibatches=4, seed=5)
    flat, per_parameter = Trainer(config), Trainer(config)
    per_parameter.optimizer = AdamW(per_parameter.agent.params, per_parameter.agent.grads, lr=config.learning_rate,
                                    betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0, decay=[])
    for trainer in (flat, per_parameter):
        trainer.train()
    for name, value in flat.agent.params.items():
        np.testing.assert_array_equal(value, per_parameter.agent.params[name], err_msg=name)
    # the checkpoint keeps one moment per parameter, as AdamW(agent.params, ...) writes it
    state, expected = optimizer_state(flat), per_parameter.optimizer.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    moved = {key: value + 1.0 for key, value in expected.items() if key != "step_count"}
    load_optimizer_state(flat, {**moved, "step_count": np.array(9)})
    assert flat.optimizer.step_count == 9
    for key, value in optimizer_state(flat).items():
        np.testing.assert_array_equal(value, 9 if key == "step_count" else moved[key], err_msg=key)
    with pytest.raises(ValueError, match=r"missing \['m.critic.layers.2.bias'\].*wrong shape \['v.log_std'\]"
                       if env_id == "Pendulum-v1" else r"missing \['m.critic.layers.2.bias'\]"):
        broken = {key: value for key, value in expected.items() if key != "m.critic.layers.2.bias"}
        if env_id == "Pendulum-v1":
            broken["v.log_std"] = np.zeros(3)
        load_optimizer_state(flat, broken)


def test_episodes_read_from_the_rollout_equal_the_per_step_loop():
    config = PPOConfig(num_envs=8, num_steps=64, total_steps=8 * 64 * 3, seed=2)
    trainer = Trainer(config)
    expected, step = [], [0]
    env_step = trainer.env.step

    def recording_step(actions):  # the loop the rollout ran before: one (step, return, length) per finished env
        result = env_step(actions)
        step[0] += config.num_envs
        infos = result[-1]
        if infos:
            finished = infos["_episode"]
            expected.extend((step[0], float(r), int(n)) for r, n in
                            zip(infos["episode"]["r"][finished], infos["episode"]["l"][finished]))
        return result

    trainer.env.step = recording_step
    history = trainer.train()
    assert len(expected) > 20 and history.episodes == expected
    assert all(type(a) is int and type(b) is float and type(c) is int for a, b, c in history.episodes)


@pytest.mark.parametrize("pass_rows", [ppo.VALUE_PASS_ROWS, 40, 3])
def test_rollout_values_in_passes_equal_the_value_of_each_step(pass_rows, monkeypatch):
    monkeypatch.setattr(ppo, "VALUE_PASS_ROWS", pass_rows)  # 40: passes of 5 steps and a last of 2; 3: one step
    agent = ActorCritic(Box(-np.inf, np.inf, shape=(4,)), Discrete(2), dtype=np.float64, seed=1)
    obs = np.random.default_rng(2).standard_normal((17, 8, 4))  # (T, N, obs_dim)
    values = rollout_values(agent, obs)
    assert values.shape == (17, 8) and values.dtype == np.float64
    np.testing.assert_allclose(values, [agent.value(step_obs) for step_obs in obs], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
@pytest.mark.parametrize("masked", [False, True])
def test_policy_loss_diagnostics_equal_ratio_stats_bit_for_bit(loss_type, masked):
    rng = np.random.default_rng(0)
    logprobs, old_logprobs, advantages = (rng.standard_normal((4, 6)) * scale for scale in (0.3, 0.3, 1.0))
    mask = rng.random((4, 6)) < 0.7 if masked else None
    policy = ppo_policy_loss(logprobs, old_logprobs, advantages, 0.2, mask, 0.28, loss_type, max_length=6)
    assert policy[2:] == tuple(ratio_stats(logprobs, old_logprobs, 0.2, 0.28, mask))


def test_evaluate_picks_the_logprobs_token_logprobs_forward_gives():
    agent = ActorCritic(Box(-np.inf, np.inf, shape=(4,)), Discrete(3), dtype=np.float64, seed=1)
    obs = np.random.default_rng(2).standard_normal((50, 4))
    actions = np.random.default_rng(3).integers(0, 3, 50)
    expected, _ = token_logprobs_forward(agent.actor.forward(obs), actions)
    np.testing.assert_array_equal(agent.evaluate(obs, actions).logprobs, expected)


def test_cartpole_advance_equals_advance_reference_bit_for_bit():
    fast, reference = (CartPoleEnv(num_envs=16, seed=4, max_episode_steps=40) for _ in range(2))
    reference._advance = reference._advance_reference
    rng = np.random.default_rng(5)
    endings = np.zeros(2, dtype=int)  # terminations, truncations
    for env in (fast, reference):
        env.reset()
    for step in range(300):
        # mostly a balancing controller (long episodes: truncations), now and then random pushes (terminations)
        obs = fast._observe()
        actions = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64) if step % 100 < 60 else rng.integers(2, size=16)
        got, expected = fast.step(actions), reference.step(actions)
        for a, b in zip(got[:4], expected[:4]):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        assert got[4].keys() == expected[4].keys()
        if got[4]:
            np.testing.assert_array_equal(got[4]["final_obs"], expected[4]["final_obs"])
            np.testing.assert_array_equal(got[4]["episode"]["r"], expected[4]["episode"]["r"])
        np.testing.assert_array_equal(fast.state, reference.state)
        endings += got[2].sum(), got[3].sum()
    assert endings.min() >= 5


def assert_bit_identical(got, expected):
    """Equal values, dtypes, shapes and signs of zero (floats and arrays, or tuples of them)."""
    if isinstance(expected, tuple):
        assert len(got) == len(expected)
        for got_item, expected_item in zip(got, expected):
            assert_bit_identical(got_item, expected_item)
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
    else:
        assert type(got) is type(expected) and got == expected and np.signbit(got) == np.signbit(expected)


def loss_inputs(shape, dtype, seed):
    """Log-probabilities near log ½ and their old values, advantages (some exactly 0) and a mask."""
    rng = np.random.default_rng(seed)
    logprobs, old_logprobs = (np.log(0.5) + scale * rng.standard_normal(shape) for scale in (0.3, 0.05))
    advantages = rng.standard_normal(shape)
    advantages.flat[:3] = 0.0
    mask = rng.random(shape) < 0.7
    mask.flat[0] = True
    return logprobs.astype(dtype), old_logprobs.astype(dtype), advantages.astype(dtype), mask


@pytest.mark.parametrize("shape", [(2048,), (7,), (6, 50), (3, 4000)])  # 12,000: above NumPy's 8,192-element buffer
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_policy_loss_equals_its_reference_bit_for_bit(shape, dtype, masked):
    logprobs, old_logprobs, advantages, mask = loss_inputs(shape, dtype, seed=len(shape) + shape[0])
    mask = mask if masked else None
    for loss_type in ("dapo", "grpo", "dr_grpo") if len(shape) == 2 else ("dapo",):
        for high in (None, 0.28):
            arguments = (logprobs, old_logprobs, advantages, 0.2, mask, high, loss_type, 60)
            assert_bit_identical(tuple(ppo_policy_loss(*arguments)), tuple(ppo_policy_loss_reference(*arguments)))
    mixed = (logprobs, old_logprobs, advantages.astype(np.float64), 0.2, mask)  # the reference's own path
    assert_bit_identical(tuple(ppo_policy_loss(*mixed)), tuple(ppo_policy_loss_reference(*mixed)))


def textbook_value_loss(values, old_values, returns, clip_coef=None, mask=None):
    """``value_loss`` as first written: a weights array even without a mask, every product recomputed."""
    mask = np.ones(values.shape, dtype=bool) if mask is None else mask
    weights = loss_weights(mask, dtype=values.dtype)
    error = values - returns
    if clip_coef is None:
        return 0.5 * float(np.sum(error * error * weights)), (error * weights).astype(values.dtype, copy=False)
    change = values - old_values
    clipped_error = old_values + np.clip(change, -clip_coef, clip_coef) - returns
    use_unclipped = error * error >= clipped_error * clipped_error
    loss = 0.5 * float(np.sum(np.maximum(error * error, clipped_error * clipped_error) * weights))
    inside = np.abs(change) < clip_coef
    dvalues = np.where(use_unclipped, error, np.where(inside, clipped_error, 0.0)) * weights
    return loss, dvalues.astype(values.dtype, copy=False)


@pytest.mark.parametrize("shape", [(2048,), (7,), (3, 4000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_value_loss_equals_its_textbook_twin_bit_for_bit(shape, dtype, masked):
    values, old_values, returns, mask = loss_inputs(shape, dtype, seed=shape[0])
    old_values = values + (old_values - old_values.mean()) * 4  # some changes beyond the clip range
    for clip_coef in (None, 0.2):
        arguments = (values, old_values, returns, clip_coef, mask if masked else None)
        assert_bit_identical(value_loss(*arguments), textbook_value_loss(*arguments))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whitening_without_a_mask_equals_whitening_with_a_full_one_bit_for_bit(dtype):
    values = np.random.default_rng(4).normal(1.0, 3.0, (6, 50)).astype(dtype)
    for array in (values, values.T, values[:, ::3]):  # contiguous or not
        full = np.ones(array.shape, dtype=bool)
        for shift_mean in (True, False):
            for moments in (None, (array.mean(), array.std()), (0.25, 2.0)):
                assert_bit_identical(whiten(array, None, shift_mean, moments=moments),
                                     whiten(array, full, shift_mean, moments=moments))
