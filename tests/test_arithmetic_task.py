"""Tests for the arithmetic task (minippo.tasks.arithmetic) and its exact-answer reward
(minippo.rewards.arithmetic)."""
from collections import Counter

import numpy as np
import pytest

from minippo.nn.gpt import GPT, GPTConfig
from minippo.rewards.arithmetic import (
    MAX_RESPONSE_CHARS,
    ArithmeticReward,
    arithmetic_reward,
    parse_answer,
)
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.tasks.arithmetic import (
    Problem,
    all_problems,
    commutation_class,
    forgotten_carry,
    has_carry,
    parse_prompt,
    pretraining_corpus,
    small_misses,
    split_problems,
    student_answer,
)
from minippo.text.tokenizer import ByteTokenizer

PROMPT = "Q: 37+48= A:"  # answer 85

# (response, what parse_answer reads): every malformed case is None.
RESPONSES = [
    (" 85", 85), ("85", 85), ("85\n", 85), ("\t 85  \r\n", 85), ("0", 0), ("-7", -7), (" 84", 84),
    ("", None), ("   ", None), ("\n", None),                                  # no answer
    ("85 because 80+5", None), ("85.", None), ("8 5", None), ("85 86", None),  # extra text
    ("A: 85", None), ("85<eos>", None),
    ("085", None), ("+85", None), ("-0", None), ("85.0", None), ("1e2", None), ("0x55", None),  # not canonical
    ("８５", None), ("٨٥", None), ("²", None), ("8\u00b2", None),         # non-ASCII digits
    ("\u00a085", None), ("\u200b85", None), ("85\ufffd", None),           # non-ASCII space, zero width, U+FFFD
    ("9" * 5000, None), ("85" + " " * MAX_RESPONSE_CHARS, None),          # longer than MAX_RESPONSE_CHARS
]


@pytest.mark.parametrize("response, expected", RESPONSES)
def test_parse_answer_reads_only_a_canonical_ascii_integer(response, expected):
    assert parse_answer(response) == expected


@pytest.mark.parametrize("response, expected", RESPONSES)
def test_reward_is_one_for_the_exact_answer_format_reward_for_a_wrong_number_zero_otherwise(response, expected):
    wanted = 0.0 if expected is None else (1.0 if expected == 85 else 0.25)
    assert arithmetic_reward(PROMPT, response, format_reward=0.25) == wanted
    assert arithmetic_reward(PROMPT, response) == (1.0 if expected == 85 else 0.0)


def test_reward_callable_scores_a_batch_and_reads_each_problem_from_its_prompt():
    reward = ArithmeticReward(format_reward=0.1)
    prompts = [PROMPT, "Q: 52-17= A:", "Q: 52-17= A:", "Q: 0+0= A:", "Q: 99+99= A:"]
    scores = reward(prompts, [" 85", " 35", " 45", " 0", "198"])
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores, [1.0, 1.0, 0.1, 1.0, 1.0])


def test_reward_refuses_a_prompt_that_poses_no_problem_and_a_bad_format_reward():
    with pytest.raises(ValueError, match="'Q: 37\\*48= A:' is not an arithmetic problem"):
        ArithmeticReward()(["Q: 37*48= A:"], [" 85"])
    with pytest.raises(ValueError, match="not an arithmetic problem"):
        arithmetic_reward("Q: 37*48= A:", "")  # the prompt is checked even when the response is malformed
    with pytest.raises(ValueError, match="not an arithmetic problem"):
        parse_prompt("Q: ３7+48= A:")  # a full-width digit in the prompt
    with pytest.raises(ValueError, match="not an arithmetic problem"):
        parse_prompt("Q: 137+48= A:")  # operands have at most two digits
    with pytest.raises(TypeError, match="prompt must be a str"):
        parse_prompt(37)
    with pytest.raises(TypeError, match="format_reward must be a finite number"):
        ArithmeticReward("0.1")
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="format_reward"):
            ArithmeticReward(bad)


def test_problems_answers_and_prompts():
    problems = all_problems(("+", "-"))
    assert len(problems) == 100 * 100 + 100 * 101 // 2  # every sum; differences a - b with a >= b
    assert all(problem.answer >= 0 for problem in problems)
    assert all(parse_prompt(problem.prompt) == problem for problem in problems)
    assert Problem(37, "+", 48).prompt == PROMPT and Problem(37, "+", 48).answer == 85
    assert len(all_problems()) == 10_000 and all(problem.op == "+" for problem in all_problems())
    for bad in (("*",), (), ("+", "+")):
        with pytest.raises(ValueError, match="operations"):
            all_problems(bad)
    for bad in ("+", 5, {"+"}):
        with pytest.raises(TypeError, match="operations must be a list or tuple"):
            all_problems(bad)


