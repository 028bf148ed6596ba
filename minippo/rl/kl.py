"""The KL penalty of RLHF: per-token KL estimators, the penalised reward, and controllers of its weight β.

Samples a_t ~ π, with log r_t = log π_ref(a_t|s_t) − log π(a_t|s_t), estimate KL(π ‖ π_ref) per token
(Schulman, "Approximating KL Divergence", 2020):

    k1 = −log r                 unbiased, any sign (the sum over a response is log π(τ) − log π_ref(τ))
    k2 = ½ (log r)²             biased, never negative, low variance
    k3 = (r − 1) − log r        unbiased, never negative

Their derivatives with respect to log π (log r = log π_ref − log π), for a KL term in the loss (GRPO):

    ∂k1/∂log π = 1      ∂k2/∂log π = −log r      ∂k3/∂log π = 1 − r

(the k1 term's gradient is 1 on every sampled token: its expectation E_π[∇ log π] is 0, so k1 in the
loss pulls toward π_ref only through noise; k2's gradient is exactly the gradient of the KL on policy).

The per-token reward of RLHF (Ziegler et al.; TRL) penalises each token's estimate and adds the judge's
score s at the last real token of the response:

    r_t = −β · KL_t  + [t = last] · s          (KL_t = k1: r_t = −β (log π − log π_ref) + ...)

The adaptive controller (Ziegler et al., "Fine-Tuning Language Models from Human Preferences") moves
β so that the measured KL tracks a target:

    β ← β · (1 + clip(KL / target − 1, −0.2, 0.2) · min(n, horizon) / horizon)

where n is the number of samples since the last update.  Capping n at the horizon bounds the change
of one update to ±20%, so β stays positive however many samples an update covers (uncapped, n >
5 · horizon would make β negative); updates with n <= horizon follow Ziegler et al.'s rule exactly.
"""
import numpy as np

from minippo.checks import finite_number, integer_at_least, non_negative, positive

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logprobs, ref_logprobs, mask, estimator="k1"):
    """Per-token estimates (B, T) of KL(π ‖ π_ref) from sampled tokens: k1 = −log r, k2 = ½ (log r)²
    or k3 = (r − 1) − log r with log r = log π_ref − log π; 0 outside ``mask``, in the log-probs' dtype."""
    log_ratio = np.where(mask, logprobs - ref_logprobs, 0.0)  # −log r = log π − log π_ref
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio * log_ratio
    return np.where(mask, (np.exp(-log_ratio) - 1.0) + log_ratio, 0.0)  # k3


def kl_estimate_backward(logprobs, ref_logprobs, mask, estimator="k1"):
    """∂KL_t/∂log π(a_t|s_t) (B, T) of :func:`kl_estimate`'s ``estimator``: 1 (k1), log π − log π_ref (k2) or
    1 − π_ref/π (k3); 0 outside ``mask``, in the log-probs' dtype."""
    log_ratio = np.where(mask, logprobs - ref_logprobs, 0.0)  # −log r
    if estimator == "k1":
        return mask.astype(log_ratio.dtype)
    if estimator == "k2":
        return log_ratio
    return np.where(mask, 1.0 - np.exp(-log_ratio), 0.0)  # k3


def kl_penalty_rewards(logprobs, ref_logprobs, mask, scores, last_token_index, beta, estimator="k1"):
    """Per-token rewards (B, T) r_t = −β · KL_t, plus the score s of each response (B,) at its last
    token ``last_token_index`` (B,); KL_t is :func:`kl_estimate`'s ``estimator`` (k1: log π − log π_ref)."""
    rewards = -beta * kl_estimate(logprobs, ref_logprobs, mask, estimator)
    rewards[np.arange(len(scores)), last_token_index] += scores
    return rewards


class FixedKLController:
    """β stays at its initial value; ``update`` ignores its arguments."""

    def __init__(self, beta):
        self.beta = non_negative(beta, "beta")

    def update(self, kl, n_samples):
        return self.beta


class AdaptiveKLController(FixedKLController):
    """β follows the proportional rule in the module docstring."""

    def __init__(self, beta, target, horizon):
        super().__init__(beta)
        self.target, self.horizon = positive(target, "target"), positive(horizon, "horizon")

    def update(self, kl, n_samples):
        """Move β after ``n_samples`` samples (an int >= 1) whose mean KL was ``kl`` (finite)."""
        kl = finite_number(kl, "kl")  # a Python float, so that β stays one
        n_samples = integer_at_least(n_samples, "n_samples", 1)
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * min(n_samples, self.horizon) / self.horizon
        return self.beta
