"""Rewards for RL on text: the judge that scores what the policy wrote.

A reward is any callable ``reward(prompts, responses) -> np.ndarray`` of shape
(B,), one float per (prompt, response) pair; :func:`check_rewards` checks that
contract on every batch.

- ``contract``      the reward contract: :func:`check_rewards` and ``check_batch``.
- ``text_metrics``  :func:`tokenize` (by word, and by character in Chinese and Japanese), BLEU,
  ROUGE-L and their parts (n-grams, brevity penalty, longest common subsequence, F-measure).
- ``rules``         rule-based reward callables (BLEU, ROUGE-L, keywords, length)
  and the keyword and length rules.
- ``rule_specs``    :func:`parse_rule_reward` for command-line specs such as
  ``"length:40"`` or ``"rouge.char:refs.txt"``, and ``load_references`` for reference files.
- ``arithmetic``    :class:`ArithmeticReward`, the exact-answer reward of the arithmetic task
  (:mod:`minippo.tasks.arithmetic`).
- ``reward_model``  a learned reward model trained on preference pairs, normalised under a policy.
"""
from minippo.rewards.arithmetic import ArithmeticReward
from minippo.rewards.contract import check_rewards
from minippo.rewards.rule_specs import parse_rule_reward
from minippo.rewards.rules import (
    BleuReward,
    KeywordReward,
    LengthReward,
    RougeReward,
    RuleReward,
    keyword_reward,
    length_reward,
)
from minippo.rewards.text_metrics import bleu, lcs_length, rouge_l, tokenize

__all__ = [
    "ArithmeticReward",
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