def test_the_student_slips_on_hand_written_problems():
    assert has_carry(Problem(37, "+", 48)) and forgotten_carry(Problem(37, "+", 48)) == 75
    assert has_carry(Problem(95, "+", 17)) and forgotten_carry(Problem(95, "+", 17)) == 102  # 112 right
    assert has_carry(Problem(52, "-", 17)) and forgotten_carry(Problem(52, "-", 17)) == 45  # 35 right
    assert not has_carry(Problem(12, "+", 34)) and not has_carry(Problem(57, "-", 13))
    assert small_misses(Problem(37, "+", 48)) == [75, 84, 86, 95]
    assert small_misses(Problem(0, "+", 0)) == [1, 10]  # never negative
    rng = np.random.default_rng(0)
    assert student_answer(Problem(37, "+", 48), 1.0, 1.0, rng) == 75  # a carry forgotten comes first
    assert student_answer(Problem(12, "+", 34), 1.0, 0.0, rng) == 46  # no carry to forget
    assert student_answer(Problem(37, "+", 48), 0.0, 0.0, rng) == 85


def test_split_is_reproducible_and_keeps_held_out_problems_and_their_twins_out_of_training():
    problems = all_problems(("+", "-"))
    train, test = split_problems(problems, 0.1, seed=3)
    assert (train, test) == split_problems(problems, 0.1, seed=3)
    assert test != split_problems(problems, 0.1, seed=4)[1]
    assert set(train).isdisjoint(test) and len(train) + len(test) == len(problems)
    assert {commutation_class(p) for p in train}.isdisjoint({commutation_class(p) for p in test})
    assert Problem(48, "+", 37) in test if Problem(37, "+", 48) in test else Problem(48, "+", 37) in train
    assert 0.08 < len(test) / len(problems) < 0.12
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            split_problems(problems, bad, seed=0)


def test_pretraining_corpus_is_reproducible_and_follows_the_student():
    train, _ = split_problems(all_problems(), 0.1, seed=0)
    lines = pretraining_corpus(train, forget_carry=0.9, miss=0.5, epochs=2, seed=7)
    assert lines == pretraining_corpus(train, 0.9, 0.5, 2, seed=7)
    assert lines != pretraining_corpus(train, 0.9, 0.5, 2, seed=8)
    assert len(lines) == 2 * len(train)
    assert Counter(line.partition(" A:")[0] + " A:" for line in lines) == Counter(
        {problem.prompt: 2 for problem in train})  # every training problem twice, no held-out one
    kinds = Counter()
    for line in lines:
        prompt, _, answer = line.partition(" A: ")
        problem = parse_prompt(prompt + " A:")
        answer = int(answer)
        if answer == problem.answer:
            kinds["right", has_carry(problem)] += 1
        elif has_carry(problem) and answer == forgotten_carry(problem):
            kinds["forgotten", True] += 1
        else:
            assert answer in small_misses(problem), line
            kinds["missed", has_carry(problem)] += 1
    carries = kinds["right", True] + kinds["forgotten", True] + kinds["missed", True]
    plain = kinds["right", False] + kinds["missed", False]
    assert abs(kinds["forgotten", True] / carries - 0.9) < 0.02
    assert abs(kinds["right", True] / carries - 0.1 * 0.5) < 0.02
    assert abs(kinds["right", False] / plain - 0.5) < 0.02
    assert all(ArithmeticReward()([prompt + " A:"], [answer])[0] == 1.0  # a student who never slips
               for prompt, _, answer in (line.partition(" A:") for line in pretraining_corpus(train, 0, 0, 1, seed=0)))
    for name, arguments in (("forget_carry", (1.5, 0.5)), ("miss", (0.5, -0.1))):
        with pytest.raises(ValueError, match=name):
            pretraining_corpus(train, *arguments, epochs=1, seed=0)


def test_rloo_trainer_runs_on_the_task_with_the_reward():
    tokenizer = ByteTokenizer()
    policy = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16), seed=0)
    config = RLHFConfig(algo="rloo", batch_size=8, minibatch_size=8, num_generations=4, max_new_tokens=6,
                        kl_target=None, seed=0)
    trainer = RLHFTrainer(policy, ArithmeticReward(format_reward=0.1), tokenizer, config)
    stats = trainer.iteration([PROMPT, "Q: 52-17= A:"])
    assert 0.0 <= stats["reward/mean"] <= 1.0 and np.isfinite(stats["policy/loss"])
