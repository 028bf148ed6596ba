"""Central finite differences in float64 and a relative-error check that can actually fail.

``numerical_gradient(f, x)`` perturbs ``x`` in place (restoring it afterwards), so ``f`` may close over
``x`` -- a layer's input or one of a model's parameter arrays.

``relative_error(numerical, analytic) = ‖num − ana‖ / max(‖num‖, ‖ana‖)`` (0 when both are exactly 0):
a global, scale-free measure per array.  A gradient that is off by a factor 1.01 has relative error
≈ 0.0099 and a missing term has relative error of order 1, both far above the 1e-6 tolerance, while
float64 central differences with h = 1e-5 on the O(1) losses used here are accurate to ~1e-9.
"""
import numpy as np

TOLERANCE = 1e-6
STEP = 1e-5


def numerical_gradient(f, x, step=STEP):
    """dF/dx by central differences, F = f() a scalar; x (float64) is perturbed in place and restored."""
    assert x.dtype == np.float64, "finite differences need float64"
    gradient = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), gradient.reshape(-1)
    assert np.shares_memory(flat_x, x), "x must be contiguous so that it can be perturbed in place"
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + step
        plus = float(f())
        flat_x[i] = original - step
        minus = float(f())
        flat_x[i] = original
        flat_g[i] = (plus - minus) / (2.0 * step)
    return gradient


def relative_error(numerical, analytic):
    numerical = np.asarray(numerical, dtype=np.float64)
    analytic = np.asarray(analytic, dtype=np.float64)
    assert numerical.shape == analytic.shape, (numerical.shape, analytic.shape)
    scale = max(np.linalg.norm(numerical), np.linalg.norm(analytic))
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(numerical - analytic) / scale)


def assert_gradient_close(numerical, analytic, name="gradient", tolerance=TOLERANCE):
    """Fail unless the relative error is below ``tolerance`` and the gradient is not trivially zero."""
    error = relative_error(numerical, analytic)
    assert error < tolerance, f"{name}: relative error {error:.3e} >= {tolerance:.0e}"


def assert_nonzero(gradient, name="gradient"):
    """A check against an all-zero gradient proves nothing: require a real signal."""
    assert np.linalg.norm(gradient) > 1e-6, f"{name} is (almost) zero, the check would be vacuous"


def check_gradients(f, arrays, analytic, require_nonzero=True, tolerance=TOLERANCE):
    """For each name: numerical dF/d arrays[name] vs analytic[name].  Returns {name: relative error}."""
    errors = {}
    for name, x in arrays.items():
        numerical = numerical_gradient(f, x)
        if require_nonzero:
            assert_nonzero(numerical, f"numerical {name}")
        assert_gradient_close(numerical, analytic[name], name, tolerance)
        errors[name] = relative_error(numerical, analytic[name])
    return errors
