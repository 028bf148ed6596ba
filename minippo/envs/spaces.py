"""Spaces: which arrays are valid observations or actions.

Two kinds are enough for the environments here:

* :class:`Box` -- real arrays ``x`` of a fixed ``shape`` with ``low <= x <= high`` elementwise
  (bounds may be ±inf).  CartPole's observation, Pendulum's torque.
* :class:`Discrete` -- integer arrays of a fixed ``shape`` with entries in ``{0, 1, ..., n-1}``.
  A single CartPole action has ``shape == ()``; a batch of them, one per sub-environment, has
  ``shape == (num_envs,)``.

A vector environment has a *single* space (one sub-environment) and a *batched* space
(``space.batch(num_envs)``: one more leading axis of length ``num_envs``).

Every space offers ``sample(rng)``, ``contains(x)`` and ``check_action(x)``; the last one is what
``VectorEnv.step`` calls, so that a wrong action fails loudly with a message saying what was
expected instead of silently producing a wrong transition.  ``Box.check_action`` also clips
continuous actions into the box, as gymnasium's continuous-control environments do.
"""
import numpy as np

from minippo.checks import is_integer


def as_shape(shape, name="shape"):
    """``shape`` as a tuple of non-negative ints (an int ``k`` means ``(k,)``)."""
    if is_integer(shape):
        shape = (shape,)
    try:
        sizes = tuple(shape)
    except TypeError:
        sizes = None
    if sizes is None or not all(is_integer(size) for size in sizes):
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}")
    shape = tuple(int(size) for size in sizes)
    if any(size < 0 for size in shape):
        raise ValueError(f"{name} must contain non-negative sizes, got {shape}")
    return shape


