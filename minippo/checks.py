"""Argument checks shared by every validation in minippo.

``is_integer`` and ``is_real`` are predicates; the other functions return the checked value (as a
plain Python number where that matters, e.g. for JSON) or raise ``TypeError`` (wrong kind of value)
or ``ValueError`` (out of range) with a message that names the argument.

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain ``isinstance(x, int)``
check as the number 1; these helpers accept Python and NumPy numbers and reject booleans.
"""
import math
import numbers

import numpy as np


def is_integer(value):
    """True for Python and NumPy integers, not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """True for Python and NumPy real numbers (integers included), not for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def finite_number(value, name):
    """``value`` as a Python float if it is a finite real number; otherwise a ``TypeError`` (not a
    number) or ``ValueError`` (NaN or ±inf) that names ``name``."""
    if not is_real(value):
        raise TypeError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def integer_at_least(value, name, minimum):
    """``value`` as a Python int (JSON-friendly) if it is an integer >= ``minimum``; otherwise a
    ``TypeError`` (not an integer) or ``ValueError`` (too small) that names ``name``."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_seed(seed):
    """``seed`` if it is None, an int >= 0 or a ``numpy.random.Generator`` (what ``np.random.default_rng``
    takes); otherwise a ``TypeError``/``ValueError`` naming ``seed``."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if not is_integer(seed):
        raise TypeError(f"seed must be None, an int >= 0 or a numpy Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed}")
    return seed


def check_integer_fields(config, minimums):
    """Check ``config.<name>`` with :func:`integer_at_least` for each ``{name: minimum}`` and store the
    Python int back (for the ``__post_init__`` of configuration dataclasses)."""
    for name, minimum in minimums.items():
        setattr(config, name, integer_at_least(getattr(config, name), name, minimum))


def some_names(names, shown=5, separator=", "):
    """The first ``shown`` of ``names`` and how many more, so that an error message stays one readable line."""
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return separator.join(map(str, names[:shown])) + more


# -- declarative checks of configuration fields ---------------------------------------------------
# A check is a function ``check(value, name) -> value`` that returns the value (as a plain Python number
# where that matters) or raises; its ``rule`` says in words what it accepts ("> 0", "in [0, 1]"), for
# error messages and generated help alike.


def number_rule(rule, accept):
    """A check for a finite real number that ``accept(number)`` holds for; ``rule`` describes it."""
    def check(value, name):
        if not accept(finite_number(value, name)):
            raise ValueError(f"{name} must be {rule}, got {value}")
        return float(value)
    check.rule = rule
    return check


positive = number_rule("> 0", lambda number: number > 0)
fraction = number_rule("in [0, 1]", lambda number: 0 <= number <= 1)


def one_of(*choices):
    """A check for one of ``choices``."""
    def check(value, name):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        return value
    check.rule = f"one of {', '.join(map(str, choices))}"
    return check
