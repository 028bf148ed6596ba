"""The diagonal Gaussian policy head for continuous actions, with a state-independent log-std.

The actor network outputs the mean μ(s) (N, D); the standard deviation σ = exp(log σ) is a free
parameter vector (D,) shared by every state (CleanRL's ``actor_logstd``, initialised to 0, σ = 1).
Actions are a = μ + σ ⊙ ξ with ξ ~ N(0, I), *unclipped*: the environment clips them to its bounds.

With z = (a − μ) / σ:

    log π(a|s) = Σ_d [ −½ z_d² − log σ_d − ½ log 2π ]
    H(π)       = Σ_d [ ½ + ½ log 2π + log σ_d ]            (the same for every state)

and the gradients that flow back into μ and log σ:

    ∂ log π / ∂μ_d      = z_d / σ_d
    ∂ log π / ∂log σ_d  = z_d² − 1
    ∂ H / ∂log σ_d      = 1
"""
import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_sample(mean, log_std, rng):
    """a = μ + σ ⊙ ξ,  ξ ~ N(0, I) drawn from the Generator ``rng`` in μ's dtype."""
    noise = rng.standard_normal(mean.shape, dtype=mean.dtype)
    noise *= np.exp(log_std)
    noise += mean
    return noise


def gaussian_logprobs_forward(mean, log_std, actions):
    """log π(a) summed over the action dimensions, (N,); also returns z (N, D) for backward."""
    z = (actions - mean) * np.exp(-log_std)
    logprobs = -0.5 * np.einsum("nd,nd->n", z, z) - (log_std.sum() + 0.5 * LOG_2PI * log_std.size)
    return logprobs, z


def gaussian_logprobs_backward(dlogprobs, z, log_std):
    """dL/dμ = dL/dlog π · z / σ  (N, D)   and   dL/dlog σ = Σ_n dL/dlog π · (z² − 1)  (D,)."""
    dmean = z * np.exp(-log_std)
    dmean *= dlogprobs[:, None]
    dlog_std = dlogprobs @ (z * z - 1.0)
    return dmean, dlog_std


def gaussian_entropy(log_std, n):
    """H(π) (N,): the same value Σ_d (½ + ½ log 2π + log σ_d) for each of the n states."""
    return np.full(n, log_std.sum() + (0.5 + 0.5 * LOG_2PI) * log_std.size, dtype=log_std.dtype)


def gaussian_entropy_backward(dentropy, log_std):
    """dL/dlog σ_d = Σ_n dL/dH_n (every log σ_d moves every H_n by 1)."""
    return np.full_like(log_std, dentropy.sum())
