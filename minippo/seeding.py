"""Independent random streams from one seed.

``np.random.default_rng(seed)`` called twice with the same seed gives the same stream twice, so two
random choices seeded alike are not independent.  In RLHF, with one seed for picking prompts and
for sampling tokens, the prompt of row 2k+1 would be chosen by the very number that samples row k's
first token.  :func:`spawn_seeds` derives from one seed as many seeds as a program has random
choices, with NumPy's ``SeedSequence`` spawning: their streams are independent of each other (and of
``default_rng(seed)`` itself), and the same seed always gives the same seeds.

They are plain Python ints, so that they can go into configurations that are saved as JSON.
"""
import numpy as np

from minippo.checks import integer_at_least


def spawn_seeds(seed, count):
    """``count`` integer seeds of independent random streams, all determined by ``seed`` (an int >= 0)."""
    seed = integer_at_least(seed, "seed", 0)
    count = integer_at_least(count, "count", 1)
    children = np.random.SeedSequence(seed).spawn(count)
    return [int(child.generate_state(1, np.uint64)[0]) for child in children]
