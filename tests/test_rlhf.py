"""RLHF on a transformer: exact expectations by enumeration, the PPO ratio, KL control, rewards."""
import itertools
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from minippo.blas import blas_threads
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.heads import ValueHead
from minippo.rewards.reward_model import (
    RewardModel,
    bradley_terry_loss,
    pair_texts,
    preference_accuracy,
    train_reward_model,
)
from minippo.rl.kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_penalty_rewards,
)
from minippo.rl.losses import ppo_policy_loss, reinforce_loss
from minippo.rlhf.rollout import (
    Rollout,
    generate_rollout,
    response_logprobs,
    response_logprobs_backward,
)
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.rlhf.value import estimate_value
from minippo.text.corpus import format_example, format_prompt, load_preferences
from minippo.text.files import read_preference_pairs
from minippo.text.tokenizer import ByteTokenizer


class TinyTokenizer:
    """Characters a, b, c are ids 0, 1, 2; id 3 is padding.  No EOS, so every response has full length."""

    alphabet = "abc"
    pad_id, eos_id, vocab_size = 3, None, 4

    def encode(self, text, add_eos=False):
        return [self.alphabet.index(ch) for ch in text]

    def pad_batch(self, rows):
        T = max(len(r) for r in rows)
        ids = np.full((len(rows), T), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, T - len(row):], mask[i, T - len(row):] = row, 1
        return ids, mask

    def decode(self, ids, skip_special=True):
        return "".join(self.alphabet[i] for i in ids if i != self.pad_id)


def count_a(prompts, responses):
    """The judge: one point per 'a' in the response."""
    return np.array([r.count("a") for r in responses], dtype=np.float64)


RESPONSE_LENGTH = 3
PROMPT = "ab"


