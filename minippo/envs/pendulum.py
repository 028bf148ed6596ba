"""Pendulum-v1, vectorized: swing a frictionless pendulum up and keep it upright with a torque.

State ``(θ, θ̇)`` with ``θ = 0`` upright.  The action is a torque ``u``, clipped to ``[-2, 2]`` by
the action space (``Box.check_action``).  With gravity ``g = 10`` (a constructor argument: a finite
number >= 0), mass ``m = 1``, length ``l = 1`` and ``dt = 0.05`` (semi-implicit Euler: the new
velocity moves the angle)::

    θ̇ ← clip(θ̇ + (3g / (2l) · sin θ + 3 / (m l²) · u) · dt,  -8, 8)
    θ ← θ + θ̇ · dt

The reward is ``-(norm(θ)² + 0.1 θ̇² + 0.001 u²)``, computed from the state *before* the step,
with ``norm(θ) = ((θ + π) mod 2π) - π`` the angle wrapped into ``[-π, π)``; it is 0 only when the
pendulum rests upright.  The observation is ``(cos θ, sin θ, θ̇)`` (float32).  Episodes never
terminate; they are truncated after 200 steps.  Initial states: ``θ ~ U(-π, π)``,
``θ̇ ~ U(-1, 1)``.

This reproduces gymnasium's ``Pendulum-v1`` number for number, including its precision: the
state is float64 while the torque stays float32, so ``0.001 u²`` and ``3 u`` are float32 products.
"""
import numpy as np

from minippo.checks import finite_number
from minippo.envs.spaces import Box
from minippo.envs.vector_env import VectorEnv


def angle_normalize(theta):
    """``theta`` wrapped into ``[-π, π)``."""
    return ((theta + np.pi) % (2 * np.pi)) - np.pi


class PendulumEnv(VectorEnv):
    """``num_envs`` pendulums.  ``state`` is a float64 array of shape ``(2, num_envs)`` whose rows
    are ``θ, θ̇``."""

    max_speed = 8
    max_torque = 2.0
    dt = 0.05
    m = 1.0
    l = 1.0  # noqa: E741 (the physics letter)
    reset_high = np.array([np.pi, 1.0])  # θ, θ̇ bounds of the initial state

    def __init__(self, num_envs=1, seed=None, max_episode_steps=200, g=10.0):
        high = np.array([1.0, 1.0, self.max_speed])
        super().__init__(
            num_envs,
            Box(-high, high),
            Box(-self.max_torque, self.max_torque, shape=(1,)),
            seed,
            max_episode_steps,
        )
        self.g = finite_number(g, "g")  # the gravity
        if self.g < 0:
            raise ValueError(f"g must be finite and >= 0 (the gravity), got {g}")
        self.state = np.zeros((2, self.num_envs))

    def _advance(self, actions):
        theta, theta_dot = self.state  # views: the updates below write into self.state
        g, m, length, dt = self.g, self.m, self.l, self.dt
        u = actions[:, 0]  # float32, already clipped into [-max_torque, max_torque], as in gymnasium
        costs = angle_normalize(theta) ** 2 + 0.1 * theta_dot**2 + 0.001 * (u**2)

        new_theta_dot = theta_dot + (3 * g / (2 * length) * np.sin(theta) + 3.0 / (m * length**2) * u) * dt
        theta_dot[:] = np.minimum(np.maximum(new_theta_dot, -self.max_speed), self.max_speed)
        theta += theta_dot * dt
        return -costs, np.zeros(self.num_envs, dtype=bool), self._time_limit_reached()

    def _observe(self):
        theta, theta_dot = self.state
        # Built as (3, num_envs) and returned transposed: shape (num_envs, 3), column-major.
        return np.array([np.cos(theta), np.sin(theta), theta_dot], dtype=np.float32).T

    def _reset_envs(self, mask):
        self.state[:, mask] = self.rng.uniform(
            -self.reset_high[:, None], self.reset_high[:, None], size=(2, np.count_nonzero(mask))
        )