class Box:
    """Real arrays of shape ``shape`` with ``low <= x <= high`` elementwise.

    ``low`` and ``high`` are broadcast to ``shape`` (which defaults to their broadcast shape) and
    stored in ``dtype`` (a floating dtype, float32 by default, as in gymnasium).
    """

    def __init__(self, low, high, shape=None, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"Box dtype must be a floating dtype, got {self.dtype}")
        low = np.asarray(low, dtype=np.float64)
        high = np.asarray(high, dtype=np.float64)
        if shape is None:
            shape = np.broadcast_shapes(low.shape, high.shape)
        self.shape = as_shape(shape)
        try:
            self.low = np.broadcast_to(low, self.shape).astype(self.dtype)
            self.high = np.broadcast_to(high, self.shape).astype(self.dtype)
        except ValueError as error:
            raise ValueError(
                f"Box low {low.shape} and high {high.shape} must broadcast to shape {self.shape}"
            ) from error
        if np.isnan(self.low).any() or np.isnan(self.high).any():
            raise ValueError("Box low and high must not contain NaN")
        if not np.all(self.low <= self.high):
            raise ValueError(f"Box needs low <= high elementwise, got low={self.low}, high={self.high}")

    def batch(self, num_envs):
        """The space of ``num_envs`` stacked elements: shape ``(num_envs, *self.shape)``."""
        return Box(self.low[None], self.high[None], (num_envs, *self.shape), self.dtype)

    def sample(self, rng):
        """A random element: uniform where both bounds are finite, ``low + Exp(1)`` or
        ``high - Exp(1)`` where only one is, standard normal where neither is (gymnasium's rule)."""
        rng = np.random.default_rng(rng)
        finite_low, finite_high = np.isfinite(self.low), np.isfinite(self.high)
        low, high = self.low.astype(np.float64), self.high.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # inf bounds only feed unused branches
            x = np.select(
                [finite_low & finite_high, finite_low, finite_high],
                [
                    low + rng.random(self.shape) * (high - low),
                    low + rng.standard_exponential(self.shape),
                    high - rng.standard_exponential(self.shape),
                ],
                default=rng.standard_normal(self.shape),
            )
        return np.clip(x.astype(self.dtype), self.low, self.high)

    def contains(self, x):
        """True if ``x`` is a real array of this shape, finite in this space's dtype, inside ``[low, high]``."""
        try:
            x = self._real_array(x, "x")
        except (TypeError, ValueError):
            return False
        with np.errstate(over="ignore"):  # beyond the dtype's range becomes inf, which is refused
            x = x.astype(self.dtype, copy=False)
        return bool(np.isfinite(x).all() and np.all((x >= self.low) & (x <= self.high)))

    def check_action(self, x, name="actions"):
        """``x`` clipped into ``[low, high]``, then cast to this space's dtype; or a
        ``TypeError``/``ValueError`` naming ``name``.

        Checks the dtype kind (real or integer numbers) and the shape.  Clipping comes *before* the
        cast, so a float64 ``1e39`` becomes ``high`` rather than float32 ``inf``, and ±inf become the
        bounds.  NaN is refused, and so is anything still infinite after the cast (a value beyond
        the dtype's range where the bound is infinite).
        """
        x = self._real_array(x, name)
        # np.minimum(np.maximum(...)) is np.clip without its Python-level overhead; NaN stays NaN.
        x = np.minimum(np.maximum(x, self.low), self.high)
        if x.dtype != self.dtype:
            with np.errstate(over="ignore"):  # beyond the dtype's range becomes inf, refused below
                x = x.astype(self.dtype)
        if not np.isfinite(x).all():
            raise ValueError(f"{name} must be finite {self.dtype} numbers once clipped into the bounds "
                             f"(no NaN), got {x}")
        return x

    def _real_array(self, x, name):
        """``x`` as an array of real numbers of this shape, or a ``TypeError``/``ValueError``."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be real numbers for {self}, got dtype {x.dtype}")
        if x.shape != self.shape:
            raise ValueError(f"{name} must have shape {self.shape} for {self}, got {x.shape}")
        return x

    def __eq__(self, other):
        return (
            isinstance(other, Box)
            and self.shape == other.shape
            and self.dtype == other.dtype
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
        )

    def __repr__(self):
        if np.all(self.low == self.low.flat[0]) and np.all(self.high == self.high.flat[0]):
            low, high = self.low.flat[0], self.high.flat[0]  # uniform bounds: print two numbers
        else:
            low, high = self.low, self.high
        return f"Box({low}, {high}, {self.shape}, {self.dtype})"


class Discrete:
    """Integer arrays of shape ``shape`` (default: scalars) with entries in ``{0, ..., n-1}``."""

    dtype = np.dtype(np.int64)

    def __init__(self, n, shape=()):
        if not is_integer(n):
            raise TypeError(f"Discrete n must be an int, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"Discrete n must be >= 1, got {n}")
        self.n = int(n)
        self.shape = as_shape(shape)

    def batch(self, num_envs):
        """The space of ``num_envs`` stacked elements: shape ``(num_envs, *self.shape)``."""
        return Discrete(self.n, (num_envs, *self.shape))

    def sample(self, rng):
        """Uniformly random integers in ``{0, ..., n-1}`` of this space's shape."""
        return np.random.default_rng(rng).integers(self.n, size=self.shape, dtype=self.dtype)

    def contains(self, x):
        """True if ``x`` is an integer array of this shape with entries in ``{0, ..., n-1}``."""
        try:
            self.check_action(x)
        except (TypeError, ValueError):
            return False
        return True

    def check_action(self, x, name="actions"):
        """``x`` as an int64 array, or a ``TypeError``/``ValueError`` naming ``name``.

        Floats are refused even when integral (``1.0``): they usually mean that a policy's
        probabilities or logits were passed where a sampled action was expected.
        """
        x = np.asarray(x)
        if x.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers for {self}, got dtype {x.dtype}")
        if x.shape != self.shape:
            raise ValueError(f"{name} must have shape {self.shape} for {self}, got {x.shape}")
        actions = x.astype(self.dtype, copy=False)  # int64 (a uint64 beyond its range wraps to negative)
        # Viewed as unsigned, a negative int64 is huge: one maximum checks both ends of the range.
        if actions.size and actions.view(np.uint64).max() >= self.n:
            raise ValueError(f"{name} must be in {{0, ..., {self.n - 1}}}, got {x}")
        return actions

    def __eq__(self, other):
        return isinstance(other, Discrete) and self.n == other.n and self.shape == other.shape

    def __repr__(self):
        return f"Discrete({self.n})" if self.shape == () else f"Discrete({self.n}, shape={self.shape})"