def tiny_policy(dtype=np.float64, seed=0):
    model = GPT(GPTConfig(vocab_size=4, block_size=8, n_layer=1, n_head=2, n_embd=8, dtype=dtype), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for value in model.params.values():  # make the policy far from uniform so gradients are not tiny
        value += rng.standard_normal(value.shape) * 0.5
    return model


def every_response_rollout():
    """A rollout holding each of the 4**3 possible responses once (padding is a possible action)."""
    tokenizer = TinyTokenizer()
    prompt_ids, prompt_mask = tokenizer.pad_batch([tokenizer.encode(PROMPT)])
    responses = np.array(list(itertools.product(range(4), repeat=RESPONSE_LENGTH)), dtype=np.int64)
    n = len(responses)
    tokens = np.concatenate([np.repeat(prompt_ids, n, axis=0), responses], axis=1)
    attention_mask = np.concatenate([np.repeat(prompt_mask, n, axis=0), np.ones_like(responses)], axis=1)
    return Rollout([PROMPT] * n, [tokenizer.decode(r) for r in responses], tokens, attention_mask,
                   np.ones(responses.shape, dtype=bool), np.zeros(responses.shape), prompt_ids.shape[1])


def flat_gradient(model):
    return np.concatenate([g.reshape(-1) for g in model.grads.values()])


def exact_expectation_and_gradient(model, temperature=1.0):
    """E_π[R] = Σ_τ R(τ) P(τ) and ∇E = Σ_τ R(τ) P(τ) ∇log P(τ), both by enumerating every τ."""
    rollout = every_response_rollout()
    logprobs, log_probs_all = response_logprobs(model, rollout, temperature)
    probability = np.exp(logprobs.sum(axis=1))
    assert probability.sum() == pytest.approx(1.0, abs=1e-12)  # the enumeration is complete
    rewards = count_a(None, rollout.responses)
    dlogprobs = np.repeat((probability * rewards)[:, None], RESPONSE_LENGTH, axis=1)
    model.zero_grad()
    model.backward(response_logprobs_backward(dlogprobs, rollout, log_probs_all, temperature))
    return float(probability @ rewards), flat_gradient(model)


def test_reinforce_estimate_converges_to_exact_gradient():
    """∇E[R] = E[R(τ) ∇log P(τ)]: the sampled estimator agrees with the enumerated gradient."""
    model = tiny_policy()
    _, exact = exact_expectation_and_gradient(model)
    direction = np.random.default_rng(5).standard_normal(exact.size)
    rng = np.random.default_rng(6)
    group_estimates = []
    for _ in range(30):  # 30 independent groups of 200 samples
        rollout = generate_rollout(model, TinyTokenizer(), [PROMPT] * 200, RESPONSE_LENGTH, 1.0, rng)
        rewards = count_a(None, rollout.responses)
        logprobs, log_probs_all = response_logprobs(model, rollout, 1.0)
        advantages = np.repeat(rewards[:, None], RESPONSE_LENGTH, axis=1)
        _, dlogprobs = reinforce_loss(logprobs, advantages, rollout.response_mask)
        model.zero_grad()
        model.backward(response_logprobs_backward(dlogprobs, rollout, log_probs_all, 1.0))
        # reinforce_loss averages over tokens and descends: −∇E / RESPONSE_LENGTH
        group_estimates.append(-RESPONSE_LENGTH * flat_gradient(model) @ direction)
    estimate = np.mean(group_estimates)
    standard_error = np.std(group_estimates, ddof=1) / math.sqrt(len(group_estimates))
    target = exact @ direction
    assert abs(target) > 8 * standard_error  # the test has the power to see a wrong gradient
    assert abs(estimate - target) < 4 * standard_error


def test_monte_carlo_value_matches_enumeration():
    model = tiny_policy()
    exact_value, _ = exact_expectation_and_gradient(model)
    result = estimate_value(model, PROMPT, count_a, 4000, tokenizer=TinyTokenizer(), max_new_tokens=RESPONSE_LENGTH,
                            seed=3)
    assert 0 < result.stderr < 0.05
    assert abs(result.mean - exact_value) < 4 * result.stderr
    assert len(result.responses) == 4000 and result.rewards.shape == (4000,)
    # log P(τ) of each sample equals the enumerated probability of that response
    rollout = every_response_rollout()
    enumerated = dict(zip(rollout.responses, response_logprobs(model, rollout, 1.0)[0].sum(axis=1)))
    for response, logprob in list(zip(result.responses, result.logprobs))[:50]:
        if len(response) == RESPONSE_LENGTH:  # responses containing padding decode ambiguously
            assert logprob == pytest.approx(enumerated[response], abs=1e-10)


def test_ppo_first_step_is_the_advantage_weighted_policy_gradient():
    """At ρ = 1 the clipped surrogate's gradient is −mean(A ∇log π), the REINFORCE gradient with A."""
    rng = np.random.default_rng(0)
    logprobs = np.log(rng.uniform(0.1, 1.0, (4, 5)))
    advantages = rng.standard_normal((4, 5))
    mask = rng.random((4, 5)) < 0.8
    ppo = ppo_policy_loss(logprobs, logprobs.copy(), advantages, 0.2, mask)
    loss, dlogprobs = reinforce_loss(logprobs, advantages, mask)
    np.testing.assert_array_equal(ppo.dlogprobs, dlogprobs)
    assert ppo.clipfrac == 0.0 and ppo.approx_kl == 0.0


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_ppo_iteration_first_ratio_is_exactly_one_and_reward_is_used(critic):
    model = tiny_policy(seed=2)
    config = RLHFConfig(batch_size=16, minibatch_size=8, max_new_tokens=RESPONSE_LENGTH, critic=critic,
                        update_epochs=2, learning_rate=1e-2)
    trainer = RLHFTrainer(model, count_a, TinyTokenizer(), config)
    before = {k: v.copy() for k, v in model.params.items()}
    stats = trainer.iteration([PROMPT] * 16)
    assert stats["policy/first_ratio_max_error"] == 0.0
    assert stats["objective/kl_k1"] == pytest.approx(0.0, abs=1e-12)  # the first rollout is sampled from π = π_ref
    assert 0 <= stats["reward/mean"] <= RESPONSE_LENGTH
    assert any(not np.array_equal(before[k], v) for k, v in model.params.items())
    for key in ("policy/loss", "value/loss", "policy/entropy", "policy/approx_kl", "policy/clipfrac_low",
                "policy/clipfrac_high", "time/generate", "time/score", "time/forward", "time/train", "objective/beta",
                "objective/kl_k3", "completions/mean_length"):
        assert math.isfinite(stats[key]), key


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "rloo"])
def test_training_raises_the_expected_reward(algo):
    model = tiny_policy(seed=4)
    start, _ = exact_expectation_and_gradient(model)
    config = RLHFConfig(algo=algo, batch_size=32, minibatch_size=16, max_new_tokens=RESPONSE_LENGTH,
                        learning_rate=3e-2, init_kl_coef=0.01, kl_target=None, num_generations=4, seed=1)
    trainer = RLHFTrainer(model, count_a, TinyTokenizer(), config)
    for _ in range(15):
        trainer.iteration([PROMPT] * config.prompts_per_iteration)
    end, _ = exact_expectation_and_gradient(model)
    assert end > start + 0.5, (start, end)


