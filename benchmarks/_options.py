"""Command-line value types shared by the benchmark scripts.

Each is an argparse ``type=``: it converts the text and refuses a value the benchmark cannot use
(``--repeats 0``, ``--threads -1``) with a usage error naming the option, instead of a traceback or
a meaningless result later.  The scripts are run as ``python benchmarks/<name>.py``, which puts this
directory first on ``sys.path``, so they import this module as ``_options``.
"""
import argparse
import math


def checked(convert, accept, expected):
    """The argparse type ``convert(text)`` that also requires ``accept(value)``; ``expected`` describes
    the values accepted, for the error message."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = checked(int, lambda value: value >= 1, "a positive integer")
non_negative_int = checked(int, lambda value: value >= 0, "an integer >= 0")
positive_float = checked(float, lambda value: 0 < value < math.inf, "a positive number")
finite_float = checked(float, math.isfinite, "a finite number")
