"""Argument checks shared by every validation in minippo.

``is_integer`` and ``is_real`` are predicates; the other functions return the checked value (as a
plain Python number where that matters, e.g. for JSON) or raise ``TypeError`` (wrong kind of value)
or ``ValueError`` (out of range) with a message that names the argument.

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain ``isinstance(x, int)``
check as the number 1; these helpers accept Python and NumPy numbers and reject booleans.
"""
import dataclasses
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


def check_seed(seed, name="seed"):
    """``seed`` if it is None, an int >= 0 or a ``numpy.random.Generator`` (what ``np.random.default_rng``
    takes); otherwise a ``TypeError``/``ValueError`` naming ``name``."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if not is_integer(seed):
        raise TypeError(f"{name} must be None, an int >= 0 or a numpy Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {seed}")
    return seed


check_seed.rule = "None, an integer >= 0 or a numpy Generator"


def some_names(names, shown=5, separator=", "):
    """The first ``shown`` of ``names`` and how many more, so that an error message stays one readable line."""
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return separator.join(map(str, names[:shown])) + more


def check_str(value, name):
    """``value`` if it is a str; otherwise a ``TypeError`` ``"<name> must be a str, got <type>"``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices`` (a tuple); otherwise a ``ValueError``
    ``"<name> must be one of <choices>, got <value>"``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


# -- declarative checks of configuration fields ---------------------------------------------------
# A check is a function ``check(value, name) -> value`` that returns the value (as a plain Python number
# where that matters) or raises; its ``rule`` says in words what it accepts ("> 0", "in [0, 1]"), for
# error messages and generated help alike.  A config field declares its check and a one-line help with
# :func:`setting`, and the config's ``__post_init__`` calls :func:`check_settings`.


def number_rule(rule, accept):
    """A check for a finite real number that ``accept(number)`` holds for; ``rule`` describes it."""
    def check(value, name):
        if not accept(finite_number(value, name)):
            raise ValueError(f"{name} must be {rule}, got {value}")
        return float(value)
    check.rule = rule
    return check


positive = number_rule("> 0", lambda number: number > 0)
non_negative = number_rule(">= 0", lambda number: number >= 0)
fraction = number_rule("in [0, 1]", lambda number: 0 <= number <= 1)
open_fraction = number_rule("in (0, 1)", lambda number: 0 < number < 1)
finite = number_rule("a finite number", lambda number: True)


def integer(minimum):
    """A check for an integer >= ``minimum`` (stored as a Python int)."""
    def check(value, name):
        return integer_at_least(value, name, minimum)
    check.rule = f"an integer >= {minimum}"
    return check


def one_of(*choices):
    """A check for one of ``choices`` (:func:`check_choice` as a declarative check)."""
    def check(value, name):
        return check_choice(value, name, choices)
    check.rule = f"one of {', '.join(map(str, choices))}"
    check.choices = choices  # for generated command-line options
    return check


def optional(number_check):
    """``number_check``, or None (which switches the setting off)."""
    def check(value, name):
        if value is None:
            return None
        if not is_real(value):
            raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
        return number_check(value, name)
    check.rule = f"{number_check.rule}, or None for off"
    return check


def flag(value, name):
    """A check for True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


flag.rule = "True or False"


text = check_str  # a check for a str, as a declarative check
text.rule = "a str"


def instance_of(cls, described):
    """A check for an instance of ``cls``, ``described`` in words ("an RLHFConfig")."""
    def check(value, name):
        if not isinstance(value, cls):
            raise TypeError(f"{name} must be {described}, got {type(value).__name__}")
        return value
    check.rule = described
    return check


def setting(default=dataclasses.MISSING, help="", check=None, *, factory=dataclasses.MISSING):
    """A dataclass field with its one-line ``help`` and its ``check`` in the field's metadata
    (``factory`` instead of ``default`` for a mutable default)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help, "check": check})


def check_settings(config):
    """Run each field's declared check on ``config`` and store the checked value back, in field order."""
    for spec in dataclasses.fields(config):
        check = spec.metadata.get("check")
        if check is not None:
            setattr(config, spec.name, check(getattr(config, spec.name), spec.name))