def test_same_seed_same_training():
    results = []
    for _ in range(2):
        model = tiny_policy(seed=4)
        trainer = RLHFTrainer(model, count_a, TinyTokenizer(),
                              RLHFConfig(batch_size=16, minibatch_size=8, max_new_tokens=RESPONSE_LENGTH, seed=7))
        trainer.iteration([PROMPT] * 16)
        results.append(np.concatenate([v.reshape(-1) for v in model.params.values()]))
    np.testing.assert_array_equal(results[0], results[1])


def test_temperature_divides_logits_in_every_forward_pass():
    model = tiny_policy()
    rollout = generate_rollout(model, TinyTokenizer(), [PROMPT] * 4, RESPONSE_LENGTH, 0.7,
                               np.random.default_rng(0))
    recomputed = response_logprobs(model, rollout, 0.7)[0]
    np.testing.assert_allclose(recomputed, rollout.sampled_logprobs, atol=1e-10)
    assert not np.allclose(response_logprobs(model, rollout, 1.0)[0], rollout.sampled_logprobs)


@pytest.mark.parametrize("algo, policy_forwards", [("reinforce", 0), ("rloo", 0), ("ppo", 2), ("grpo", 0)])
def test_old_logprobs_are_the_samplers_unless_ppo(algo, policy_forwards, monkeypatch):
    """REINFORCE, RLOO and GRPO take log π_old from the sampler (no policy forward before the update); PPO
    recomputes it on each scoring minibatch, with its values, so that its first ratio is exactly 1."""
    config = RLHFConfig(algo=algo, batch_size=16, minibatch_size=8, max_new_tokens=RESPONSE_LENGTH,
                        temperature=0.7, init_kl_coef=0.1, kl_target=None, seed=3)
    trainer = RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(), config)
    rollout = generate_rollout(trainer.policy, TinyTokenizer(), [PROMPT] * 16, RESPONSE_LENGTH, 0.7,
                               np.random.default_rng(0))
    forwards = []
    forward = trainer.policy.forward
    monkeypatch.setattr(trainer.policy, "forward",
                        lambda *args, **kwargs: forwards.append(1) or forward(*args, **kwargs))
    batch = trainer._score_tokens(rollout, count_a(None, rollout.responses))
    assert len(forwards) == policy_forwards
    recomputed = response_logprobs(trainer.reference, rollout, 0.7)[0]  # the policy has not moved yet
    np.testing.assert_allclose(batch["old_logprobs"], recomputed, atol=1e-10)
    np.testing.assert_allclose(batch["ref_logprobs"], recomputed, rtol=0, atol=1e-12)  # another pass: round-off
    if policy_forwards == 0:
        np.testing.assert_array_equal(batch["old_logprobs"], rollout.sampled_logprobs)


@pytest.mark.parametrize("threads", [1, 2])
def test_an_iteration_runs_with_config_blas_threads(threads):
    seen = []

    def judge(prompts, responses):  # runs inside the iteration: records the BLAS threads in force
        with blas_threads(1) as now:
            seen.append(now)
        return count_a(prompts, responses)

    config = RLHFConfig(batch_size=4, minibatch_size=4, max_new_tokens=RESPONSE_LENGTH, blas_threads=threads)
    with blas_threads(3):
        RLHFTrainer(tiny_policy(), judge, TinyTokenizer(), config).iteration([PROMPT] * 4)
        with blas_threads(1) as after:
            pass
    if seen == [None]:
        pytest.skip("no OpenBLAS found: blas_threads changes nothing")
    assert seen == [threads] and after == 3  # and the count in force before is back


