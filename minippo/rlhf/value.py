"""The Monte Carlo value of a prompt: the expected reward of the policy's responses to it.

A text's state space has vocab^length states, so V cannot be solved like a small Markov reward
process; instead sample n responses τ_i ~ π and average their rewards:

    V_π(prompt) = E_π[R] = Σ_τ R(τ) P_π(τ)  ≈  (1/n) Σ_i R(τ_i),    standard error  s / √n

(the seed article's example: prompt 今天的天气怎么样?, each sampled answer scored by a judge).
"""
from typing import NamedTuple

import numpy as np

from minippo.checks import integer_at_least
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
                   seed=None, batch_size=64):
    """Estimate V_π(prompt) from ``n_samples`` sampled responses; returns a :class:`PromptValue`.

    ``reward(prompts, responses)`` scores each response; ``tokenizer`` defaults to the byte tokenizer.
    """
    tokenizer = tokenizer or ByteTokenizer()
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    n_samples = integer_at_least(n_samples, "n_samples", 2)  # two samples at least, for a standard error
    rng = as_generator(seed)
    responses, rewards, logprobs = [], [], []
    for start in range(0, n_samples, batch_size):
        count = min(batch_size, n_samples - start)
        rollout = generate_rollout(policy, tokenizer, [prompt] * count, max_new_tokens, temperature, rng)
        scores = check_rewards(reward(rollout.prompts, rollout.responses), rollout.responses)
        responses += rollout.responses
        rewards.append(scores)
        logprobs.append(rollout.sampled_logprobs.sum(axis=1))  # log P(τ) = Σ_t log π(a_t|s_t)
    rewards = np.concatenate(rewards)
    return PromptValue(float(rewards.mean()), float(rewards.std(ddof=1) / np.sqrt(n_samples)), responses,
                       rewards, np.concatenate(logprobs))
