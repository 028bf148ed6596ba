"""Type checks shared by every argument validation in minippo.

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain ``isinstance(x, int)``
check as the number 1; these helpers accept Python and NumPy numbers and reject booleans.
"""
import numbers

import numpy as np


def is_integer(value):
    """True for Python and NumPy integers, not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """True for Python and NumPy real numbers (integers included), not for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