def test_nan_reward_stops_the_run_showing_the_sample():
    def broken(prompts, responses):
        scores = count_a(prompts, responses)
        scores[1] = np.nan
        return scores

    trainer = RLHFTrainer(tiny_policy(), broken, TinyTokenizer(),
                          RLHFConfig(batch_size=4, minibatch_size=4, max_new_tokens=RESPONSE_LENGTH))
    with pytest.raises(ValueError, match="nan"):
        trainer.iteration([PROMPT] * 4)


def test_kl_controllers():
    fixed = FixedKLController(0.2)
    assert fixed.update(100.0, 64) == 0.2
    adaptive = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    # KL far above target: the error is clipped at +0.2
    assert adaptive.update(60.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))
    beta = adaptive.beta
    assert adaptive.update(3.0, 100) == pytest.approx(beta * (1 - 0.2 * 100 / 10000))  # clipped at −0.2
    beta = adaptive.beta
    assert adaptive.update(6.6, 100) == pytest.approx(beta * (1 + 0.1 * 100 / 10000))
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0, horizon=1)


def test_config_errors():
    with pytest.raises(ValueError, match="algo"):
        RLHFConfig(algo="dpo")
    with pytest.raises(ValueError, match="temperature"):
        RLHFConfig(temperature=0.0)
    with pytest.raises(ValueError, match="minibatch_size"):
        RLHFConfig(batch_size=10, minibatch_size=4)
    with pytest.raises(ValueError, match="critic"):
        RLHFConfig(critic="both")


def test_bradley_terry_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    chosen, rejected = rng.standard_normal(5), rng.standard_normal(5)
    loss, dchosen, drejected, accuracy = bradley_terry_loss(chosen, rejected)
    assert loss == pytest.approx(np.mean(-np.log(1 / (1 + np.exp(-(chosen - rejected))))), rel=1e-12)
    assert accuracy == np.mean(chosen > rejected)
    h = 1e-6
    for i in range(5):
        bump = np.zeros(5)
        bump[i] = h
        numeric_c = (bradley_terry_loss(chosen + bump, rejected)[0]
                     - bradley_terry_loss(chosen - bump, rejected)[0]) / (2 * h)
        numeric_r = (bradley_terry_loss(chosen, rejected + bump)[0]
                     - bradley_terry_loss(chosen, rejected - bump)[0]) / (2 * h)
        assert dchosen[i] == pytest.approx(numeric_c, rel=1e-6)
        assert drejected[i] == pytest.approx(numeric_r, rel=1e-6)


def test_reward_model_learns_the_shipped_preferences_and_normalises(tmp_path):
    trunk = GPT(GPTConfig(vocab_size=258, block_size=96, n_layer=1, n_head=2, n_embd=32), seed=0)
    model = RewardModel(trunk, seed=0)
    train_reward_model(model, load_preferences("train"), steps=40, batch_size=16, learning_rate=3e-3, seed=0,
                       log=lambda line: None)
    assert preference_accuracy(model, load_preferences("test")) > 0.85
    prompts, chosen, rejected = pair_texts(load_preferences("test")[:40])
    prompts, responses = prompts * 2, chosen + rejected
    model.normalize(prompts, responses)
    scores = model(prompts, responses)
    assert scores.mean() == pytest.approx(0.0, abs=1e-9) and scores.std() == pytest.approx(1.0, rel=1e-9)
    path = tmp_path / "rm.npz"
    model.save(path)
    np.testing.assert_array_equal(RewardModel.load(path)(prompts, responses), scores)


def test_reward_model_scores_the_text_a_rollout_produces():
    """The trainer passes a reward the prompt as the policy saw it ("Q: ... A:") and the response as
    the policy wrote it (after a space); preference pairs store the bare question and answer.  Both
    reach the model as the same text "Q: <question> A: <answer>" + EOS, the format it was trained on."""
    tokenizer = ByteTokenizer()
    model = RewardModel(GPT(GPTConfig(vocab_size=258, block_size=64, n_layer=1, n_head=2, n_embd=16), seed=0), seed=0)
    pair = {"prompt": "Where is the bank?", "chosen": "Sure! It is on Main Street.", "rejected": "Ugh."}
    prompts, chosen, rejected = pair_texts([pair])
    assert prompts == [format_prompt("Where is the bank?")] and chosen == [" Sure! It is on Main Street."]
    ids, mask = model.encode(prompts, chosen)
    expected = tokenizer.encode("Q: Where is the bank? A: Sure! It is on Main Street.", add_eos=True)
    np.testing.assert_array_equal(ids[0][mask[0] == 1], expected)
    assert prompts[0] + chosen[0] == format_example(pair["prompt"], pair["chosen"])  # a dialogue line
    with pytest.warns(UserWarning, match="longer than the reward model's context"):
        ids, mask = model.encode(["Q: " + "x" * 100 + " A:"], [" y"])
    assert ids.shape == (1, 64) and ids[0, -1] == tokenizer.eos_id


