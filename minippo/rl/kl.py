"""Controllers for β, the weight of the KL penalty r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t)).

The adaptive controller (Ziegler et al., "Fine-Tuning Language Models from Human Preferences") moves
β so that the measured KL tracks a target:

    β ← β · (1 + clip(KL / target − 1, −0.2, 0.2) · min(n, horizon) / horizon)

where n is the number of samples since the last update.  Capping n at the horizon bounds the change
of one update to ±20%, so β stays positive however many samples an update covers (uncapped, n >
5 · horizon would make β negative); updates with n <= horizon follow Ziegler et al.'s rule exactly.
"""
from minippo.checks import finite_number, is_integer


class FixedKLController:
    """β stays at its initial value; ``update`` ignores its arguments."""

    def __init__(self, beta):
        if finite_number(beta, "beta") < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def update(self, kl, n_samples):
        return self.beta


class AdaptiveKLController(FixedKLController):
    """β follows the proportional rule in the module docstring."""

    def __init__(self, beta, target, horizon):
        super().__init__(beta)
        if not target > 0 or not horizon > 0:
            raise ValueError(f"target and horizon must be positive, got target={target}, horizon={horizon}")
        self.target, self.horizon = float(target), float(horizon)

    def update(self, kl, n_samples):
        """Move β after ``n_samples`` samples (an int >= 1) whose mean KL was ``kl`` (finite)."""
        kl = finite_number(kl, "kl")  # a Python float, so that β stays one
        if not is_integer(n_samples):
            raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * min(n_samples, self.horizon) / self.horizon
        return self.beta
