"""Two-digit arithmetic: a task whose answer can be checked exactly.

A problem is two operands from 0..99 and an operation; its prompt and the answer the policy should
write read, as one line of text::

    Q: 37+48= A: 85

Addition and subtraction are the operations; a subtraction is only posed when its answer is not
negative (``Q: 52-17= A: 35``).  :func:`all_problems` lists the family, :func:`split_problems` holds
some of it out (an addition and its commuted twin, 37+48 and 48+37, always fall on the same side, so
no held-out answer can be read off a training line), and :func:`pretraining_corpus` writes the lines
a language model is pretrained on.

The pretraining corpus is the work of a sloppy student, who makes two kinds of mistake.  On a problem
with a carry (or a borrow) the student forgets it with probability ``forget_carry`` (37+48 -> 75,
52-17 -> 45); otherwise, on any problem, the student misses by one or by ten (±1 or ±10, drawn at
random) with probability ``miss``.  A model that learns this corpus is partly right: decoding greedily
it is right where there is no carry, but where there is one it writes the forgotten carry, which it
has seen more often than the right answer; sampling at temperature 1 it is right on about
(1 − miss)(1 − forget_carry · P(carry)) of the problems.  The
reward (:mod:`minippo.rewards.arithmetic`) tells right from wrong, so RL can teach what the corpus
got wrong: to carry, and to stop missing.
"""
import re
from typing import NamedTuple

import numpy as np

from minippo.checks import finite_number, integer_at_least

OPERATIONS = ("+", "-")
MAX_OPERAND = 99
PROMPT_PATTERN = re.compile(r"Q: ([0-9]{1,2})([+-])([0-9]{1,2})= A:", re.ASCII)


class Problem(NamedTuple):
    a: int
    op: str
    b: int

    @property
    def answer(self):
        """The exact answer: a + b or a − b."""
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def prompt(self):
        """``"Q: 37+48= A:"``: what the policy sees."""
        return f"Q: {self.a}{self.op}{self.b}= A:"


def check_operations(operations):
    """``operations`` as a tuple, if it is a non-empty sequence of distinct members of OPERATIONS."""
    if not isinstance(operations, (list, tuple)):
        raise TypeError(f"operations must be a list or tuple of {OPERATIONS}, got {type(operations).__name__}")
    if not all(op in OPERATIONS for op in operations):
        raise ValueError(f"operations must be a sequence of {OPERATIONS}, got {operations!r}")
    if not operations or len(set(operations)) != len(operations):
        raise ValueError(f"operations must be non-empty and without repeats, got {operations!r}")
    return tuple(operations)


def all_problems(operations=("+",)):
    """Every problem of the family, in a fixed order: a, b in 0..99, subtractions with a ≥ b."""
    operations = check_operations(operations)
    return [Problem(a, op, b) for op in operations for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)
            if op == "+" or a >= b]


def commutation_class(problem):
    """The problem that stands for a problem and its commuted twin: 37+48 and 48+37 both give 37+48; a
    subtraction stands for itself."""
    if problem.op == "+":
        return Problem(min(problem.a, problem.b), "+", max(problem.a, problem.b))
    return problem


def split_problems(problems, test_fraction, seed):
    """``(train, test)``: a random ``test_fraction`` of the commutation classes of ``problems`` is held
    out, so no held-out problem or its commuted twin is in ``train``.  The same seed gives the same
    split; both lists keep the order of ``problems``."""
    test_fraction = finite_number(test_fraction, "test_fraction")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    classes = sorted({commutation_class(problem) for problem in problems})
    order = np.random.default_rng(seed).permutation(len(classes))
    held_out = {classes[i] for i in order[:max(1, round(test_fraction * len(classes)))]}
    train = [problem for problem in problems if commutation_class(problem) not in held_out]
    test = [problem for problem in problems if commutation_class(problem) in held_out]
    return train, test


def parse_prompt(prompt):
    """The :class:`Problem` a prompt poses (ValueError naming the prompt if it poses none)."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    match = PROMPT_PATTERN.fullmatch(prompt.strip())
    if match is None:
        raise ValueError(f"prompt {prompt!r:.80} is not an arithmetic problem such as 'Q: 37+48= A:'")
    return Problem(int(match[1]), match[2], int(match[3]))


def has_carry(problem):
    """True if the units column carries (addition) or borrows (subtraction)."""
    units_a, units_b = problem.a % 10, problem.b % 10
    return units_a + units_b >= 10 if problem.op == "+" else units_a < units_b


def forgotten_carry(problem):
    """The answer with the carry or borrow forgotten: each column on its own, 37+48 -> 75, 52-17 -> 45
    (the smaller digit taken from the larger)."""
    tens_a, units_a, tens_b, units_b = problem.a // 10, problem.a % 10, problem.b // 10, problem.b % 10
    if problem.op == "+":
        return (tens_a + tens_b) * 10 + (units_a + units_b) % 10
    return (tens_a - tens_b) * 10 + abs(units_a - units_b)


def small_misses(problem):
    """Wrong answers one or ten away from the right one (never negative)."""
    return [miss for miss in (problem.answer + step for step in (-10, -1, 1, 10)) if miss >= 0]


def student_answer(problem, forget_carry, miss, rng):
    """The sloppy student's answer: the forgotten carry with probability ``forget_carry`` (on a problem with
    a carry), otherwise one of the small misses with probability ``miss``, otherwise the right answer."""
    if has_carry(problem) and rng.random() < forget_carry:
        return forgotten_carry(problem)
    if rng.random() < miss:
        misses = small_misses(problem)
        return misses[int(rng.integers(len(misses)))]
    return problem.answer


def format_example(problem, answer):
    """One corpus line: ``"Q: 37+48= A: 85"``."""
    return f"{problem.prompt} {answer}"


def pretraining_corpus(problems, forget_carry, miss, epochs, seed):
    """Corpus lines: every problem ``epochs`` times (shuffled), each with a :func:`student_answer`."""
    for name, probability in (("forget_carry", forget_carry), ("miss", miss)):
        if not 0 <= finite_number(probability, name) <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {probability}")
    epochs = integer_at_least(epochs, "epochs", 1)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(problems)) for _ in range(epochs)])
    return [format_example(problems[i], student_answer(problems[i], forget_carry, miss, rng)) for i in order]