def test_missing_eos_penalty_lowers_the_score_of_unfinished_responses():
    class EndingTokenizer(TinyTokenizer):
        eos_id = 2  # 'c' ends a response

    config = RLHFConfig(batch_size=32, minibatch_size=16, max_new_tokens=RESPONSE_LENGTH, missing_eos_penalty=10.0,
                        update_epochs=1)
    trainer = RLHFTrainer(tiny_policy(), lambda p, r: np.zeros(len(r)), EndingTokenizer(), config)
    rollout = generate_rollout(trainer.policy, EndingTokenizer(), [PROMPT] * 32, RESPONSE_LENGTH, 1.0,
                               np.random.default_rng(0))
    ended = rollout.ended_with(2)
    assert ended.any() and not ended.all()
    np.testing.assert_array_equal(ended, (rollout.tokens[:, rollout.prompt_length:] == 2).any(axis=1))
    trainer.rng = np.random.default_rng(0)
    stats = trainer.iteration([PROMPT] * 32)
    assert stats["reward/mean"] == pytest.approx(-10.0 * (1 - ended.mean()))


def test_critic_can_start_from_the_reward_model():
    from minippo.rlhf.critic import critic_from_reward_model

    reward_model = RewardModel(tiny_policy(seed=9), seed=0)
    reward_model.head.params["weight"][...] = 0.3
    trunk, head = critic_from_reward_model(reward_model)
    assert trunk is not reward_model.trunk
    np.testing.assert_array_equal(head.params["weight"], reward_model.head.params["weight"])
    trainer = RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(),
                          RLHFConfig(batch_size=8, minibatch_size=8, max_new_tokens=RESPONSE_LENGTH),
                          critic_trunk=trunk, value_head=head)
    rollout = every_response_rollout().rows(np.arange(8))
    reward_model.trunk.forward(rollout.tokens, rollout.attention_mask, compute_logits=False)
    w, b = reward_model.head.params["weight"], reward_model.head.params["bias"]
    expected = (reward_model.trunk.hidden @ w[:, 0] + b[0])[:, rollout.prompt_length - 1:-1]  # r read at every t
    np.testing.assert_allclose(trainer.critic.values(rollout), expected, atol=1e-12)
    rloo = RLHFConfig(algo="rloo", max_new_tokens=RESPONSE_LENGTH)
    assert RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(), rloo).critic is None


def test_a_critic_of_another_dtype_or_width_is_refused():
    """The policy here is float64: a float32 critic's values would be rounded into the rollout."""
    policy = tiny_policy()
    float32_trunk = GPT(replace(policy.config, dtype=np.float32), seed=0)
    config = RLHFConfig(batch_size=8, minibatch_size=8, max_new_tokens=RESPONSE_LENGTH)
    with pytest.raises(TypeError, match="critic_trunk must have the policy's dtype float64, got .'float32'."):
        RLHFTrainer(policy, count_a, TinyTokenizer(), config, critic_trunk=float32_trunk)
    float32_head = ValueHead(policy.config.n_embd, np.float32)
    for critic in ("separate", "shared"):
        with pytest.raises(TypeError, match="value_head must have the policy's dtype float64"):
            RLHFTrainer(policy, count_a, TinyTokenizer(), replace(config, critic=critic), value_head=float32_head)
    with pytest.raises(ValueError, match="value_head reads 3 features, the critic's trunk gives"):
        RLHFTrainer(policy, count_a, TinyTokenizer(), config, value_head=ValueHead(3, policy.config.dtype))


