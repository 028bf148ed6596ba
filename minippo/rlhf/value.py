"""The Monte Carlo value of a prompt: the expected reward of the policy's responses to it.

A text's state space has vocab^length states, so V cannot be solved like a small Markov reward
process; instead sample n responses τ_i ~ π and average their rewards:

    V_π(prompt) = E_π[R] = Σ_τ R(τ) P_π(τ)  ≈  (1/n) Σ_i R(τ_i),    standard error  s / √n

(the seed article's example: prompt 今天的天气怎么样?, each sampled answer scored by a judge).
"""
from typing import NamedTuple

import numpy as np

from minippo.checks import integer_at_least
from minippo.mrp.monte_carlo import merge_moments
from minippo.nn.module import as_generator
from minippo.rewards.rules import check_rewards
from minippo.rlhf.rollout import generate_rollout
from minippo.text.tokenizer import ByteTokenizer


class PromptValue(NamedTuple):
    mean: float
    stderr: float
    responses: list
    rewards: np.ndarray
    logprobs: np.ndarray  # log P_π(τ_i) of each sampled response


def estimate_value(policy, prompt, reward, n_samples, tokenizer=None, max_new_tokens=40, temperature=1.0,
                   seed=None, batch_size=64, keep=None, watch=None):
    """Estimate V_π(prompt) from ``n_samples`` sampled responses; returns a :class:`PromptValue`.

    ``reward(prompts, responses)`` scores each response; ``tokenizer`` defaults to the byte tokenizer.
    Responses are sampled ``batch_size`` at a time and only running sums are kept
    (:func:`~minippo.mrp.monte_carlo.merge_moments`), so any ``n_samples`` fits in memory: the result holds the
    first ``keep`` responses with their rewards and log-probabilities (default: all).  ``watch(samples_done)``,
    called after each batch, may print progress.
    """
    tokenizer = tokenizer or ByteTokenizer()
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    n_samples = integer_at_least(n_samples, "n_samples", 2)  # two samples at least, for a standard error
    keep = n_samples if keep is None else integer_at_least(keep, "keep", 0)
    rng = as_generator(seed)
    responses, rewards, logprobs = [], [], []
    done, mean, m2 = 0, 0.0, 0.0
    for start in range(0, n_samples, batch_size):
        count = min(batch_size, n_samples - start)
        rollout = generate_rollout(policy, tokenizer, [prompt] * count, max_new_tokens, temperature, rng)
        scores = check_rewards(reward(rollout.prompts, rollout.responses), rollout.responses)
        done, mean, m2 = merge_moments(done, mean, m2, scores.astype(np.float64))
        room = max(0, keep - len(responses))
        responses += rollout.responses[:room]
        rewards.append(scores[:room])
        logprobs.append(rollout.sampled_logprobs.sum(axis=1)[:room])  # log P(τ) = Σ_t log π(a_t|s_t)
        if watch is not None:
            watch(done)
    return PromptValue(float(mean), float(np.sqrt(m2 / (done - 1)) / np.sqrt(done)), responses,
                       np.concatenate(rewards), np.concatenate(logprobs))
