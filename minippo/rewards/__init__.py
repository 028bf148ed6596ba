"""Rewards for RL on text: the judge that scores what the policy wrote.

A reward is any callable ``reward(prompts, responses) -> np.ndarray`` of shape
(B,), one float per (prompt, response) pair; :func:`check_rewards` checks that
contract on every batch.

- ``rules``  rule-based rewards: BLEU, ROUGE-L, keywords, length, and
  :func:`parse_rule_reward` for command-line specs such as ``"length:40"``.
"""
from minippo.rewards.rules import (  # noqa: F401
    BleuReward,
    KeywordReward,
    LengthReward,
    RougeReward,
    RuleReward,
    bleu,
    check_rewards,
    keyword_reward,
    lcs_length,
    length_reward,
    parse_rule_reward,
    rouge_l,
    tokenize,
)

__all__ = [
    "BleuReward",
    "KeywordReward",
    "LengthReward",
    "RougeReward",
    "RuleReward",
    "bleu",
    "check_rewards",
    "keyword_reward",
    "lcs_length",
    "length_reward",
    "parse_rule_reward",
    "rouge_l",
    "tokenize",
]