# --- checks of settings and rewards ------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({"minibatch_size": 0}, ValueError, "minibatch_size must be an integer >= 1, got 0"),
        ({"algo": "reinforce", "batch_size": 1, "minibatch_size": 1}, ValueError,
         "reinforce needs batch_size >= 2: its baseline is the batch's mean return, so one response would get "
         "advantage 0 and teach nothing"),
        ({"update_epochs": 0}, ValueError, "update_epochs must be an integer >= 1, got 0"),
        ({"clip_coef": -1}, ValueError, "clip_coef must be > 0, got -1"),
        ({"batch_size": 64.0}, TypeError, "batch_size must be an integer >= 1, got float 64.0"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
        ({"algo": "rloo", "num_generations": 1}, ValueError, "num_generations must be an integer >= 2, got 1"),
        ({"learning_rate": "1e-4"}, TypeError, "learning_rate must be a finite number, got str '1e-4'"),
        ({"kl_target": 0.0}, ValueError, "kl_target must be > 0, got 0.0"),
        ({"max_grad_norm": math.inf}, ValueError, "max_grad_norm must be a finite number, got inf"),
        ({"max_grad_norm": True}, TypeError, "max_grad_norm must be a number or None, got bool"),
        ({"ent_coef": -0.1}, ValueError, "ent_coef must be >= 0, got -0.1"),
        ({"gae_lambda": 1.5}, ValueError, "gae_lambda must be in [0, 1], got 1.5"),
        ({"missing_eos_penalty": math.nan}, ValueError, "missing_eos_penalty must be a finite number, got nan"),
        ({"algo": "rloo", "num_generations": 3}, ValueError,
         "rloo samples num_generations responses per prompt, so num_generations (3) must divide batch_size (64)"),
    ],
)
def test_config_checks_every_field(settings, error, message):
    with pytest.raises(error) as raised:
        RLHFConfig(**settings)
    assert str(raised.value) == message


def test_config_accepts_numpy_numbers_and_none():
    config = RLHFConfig(batch_size=np.int64(32), minibatch_size=np.int32(16),
                        learning_rate=np.float32(0.5), kl_target=None, max_grad_norm=None, missing_eos_penalty=None)
    assert type(config.batch_size) is int and config.batch_size == 32 and config.minibatch_size == 16
    assert type(config.learning_rate) is float and config.learning_rate == 0.5
    assert config.kl_target is None and config.max_grad_norm is None and config.missing_eos_penalty is None
    for seed in (None, np.random.default_rng(3)):  # as the trainer's as_generator takes them
        assert RLHFConfig(seed=seed).seed is seed
    assert RLHFConfig(algo="ppo", num_generations=1).num_generations == 1  # read (and checked) by RLOO and GRPO


@pytest.mark.parametrize(
    "judge, shown",
    [(lambda prompts, responses: ["1.5"] * len(responses), "reward '1.5'"),
     (lambda prompts, responses: [None] * len(responses), "reward None")],
)
def test_reward_callables_must_return_real_numbers(judge, shown):
    trainer = RLHFTrainer(tiny_policy(), judge, TinyTokenizer(),
                          RLHFConfig(batch_size=4, minibatch_size=4, max_new_tokens=RESPONSE_LENGTH))
    with pytest.raises(TypeError) as raised:
        trainer.iteration([PROMPT] * 4)
    assert str(raised.value).startswith(
        f"rewards must be numbers (real, not str, bool or None); 4 of 4 are not:\n  index 0: {shown}, response ")
    with pytest.raises(TypeError, match=r"rewards must be numbers \(real, not str, bool or None\); 4 of 4"):
        estimate_value(tiny_policy(), PROMPT, judge, 4, tokenizer=TinyTokenizer(), max_new_tokens=RESPONSE_LENGTH)


def test_estimate_value_takes_a_numpy_integer_sample_count():
    settings = {"tokenizer": TinyTokenizer(), "max_new_tokens": RESPONSE_LENGTH, "seed": 3}
    result = estimate_value(tiny_policy(), PROMPT, count_a, np.int64(4), **settings)
    assert len(result.responses) == 4
    assert result.mean == np.mean([response.count("a") for response in result.responses])
    assert result.mean == estimate_value(tiny_policy(), PROMPT, count_a, 4, **settings).mean
    with pytest.raises(TypeError, match="^n_samples must be an integer >= 2, got float 4.0$"):
        estimate_value(tiny_policy(), PROMPT, count_a, 4.0, **settings)
    with pytest.raises(ValueError, match="^n_samples must be an integer >= 2, got 1$"):
        estimate_value(tiny_policy(), PROMPT, count_a, np.int64(1), **settings)


