"""Controllers for β, the weight of the KL penalty r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t)).

The adaptive controller (Ziegler et al., "Fine-Tuning Language Models from Human Preferences") moves
β so that the measured KL tracks a target:

    β ← β · (1 + clip(KL / target − 1, −0.2, 0.2) · n / horizon)

where n is the number of samples since the last update.
"""


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, beta):
        if beta < 0:
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
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_samples / self.horizon
        return self.beta
