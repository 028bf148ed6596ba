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
    the JSONL file ``data`` split by prompt: a random ``test_fraction`` of its distinct prompts (at least one) is
    held out with all their pairs, so held-out accuracy measures prompts the model never trained on."""
    if not data:
        return load_preferences("train"), load_preferences("test")
    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    pairs = read_preference_pairs(data)
    prompts = list(dict.fromkeys(pair["prompt"] for pair in pairs))  # distinct, in file order
    if len(prompts) < 2:
        raise ValueError(f"{data}: the pairs have {len(prompts)} distinct prompt; a train/test split by prompt "
                         f"needs at least 2 (one to train on, one to test)")
    order = np.random.default_rng(seed).permutation(len(prompts))
    n_test = max(1, round(test_fraction * len(prompts)))
    if n_test == len(prompts):
        raise ValueError(f"{data}: --test-fraction {test_fraction} holds out all {len(prompts)} "
                         f"prompts, leaving none to train on")
    test_prompts = {prompts[i] for i in order[:n_test]}
    return ([pair for pair in pairs if pair["prompt"] not in test_prompts],
            [pair for pair in pairs if pair["prompt"] in test_prompts])
