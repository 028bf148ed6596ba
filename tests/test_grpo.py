"""The GRPO family: group advantages, the loss aggregations, the KL term in the loss, dynamic sampling,
masked truncated responses and the diagnostics every online trainer logs."""
import json
import math
import re

import numpy as np
import pytest

from minippo.rl.advantages import (
    group_advantages,
    leave_one_out_advantages,
    zero_std_groups,
)
from minippo.rl.kl import KL_ESTIMATORS, kl_estimate, kl_estimate_backward
from minippo.rl.losses import (
    LOSS_TYPES,
    grpo_loss,
    loss_weights,
    ppo_policy_loss,
    reinforce_loss,
)
from minippo.rlhf.diagnostics import SampleLog, progress_line, write_csv
from minippo.rlhf.rollout import (
    concatenate_rollouts,
    generate_rollout,
    response_logprobs,
)
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from tests.gradcheck import assert_gradient_close, assert_nonzero, numerical_gradient
from tests.test_rlhf import (
    PROMPT,
    RESPONSE_LENGTH,
    TinyTokenizer,
    count_a,
    exact_expectation_and_gradient,
    tiny_policy,
)


class EndingTokenizer(TinyTokenizer):
    eos_id = 2  # 'c' ends a response


def loss_inputs(seed=0, shape=(4, 6)):
    """Log-probabilities, a moved policy (ratios on both sides of the clip range), a reference, advantages
    of both signs and a ragged mask (one row with a single token)."""
    rng = np.random.default_rng(seed)
    old = np.log(rng.uniform(0.05, 0.9, shape))
    logprobs = old + rng.normal(0.0, 0.3, shape)
    ref = old + rng.normal(0.0, 0.5, shape)
    advantages = np.repeat(rng.standard_normal(shape[0])[:, None], shape[1], axis=1)
    mask = np.arange(shape[1]) < np.array([6, 3, 1, 5])[:, None]
    return logprobs, old, ref, advantages, mask


# --- advantages --------------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0])  # two groups of G = 4
    first, second = rewards[:4], rewards[4:]
    expected = np.concatenate([(first - 0.25) / (first.std(ddof=1) + 1e-4),
                               (second - 5.0) / (second.std(ddof=1) + 1e-4)])
    np.testing.assert_allclose(group_advantages(rewards, 4), expected, rtol=1e-14)
    np.testing.assert_allclose(group_advantages(rewards, 4, "batch"),
                               np.concatenate([first - 0.25, second - 5.0]) / (rewards.std(ddof=1) + 1e-4), rtol=1e-14)
    np.testing.assert_array_equal(group_advantages(rewards, 4, "none"), np.concatenate([first - 0.25, second - 5.0]))
    assert (group_advantages(np.ones(4), 4) == 0).all()  # a group with one reward teaches nothing
    np.testing.assert_array_equal(zero_std_groups([3.0, 3.0, 1.0, 2.0, 0.5, 0.5], 2), [True, False, True])


@pytest.mark.parametrize("group", [2, 3, 8])
def test_grpo_without_std_scaling_is_rloo_times_g_minus_one_over_g(group):
    """r_i − mean(r) = (G−1)/G · (r_i − mean_{j≠i} r_j): Dr. GRPO's advantage is RLOO's up to G/(G−1)."""
    rewards = np.random.default_rng(group).standard_normal(5 * group)
    rloo = leave_one_out_advantages(rewards, group)
    np.testing.assert_allclose(group_advantages(rewards, group, "none"), (group - 1) / group * rloo, rtol=1e-12,
                               atol=1e-15)
    baseline = np.array([np.delete(g, i).mean() for g in rewards.reshape(-1, group) for i in range(group)])
    np.testing.assert_allclose(rloo, rewards - baseline, rtol=1e-12, atol=1e-15)  # the definition, by a loop


# --- losses ------------------------------------------------------------------------------------------


