"""Command-line sub-commands; each module registers one with ``register(subparsers)``."""
import argparse

import numpy as np

from minippo.text.corpus import load_preferences
from minippo.text.files import read_preference_pairs


def integer_option(minimum):
    """argparse type for an integer option >= ``minimum`` (shared by the sub-commands).

    argparse names the option in the error: ``argument --seed: expected an integer >= 0, got '-1'``.
    """
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def preference_split(data, test_fraction, seed):
    """``(train, test)`` preference pairs: the shipped splits when ``data`` is None or empty, otherwise the pairs of
    the JSONL file ``data`` with a random ``test_fraction`` of them (at least one) held out."""
    if not data:
        return load_preferences("train"), load_preferences("test")
    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    pairs = read_preference_pairs(data)
    if len(pairs) < 2:
        raise ValueError(f"{data}: {len(pairs)} preference pair; a train/test split needs at least 2 "
                         f"(one to train on, one to test)")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = max(1, round(test_fraction * len(pairs)))
    if n_test == len(pairs):
        raise ValueError(f"{data}: --test-fraction {test_fraction} holds out all {len(pairs)} "
                         f"preference pairs, leaving none to train on")
    return [pairs[i] for i in order[n_test:]], [pairs[i] for i in order[:n_test]]