def test_demo_config_is_checked_before_any_stage_runs():
    from minippo.rlhf.pipeline import DemoConfig

    for settings, message in [({"iterations": 0}, "iterations must be an integer >= 1, got 0"),
                              ({"reward_steps": -1}, "reward_steps must be an integer >= 1, got -1"),
                              ({"eval_samples": 1}, "eval_samples must be an integer >= 2, got 1"),
                              ({"seed": -1}, "seed must be an integer >= 0, got -1")]:
        with pytest.raises(ValueError) as raised:
            DemoConfig(**settings)
        assert str(raised.value) == message
    with pytest.raises(TypeError, match="^rlhf must be an RLHFConfig, got dict$"):
        DemoConfig(rlhf={"kl_target": 6.0})
    assert DemoConfig(iterations=np.int64(3)).iterations == 3


def test_preference_file_that_is_not_utf8_names_the_file(tmp_path):
    latin1 = tmp_path / "pairs.jsonl"
    latin1.write_bytes('{"prompt": "café", "chosen": "a", "rejected": "b"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=f"^{re.escape(str(latin1))}: not UTF-8 text"):
        read_preference_pairs(latin1)


def test_loaders_name_the_file_and_the_kind_of_checkpoint_it_holds(tmp_path):
    from minippo.commands.models import load_reward
    from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
    from minippo.pretrain import load_model
    from minippo.rewards.rules import RougeReward
    from minippo.rl.ppo import PPOConfig, Trainer

    reward_path = tmp_path / "rm.npz"
    RewardModel(tiny_policy(), seed=0).save(reward_path)
    with pytest.raises(ValueError, match=r"rm.npz' holds a reward model \(load it with RewardModel.load\), not a GPT"):
        load_model(reward_path)
    ppo_path = tmp_path / "ppo.npz"
    Trainer(PPOConfig(num_envs=2, num_steps=8, num_minibatches=1, total_steps=16)).save(ppo_path)
    with pytest.raises(ValueError, match=r"ppo.npz' holds a control-task PPO policy \(load it with load_policy\)"):
        load_model(ppo_path)
    state = load_checkpoint(reward_path)
    for extra, message in [({"bias": 0.0}, "gain must be a finite number, got NoneType"),
                           ({"gain": "x", "bias": 0.0}, "gain must be a finite number")]:
        save_checkpoint(reward_path, state["params"], state["config"], extra=extra, kind="reward_model")
        with pytest.raises(ValueError, match=rf"rm.npz' is not a valid reward-model checkpoint: {message}"):
            RewardModel.load(reward_path)
    state = load_checkpoint(ppo_path)
    save_checkpoint(ppo_path, state["params"], state["config"], extra={"obs_rms": [1, 2]}, kind="ppo_policy")
    from minippo.rl.ppo import load_policy
    with pytest.raises(ValueError, match=r"ppo.npz': the saved observation statistics must be null or an object"):
        load_policy(ppo_path)
    references = tmp_path / "refs.npz"  # a reference file whose name ends in .npz is still a rule's file
    references.write_text("Sure thing.\n", encoding="utf-8")
    assert isinstance(load_reward(f"rouge:{references}"), RougeReward)


def test_rollout_prompts_that_are_empty_or_too_long_are_named():
    policy = tiny_policy()  # block_size 8
    tokenizer = TinyTokenizer()
    with pytest.raises(ValueError, match=r"prompt 1 \(''\) must be at least one token"):
        generate_rollout(policy, tokenizer, [PROMPT, ""], 2, 1.0, np.random.default_rng(0))
    too_long = r"max_new_tokens \(8\) must be less than the policy's block_size \(8\)"
    for bad, error, message in [(8, ValueError, too_long),
                                (2.0, TypeError, "max_new_tokens must be an integer >= 1, got float")]:
        with pytest.raises(error, match=message):
            generate_rollout(policy, tokenizer, [PROMPT], bad, 1.0, np.random.default_rng(0))
    long_prompt = "a" * 7
    with pytest.raises(ValueError, match=r"prompt 0 \('aaaaaaa'\) must be at most 6 tokens \(block_size 8 - "
                                         r"max_new_tokens 2\), it has 7"):
        generate_rollout(policy, tokenizer, [long_prompt], 2, 1.0, np.random.default_rng(0))


def test_kl_estimators_k1_and_k3_are_unbiased_and_k2_is_not():
    """Tokens sampled from π over 5 ids; the exact KL(π ‖ π_ref) is enumerable."""
    policy = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    reference = np.array([0.05, 0.1, 0.15, 0.2, 0.5])
    exact = float(np.sum(policy * np.log(policy / reference)))
    log_ratio = np.log(reference / policy)  # log r per id
    exact_k2 = float(np.sum(policy * 0.5 * log_ratio ** 2))
    tokens = np.random.default_rng(0).choice(5, size=(200, 100), p=policy)
    logprobs, ref_logprobs = np.log(policy)[tokens], np.log(reference)[tokens]
    mask = np.ones(tokens.shape, dtype=bool)
    estimates = {name: kl_estimate(logprobs, ref_logprobs, mask, name) for name in KL_ESTIMATORS}
    for name, expected in [("k1", exact), ("k2", exact_k2), ("k3", exact)]:
        values = estimates[name]
        assert abs(values.mean() - expected) < 4 * values.std() / np.sqrt(values.size), name
    k2 = estimates["k2"]
    assert abs(k2.mean() - exact) > 10 * k2.std() / np.sqrt(k2.size)  # biased: ½E[(log r)²] ≠ KL here
    assert (estimates["k1"] < 0).any() and (k2 >= 0).all() and (estimates["k3"] >= 0).all()


def test_kl_penalty_rewards_by_hand():
    logprobs = np.array([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]])
    ref_logprobs = np.array([[-1.5, -1.0, -0.5], [-0.2, -1.7, -1.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    scores, last, beta = np.array([2.0, -1.0]), np.array([2, 1]), 0.1
    log_ratio = np.where(mask, logprobs - ref_logprobs, 0.0)
    by_estimator = {"k1": log_ratio, "k2": 0.5 * log_ratio ** 2, "k3": np.expm1(-log_ratio) + log_ratio}
    for estimator, kl in by_estimator.items():
        expected = -beta * kl
        expected[0, 2] += 2.0
        expected[1, 1] -= 1.0
        rewards = kl_penalty_rewards(logprobs, ref_logprobs, mask, scores, last, beta, estimator)
        np.testing.assert_allclose(rewards, expected, rtol=1e-14, atol=1e-15, err_msg=estimator)
        assert rewards[1, 2] == 0.0  # padding: no penalty, no score
    float32 = kl_penalty_rewards(logprobs.astype(np.float32), ref_logprobs.astype(np.float32), mask, scores, last,
                                 beta)
    assert float32.dtype == np.float32
    with pytest.raises(ValueError, match=r"^kl_estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'$"):
        RLHFConfig(kl_estimator="k4")


def test_every_config_field_has_a_one_line_help_and_a_check():
    """Later command lines generate --help from these declarations (issue 17)."""
    import dataclasses

    from minippo.pretrain import PretrainConfig
    from minippo.rl.ppo_config import PPOConfig
    from minippo.rlhf.pipeline import DemoConfig

    for config in (PPOConfig, RLHFConfig, PretrainConfig, DemoConfig):
        for spec in dataclasses.fields(config):
            help_text = spec.metadata.get("help")
            assert isinstance(help_text, str) and help_text and "\n" not in help_text, (config, spec.name)
            check = spec.metadata.get("check")
            assert check is None or isinstance(check.rule, str), (config, spec.name)


def test_estimate_value_keeps_only_what_it_is_asked_to_and_streams_the_rest():
    settings = {"tokenizer": TinyTokenizer(), "max_new_tokens": RESPONSE_LENGTH, "seed": 3, "batch_size": 7}
    full = estimate_value(tiny_policy(), PROMPT, count_a, 30, **settings)
    seen = []
    kept = estimate_value(tiny_policy(), PROMPT, count_a, 30, keep=4, watch=seen.append, **settings)
    assert kept.mean == pytest.approx(full.mean, rel=1e-12) and kept.stderr == pytest.approx(full.stderr, rel=1e-9)
    assert full.mean == pytest.approx(full.rewards.mean()) and len(full.responses) == 30
    assert kept.stderr == pytest.approx(full.rewards.std(ddof=1) / np.sqrt(30), rel=1e-9)
    assert kept.responses == full.responses[:4] and kept.rewards.shape == kept.logprobs.shape == (4,)
    assert seen == [7, 14, 21, 28, 30]