def test_loss_types_aggregate_hand_made_masks():
    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)  # lengths 4, 1 and an empty row
    token_loss = np.array([[1.0, 2.0, 3.0, 4.0], [8.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
    totals = {loss_type: float(np.sum(loss_weights(mask, loss_type, max_length=5) * token_loss))
              for loss_type in LOSS_TYPES}
    assert totals["grpo"] == pytest.approx((10 / 4 + 8 / 1 + 0) / 3)  # per-response mean, then over B = 3 rows
    assert totals["dr_grpo"] == pytest.approx(18 / (3 * 5))  # token sum / (B · max_length)
    assert totals["dapo"] == pytest.approx(18 / 5)  # token sum / tokens in the batch
    float32 = loss_weights(mask, "grpo", dtype=np.float32)
    assert float32.dtype == np.float32 and (float32[~mask] == 0).all()
    assert np.sum(loss_weights(mask, "dr_grpo")) == pytest.approx(5 / (3 * 4))  # max_length defaults to T


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("kl_estimator", KL_ESTIMATORS)
def test_grpo_loss_gradient_matches_finite_differences(loss_type, kl_estimator):
    logprobs, old, ref, advantages, mask = loss_inputs()
    settings = {"clip_coef": 0.2, "mask": mask, "clip_coef_high": 0.28, "beta": 0.3, "kl_estimator": kl_estimator,
                    "loss_type": loss_type, "max_length": 8}
    result = grpo_loss(logprobs, old, ref, advantages, **settings)
    assert 0 < result.clipfrac_low and 0 < result.clipfrac_high  # both clipped branches are exercised
    numerical = numerical_gradient(lambda: grpo_loss(logprobs, old, ref, advantages, **settings).loss, logprobs)
    assert_nonzero(result.dlogprobs)
    assert_gradient_close(numerical, result.dlogprobs, f"{loss_type}/{kl_estimator}")
    assert (result.dlogprobs[~mask] == 0).all()


@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
def test_kl_estimate_backward_matches_finite_differences(estimator):
    logprobs, _, ref, _, mask = loss_inputs(1)
    numerical = numerical_gradient(lambda: kl_estimate(logprobs, ref, mask, estimator).sum(), logprobs)
    assert_gradient_close(numerical, kl_estimate_backward(logprobs, ref, mask, estimator), estimator)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_reinforce_loss_with_each_aggregation_matches_finite_differences(loss_type):
    logprobs, _, _, advantages, mask = loss_inputs(2)
    _loss, dlogprobs = reinforce_loss(logprobs, advantages, mask, loss_type, 8)
    numerical = numerical_gradient(lambda: reinforce_loss(logprobs, advantages, mask, loss_type, 8)[0], logprobs)
    assert_gradient_close(numerical, dlogprobs, loss_type)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_at_ratio_one_the_clipped_objective_is_the_policy_gradient(loss_type):
    """One inner iteration: π = π_old, ρ = 1, nothing is clipped and the gradient is REINFORCE's."""
    logprobs, _, _, advantages, mask = loss_inputs(3)
    result = grpo_loss(logprobs, logprobs.copy(), None, advantages, 0.2, mask, loss_type=loss_type, max_length=8)
    _, dlogprobs = reinforce_loss(logprobs, advantages, mask, loss_type, 8)
    np.testing.assert_array_equal(result.dlogprobs, dlogprobs)
    assert result.approx_kl == 0.0 and result.clipfrac == 0.0


def test_clip_higher_only_moves_the_upper_bound():
    logprobs, old, _, advantages, mask = loss_inputs()
    symmetric = ppo_policy_loss(logprobs, old, advantages, 0.2, mask)
    wider = ppo_policy_loss(logprobs, old, advantages, 0.2, mask, clip_coef_high=0.5)
    assert wider.clipfrac_low == symmetric.clipfrac_low and wider.clipfrac_high < symmetric.clipfrac_high
    ratio = np.exp(logprobs - old)[mask]
    assert symmetric.clipfrac == pytest.approx(np.mean(np.abs(ratio - 1) > 0.2))


def test_grpo_loss_matches_a_pytorch_transcription_of_trl():
    """TRL's GRPOTrainer._compute_loss, written in PyTorch, gives the same loss and gradient."""
    torch = pytest.importorskip("torch")
    logprobs, old, ref, advantages, mask = loss_inputs(4)
    for loss_type in LOSS_TYPES:
        result = grpo_loss(logprobs, old, ref, advantages, 0.2, mask, 0.28, 0.04, "k3", loss_type, 8)
        lp = torch.tensor(logprobs, requires_grad=True)
        old_t, ref_t, adv, m = (torch.tensor(a) for a in (old, ref, advantages[:, 0], mask.astype(np.float64)))
        coef_1 = torch.exp(lp - old_t)
        coef_2 = torch.clamp(coef_1, 1 - 0.2, 1 + 0.28)
        per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
        per_token_loss = per_token_loss + 0.04 * (torch.exp(ref_t - lp) - (ref_t - lp) - 1)
        if loss_type == "grpo":
            loss = ((per_token_loss * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
        elif loss_type == "dr_grpo":
            loss = (per_token_loss * m).sum() / (per_token_loss.size(0) * 8)
        else:
            loss = (per_token_loss * m).sum() / m.sum()
        loss.backward()
        assert result.loss == pytest.approx(loss.item(), rel=1e-12), loss_type
        np.testing.assert_allclose(result.dlogprobs, lp.grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=loss_type)


# --- the trainer -------------------------------------------------------------------------------------


def grpo_config(**settings):
    return RLHFConfig(**{"algo": "grpo", "batch_size": 16, "minibatch_size": 8, "num_generations": 4,
                         "max_new_tokens": RESPONSE_LENGTH, "learning_rate": 1e-2, "kl_target": None, **settings})


def test_num_generations_must_divide_the_batch():
    with pytest.raises(ValueError, match=r"^grpo samples num_generations responses per prompt, so num_generations "
                                         r"\(6\) must divide batch_size \(16\)$"):
        grpo_config(num_generations=6)
    with pytest.raises(ValueError, match="^num_generations must be an integer >= 2, got 1$"):
        grpo_config(num_generations=1)
    with pytest.raises(ValueError, match="dynamic_sampling_tries resamples groups .* ppo has none"):
        RLHFConfig(dynamic_sampling_tries=2)
    for field, value, message in [("loss_type", "bnpo", "loss_type must be one of ('grpo', 'dr_grpo', 'dapo')"),
                                  ("scale_rewards", "std", "scale_rewards must be one of"),
                                  ("clip_coef_high", 0.0, "clip_coef_high must be > 0")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            grpo_config(**{field: value})
    assert grpo_config().prompts_per_iteration == 4 and RLHFConfig(batch_size=16).prompts_per_iteration == 16




def test_grpo_with_one_inner_iteration_starts_at_ratio_one_and_defaults_to_k3_and_grpo_loss():
    """log π_old is the sampler's (the KV-cache decode), so the first ratio is 1 within round-off (float64)."""
    trainer = RLHFTrainer(tiny_policy(seed=2), count_a, TinyTokenizer(),
                          grpo_config(update_epochs=1, minibatch_size=16, init_kl_coef=0.1))
    assert trainer.kl_estimator == "k3" and trainer.loss_type == "grpo" and trainer.critic is None
    stats = trainer.iteration([PROMPT] * 4)
    assert 0.0 <= stats["policy/first_ratio_max_error"] < 1e-12
    assert abs(stats["policy/approx_kl"]) < 1e-14
    assert stats["policy/clipfrac_low"] == stats["policy/clipfrac_high"] == 0.0
    assert 0.0 <= stats["frac_reward_zero_std"] <= 1.0 and "value/loss" not in stats
    ppo = RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(), RLHFConfig(max_new_tokens=4))
    assert ppo.kl_estimator == "k1" and ppo.loss_type == "dapo"  # PPO's reward and token mean, as before


def test_grpo_raises_the_expected_reward():
    model = tiny_policy(seed=4)
    start, _ = exact_expectation_and_gradient(model)
    trainer = RLHFTrainer(model, count_a, TinyTokenizer(),
                          grpo_config(batch_size=32, minibatch_size=16, learning_rate=3e-2, init_kl_coef=0.01,
                                      update_epochs=2, seed=1))
    for _ in range(12):
        trainer.iteration([PROMPT] * 8)
    end, _ = exact_expectation_and_gradient(model)
    assert end > start + 0.5, (start, end)


def test_beta_zero_runs_no_reference_forward():
    class NoForward:
        def forward(self, *args, **kwargs):
            raise AssertionError("the reference model ran at β = 0")

    trainer = RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(), grpo_config(init_kl_coef=0.0))
    trainer.reference = NoForward()
    stats = trainer.iteration([PROMPT] * 4)
    assert "objective/kl_k1" not in stats and stats["objective/beta"] == 0.0  # no reference: no KL, not NaN
    assert math.isfinite(stats["policy/loss"])
    line = progress_line(1, 1, stats)
    assert "kl –" in line and "nan" not in line.lower(), line


def test_dynamic_sampling_resamples_then_drops_groups_whose_rewards_are_all_equal():
    """Every response to "b" scores 0 (a group with no signal, whatever is sampled); responses to "ab" are
    scored by their a's, which differ within a group almost always."""
    def judge(prompts, responses):
        return np.array([0.0 if p == "b" else r.count("a") for p, r in zip(prompts, responses)])

    trainer = RLHFTrainer(tiny_policy(), judge, TinyTokenizer(), grpo_config(dynamic_sampling_tries=2))
    stats = trainer.iteration(["ab", "b", "ab", "b"])
    assert stats["frac_reward_zero_std"] >= 0.5  # the two "b" groups, before resampling
    assert stats["dynamic_sampling/dropped_groups"] == 2
    assert stats["dynamic_sampling/resampled_groups"] >= 4  # both "b" groups, on each of the 2 tries
    kept = trainer.last_samples
    assert len(kept) == 8 and {sample["prompt"] for sample in kept} == {"ab"}
    rewards = np.array([sample["reward"] for sample in kept])
    assert not zero_std_groups(rewards, 4).any()
    # a batch in which every group is flat is kept whole: nothing is dropped, every advantage is 0
    flat = RLHFTrainer(tiny_policy(), judge, TinyTokenizer(), grpo_config(dynamic_sampling_tries=1))
    stats = flat.iteration(["b"] * 4)
    assert stats["dynamic_sampling/dropped_groups"] == 0 and len(flat.last_samples) == 16


def test_concatenated_rollouts_keep_every_rows_log_probabilities():
    policy, tokenizer, rng = tiny_policy(), TinyTokenizer(), np.random.default_rng(0)
    short = generate_rollout(policy, tokenizer, ["a", "b"], 2, 1.0, rng)
    long = generate_rollout(policy, tokenizer, ["abab", "ab"], 3, 1.0, rng)
    merged = concatenate_rollouts([short, long], tokenizer.pad_id)
    assert merged.tokens.shape == (4, 4 + 3) and merged.prompts == ["a", "b", "abab", "ab"]
    recomputed = response_logprobs(policy, merged, 1.0)[0]
    for rows, part in ((slice(0, 2), short), (slice(2, 4), long)):
        width = part.response_mask.shape[1]
        mask = part.response_mask
        np.testing.assert_allclose(recomputed[rows, :width][mask], part.sampled_logprobs[mask], atol=1e-12)
        assert not merged.response_mask[rows, width:].any()


def test_mask_truncated_completions_leaves_cut_responses_out_of_the_loss():
    trainer = RLHFTrainer(tiny_policy(), count_a, EndingTokenizer(),
                          grpo_config(update_epochs=1, minibatch_size=16, init_kl_coef=0.0,
                                      mask_truncated_completions=True))
    gradients = []
    backward = trainer.policy.backward
    trainer.policy.backward = lambda dlogits, *rest: gradients.append(dlogits.copy()) or backward(dlogits, *rest)
    stats = trainer.iteration([PROMPT] * 4)
    truncated = np.array([sample["truncated"] for sample in trainer.last_samples])
    assert truncated.any() and not truncated.all()
    assert stats["completions/clipped_ratio"] == truncated.mean()
    (dlogits,) = gradients
    per_row = np.abs(dlogits).sum(axis=(1, 2))
    assert (per_row[truncated] == 0).all() and (per_row[~truncated] > 0).any()
    with pytest.raises(ValueError, match="mask_truncated_completions needs a tokenizer with an EOS token"):
        RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(), grpo_config(mask_truncated_completions=True))


def test_ppo_with_every_response_cut_takes_no_step():
    """mask_truncated_completions with nothing left to train on: PPO skips the update instead of failing to
    whiten an empty set of advantages (TinyTokenizer never ends a response, EndingTokenizer at most sometimes)."""
    trainer = RLHFTrainer(tiny_policy(), count_a, EndingTokenizer(),
                          RLHFConfig(algo="ppo", batch_size=4, minibatch_size=2, max_new_tokens=1, kl_target=None,
                                     mask_truncated_completions=True))
    trainer.rng = np.random.default_rng(0)
    for _ in range(20):  # until an iteration has every response cut (max_new_tokens=1 makes that common)
        stats = trainer.iteration([PROMPT] * 4)
        if stats["completions/clipped_ratio"] == 1.0:
            break
    else:
        pytest.fail("no iteration had every response cut")
    assert "policy/loss" not in stats and "value/explained_variance" not in stats


def test_iteration_needs_prompts_per_iteration_prompts():
    trainer = RLHFTrainer(tiny_policy(), count_a, EndingTokenizer(), grpo_config())
    with pytest.raises(ValueError, match=r"iteration needs config.prompts_per_iteration = 4 prompts \(grpo, "
                                         r"batch_size 16\), got 16"):
        trainer.iteration([PROMPT] * 16)


# --- diagnostics -------------------------------------------------------------------------------------


DIAGNOSTICS = ("reward/mean", "reward/std", "completions/mean_length", "completions/min_length",
               "completions/max_length", "completions/clipped_ratio", "objective/kl_k1", "objective/kl_k2",
               "objective/kl_k3", "objective/beta", "policy/loss", "policy/entropy", "policy/approx_kl",
               "policy/clipfrac_low", "policy/clipfrac_high", "grad_norm", "time/generate", "time/score",
               "time/forward", "time/train")


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "rloo", "grpo"])
def test_every_online_trainer_logs_the_diagnostics(algo, tmp_path):
    config = RLHFConfig(algo=algo, batch_size=8, minibatch_size=4, num_generations=4, max_new_tokens=RESPONSE_LENGTH,
                        update_epochs=2, learning_rate=3e-2)
    trainer = RLHFTrainer(tiny_policy(), count_a, EndingTokenizer(), config)
    rows = [{"iteration": i, **trainer.iteration([PROMPT] * config.prompts_per_iteration)} for i in (1, 2)]
    stats = rows[-1]
    for key in DIAGNOSTICS + (("frac_reward_zero_std",) if algo in ("rloo", "grpo") else ()):
        assert math.isfinite(stats[key]), key
    lengths = [sample["length"] for sample in trainer.last_samples]
    assert (stats["completions/min_length"], stats["completions/max_length"]) == (min(lengths), max(lengths))
    assert stats["completions/mean_length"] == pytest.approx(np.mean(lengths))
    assert stats["objective/kl_k2"] >= 0 and stats["objective/kl_k3"] >= 0
    line = progress_line(2, 2, stats)
    assert line.startswith("iter   2/2  reward") and "clip" in line and "k3" in line
    write_csv(rows, tmp_path / "log.csv")
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "iteration" and set(DIAGNOSTICS) <= set(header)
    log = SampleLog(tmp_path / "samples.jsonl")
    log.add(2, trainer.last_samples)
    log.add(3, trainer.last_samples[:1])
    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == config.batch_size + 1 and lines[-1]["iteration"] == 3
    assert set(lines[0]) == {"iteration", "prompt", "response", "reward", "length", "truncated"}


def test_rlhf_command_runs_grpo_and_writes_samples(tmp_path, capsys):
    from minippo.cli import main
    from minippo.nn.checkpoint import save_checkpoint
    from minippo.nn.gpt import GPT, GPTConfig

    policy = GPT(GPTConfig(vocab_size=258, block_size=64, n_layer=1, n_head=2, n_embd=16), seed=0)
    path = tmp_path / "policy.npz"
    save_checkpoint(path, policy.params, policy.config.to_dict(), extra={"tokenizer": "byte"}, kind="gpt")
    out = tmp_path / "grpo"
    assert main(["rlhf", "--policy", str(path), "--reward", "length:3", "--algo", "grpo", "--iterations", "2",
                 "--batch-size", "8", "--minibatch-size", "4", "--num-generations", "4", "--max-new-tokens", "6",
                 "--loss-type", "dr_grpo", "--clip-coef-high", "0.3", "--fixed-kl", "0.04", "--samples-every", "2",
                 "--out", str(out)]) == 0
    assert "iter   2/2" in capsys.readouterr().out
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and {sample["iteration"] for sample in samples} == {2}
    header = (out / "rlhf_log.csv").read_text().splitlines()[0].split(",")
    assert "frac_reward_zero_std" in header and "policy/clipfrac_high" in header
    assert main(["rlhf", "--policy", str(path), "--reward", "length:3", "--algo", "grpo", "--batch-size", "16",
                 "--num-generations", "3"]) == 2
    assert "--num-generations (3) must divide --batch-size (16)" in capsys.readouterr().err


def test_a_dict_of_rewards_is_summed_with_weights_and_each_is_logged():
    def count_b(prompts, responses):
        return np.array([r.count("b") for r in responses], dtype=np.float64)

    config = grpo_config(reward_weights=[1.0, -0.5])
    trainer = RLHFTrainer(tiny_policy(), {"a": count_a, "b": count_b}, TinyTokenizer(), config)
    stats = trainer.iteration([PROMPT] * 4)
    samples = trainer.last_samples
    a = np.array([s["rewards"]["a"] for s in samples])
    b = np.array([s["rewards"]["b"] for s in samples])
    np.testing.assert_array_equal(a, [s["response"].count("a") for s in samples])
    np.testing.assert_array_equal([s["reward"] for s in samples], a - 0.5 * b)
    assert stats["reward/a/mean"] == pytest.approx(a.mean()) and stats["reward/b/std"] == pytest.approx(b.std())
    assert stats["reward/mean"] == pytest.approx(np.mean(a - 0.5 * b))
    with pytest.raises(ValueError, match=r"^reward_weights has 2 weights for 1 rewards \(a\)"):
        RLHFTrainer(tiny_policy(), {"a": count_a}, TinyTokenizer(), config)
    with pytest.raises(ValueError, match=r"^reward_weights has 2 weights for 0 rewards \(one callable\)"):
        RLHFTrainer(tiny_policy(), count_a, TinyTokenizer(), config)
    with pytest.raises(TypeError, match=r"^reward_weights\[1\] must be a finite number, got str"):
        grpo_config(reward_weights=[1.0, "x"])
    broken = RLHFTrainer(tiny_policy(), {"a": count_a, "nan": lambda p, r: np.full(len(r), np.nan)}, TinyTokenizer(),
                         grpo_config())
    with pytest.raises(ValueError, match=r"^reward 'nan': rewards must be finite"):
        broken.iteration([PROMPT] * 4)
