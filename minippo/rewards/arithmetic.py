"""The rule reward of the arithmetic task (:mod:`minippo.tasks.arithmetic`): is the answer exact?

    reward = 1                if the response is the exact answer,
             format_reward    if it is a well-formed number but wrong,
             0                otherwise.

A response is *well-formed* when, after surrounding ASCII whitespace (space, tab, newline, ...) is
stripped, it is an integer written the one canonical way: ASCII digits 0-9, no leading zero (``"0"``
itself excepted), an optional ``-`` for a negative number, nothing else.  So ``"85"``, ``" 85"`` and
``"85\\n"`` answer 85, while these are malformed and earn 0:

- ``""`` or only whitespace -- no answer;
- ``"85 because 80+5"``, ``"85."``, ``"8 5"`` -- extra text: only the answer may be written, so a
  policy cannot hedge by writing several numbers;
- ``"085"``, ``"+85"``, ``"-0"``, ``"85.0"``, ``"1e2"`` -- not the canonical spelling;
- ``"８５"`` (full-width), ``"٨٥"`` (Arabic-Indic), ``"²"`` -- digits outside ASCII, which Python's
  ``int()`` or ``str.isdigit()`` would accept;
- a response longer than ``MAX_RESPONSE_CHARS`` -- rejected before it is read (Python refuses to turn
  more than 4,300 digits into an int, and a runaway response is no answer).

The problem is read from the prompt itself (:func:`minippo.tasks.arithmetic.parse_prompt`), so the
reward needs no table of answers and works on any prompt of the family.
"""
import re

from minippo.checks import finite_number
from minippo.rewards.rules import RuleReward
from minippo.tasks.arithmetic import parse_prompt

MAX_RESPONSE_CHARS = 64
ASCII_WHITESPACE = " \t\n\r\f\v"
CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)


def parse_answer(response):
    """The integer a response answers, or None if it is not well-formed (see the module docstring)."""
    if len(response) > MAX_RESPONSE_CHARS:
        return None
    text = response.strip(ASCII_WHITESPACE)
    if CANONICAL_INTEGER.fullmatch(text) is None or text == "-0":
        return None
    return int(text)


def arithmetic_reward(prompt, response, format_reward=0.0):
    """1 for the exact answer to the prompt's problem, ``format_reward`` for a wrong but well-formed
    number, 0 for anything else."""
    problem = parse_prompt(prompt)
    answer = parse_answer(response)
    if answer is None:
        return 0.0
    return 1.0 if answer == problem.answer else format_reward


class ArithmeticReward(RuleReward):
    """Reward callable ``reward(prompts, responses) -> (B,)`` of :func:`arithmetic_reward`."""

    def __init__(self, format_reward=0.0):
        self.format_reward = finite_number(format_reward, "format_reward")
        if not 0 <= self.format_reward < 1:
            raise ValueError(f"format_reward must be in [0, 1), below the reward of a right answer, "
                             f"got {format_reward}")

    def score(self, prompt, response):
        return arithmetic_reward(prompt, response, self.format_reward)
