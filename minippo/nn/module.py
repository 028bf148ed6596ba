"""What every trainable piece of minippo has in common: named parameters and their gradients.

A :class:`Module` owns two flat dicts with the same keys:

* ``params[name]`` -- the parameter arrays, updated in place by the optimiser;
* ``grads[name]``  -- gradient buffers of the same shape and dtype, which ``backward`` passes **add**
  into (``zero_grad`` resets them), so several losses or several uses of a weight simply sum.

``state_dict``/``load_state_dict`` copy parameters out and in with one validation pass that reports
every missing, unexpected or mis-shaped key at once.
"""
import numpy as np

from minippo.checks import check_seed, some_names
from minippo.parallel import map_array_groups

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype):
    """Return ``dtype`` as a NumPy dtype, accepting only float32 and float64."""
    if dtype is None:  # np.dtype(None) would be float64
        raise TypeError("dtype must be float32 or float64, got None")
    try:
        dtype = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from error
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_array(array, shape, dtype, name):
    """``array`` as an ndarray, after checking its exact shape and dtype (nothing is silently cast)."""
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if array.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {array.dtype}")
    return array


def as_generator(seed):
    """A ``numpy.random.Generator`` from a seed (an int >= 0 or None) or an existing Generator."""
    seed = check_seed(seed)
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class Module:
    """Named parameters (``params``) with matching gradient buffers (``grads``)."""

    def __init__(self, params):
        self.params = params
        self._grads = None  # allocated on first use: a frozen model never holds gradient buffers

    @property
    def grads(self):
        """The gradient buffers (zeros at first), allocated when first asked for -- by ``backward``,
        ``zero_grad`` or an optimizer -- so that a model that is only run forward (a frozen reference
        or reward model) holds none."""
        if self._grads is None:
            self._grads = {name: np.zeros(value.shape, dtype=value.dtype) for name, value in self.params.items()}
        return self._grads

    @grads.setter
    def grads(self, grads):
        self._grads = grads

    def zero_grad(self):
        """Reset every gradient buffer to 0 (groups of buffers in parallel threads)."""
        def fill_zero(names):
            for name in names:
                self.grads[name].fill(0.0)

        map_array_groups(fill_zero, self.grads)

    def num_parameters(self):
        return sum(value.size for value in self.params.values())

    def state_dict(self):
        """A copy of the parameters, keyed by name."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state_dict, problems=()):
        """Copy ``state_dict`` into the parameters (cast to their dtype), after checking every key.

        Raises one ``ValueError`` that lists the missing, unexpected, mis-shaped, non-numeric and
        non-finite keys (at most five of each kind: missing, unexpected, wrong values), together with any
        ``problems`` a subclass found first.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        problems = list(problems)
        missing = [name for name in self.params if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self.params]
        if missing:
            problems.append(f"{len(missing)} missing keys: {some_names(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys: {some_names(unexpected)}")
        wrong = []  # one description per key whose value cannot be loaded
        for name, value in state_dict.items():
            if name not in self.params:
                continue
            value, param = np.asarray(value), self.params[name]
            if value.shape != param.shape:
                wrong.append(f"{name}: shape {value.shape} in state_dict, expected {param.shape}")
            elif value.dtype.kind not in "biuf":  # complex would lose its imaginary part
                wrong.append(f"{name}: dtype {value.dtype} is not real numbers")
            elif not finite_as(value, param.dtype):
                wrong.append(f"{name}: contains NaN or inf (in {param.dtype})")
        if wrong:
            problems.append(some_names(wrong, separator="; "))
        if problems:
            raise ValueError("cannot load state_dict: " + "; ".join(problems))
        for name, value in state_dict.items():
            self.params[name][...] = value


def finite_as(value, dtype):
    """True if every entry of ``value`` is finite once cast to ``dtype`` (1e39 is not, in float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.all(np.isfinite(np.asarray(value, dtype=dtype))))


def prefixed(modules, kind="params"):
    """One flat dict of the ``params`` (or ``grads``) of several modules, each key prefixed by its
    module's name: ``{"trunk": gpt, "head": head}`` -> ``{"trunk.transformer.wte.weight": ..., "head.weight": ...}``.

    The arrays are shared, not copied, so an optimizer over the result updates the modules themselves.
    """
    return {f"{prefix}.{name}": value for prefix, module in modules.items()
            for name, value in getattr(module, kind).items()}


def unprefixed(state_dict, prefix):
    """The entries of ``state_dict`` under ``prefix.``, with the prefix removed (the inverse of :func:`prefixed`)."""
    return {key[len(prefix) + 1:]: value for key, value in state_dict.items() if key.startswith(prefix + ".")}
