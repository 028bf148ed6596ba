"""CartPole-v1, vectorized: balance a pole hinged on a cart by pushing the cart left or right.

State ``(x, ẋ, θ, θ̇)``: cart position and velocity, pole angle from upright and its angular
velocity.  Action ``a ∈ {0, 1}`` pushes with force ``F = -10 N`` or ``+10 N``.  With cart mass
``m_c = 1``, pole mass ``m_p = 0.1``, ``M = m_c + m_p`` and half-pole length ``l = 0.5``
(Florian 2007, "Correct equations for the dynamics of the cart-pole system", frictionless)::

    temp = (F + m_p l θ̇² sin θ) / M
    θ̈    = (g sin θ - cos θ · temp) / (l (4/3 - m_p cos² θ / M))
    ẍ    = temp - m_p l θ̈ cos θ / M

integrated with explicit Euler, ``τ = 0.02 s``: ``x ← x + τ ẋ``, ``ẋ ← ẋ + τ ẍ``,
``θ ← θ + τ θ̇``, ``θ̇ ← θ̇ + τ θ̈`` (every right-hand side uses the old values).

Reward 1 on every step, including the one that terminates.  The episode terminates when
``|x| > 2.4`` or ``|θ| > 12°`` and is truncated after 500 steps.  Initial states are uniform in
``[-0.05, 0.05]⁴``.

This reproduces gymnasium's ``CartPole-v1`` number for number: the state is kept in float64 and
only the observation is rounded to float32, with the same operations in the same order.
(Random initial states differ, since all sub-environments draw from one generator.)
"""
import math

import numpy as np

from minippo.envs.spaces import Box, Discrete
from minippo.envs.vector_env import VectorEnv


class CartPoleEnv(VectorEnv):
    """``num_envs`` cart-poles.  ``state`` is a float64 array of shape ``(4, num_envs)`` whose rows
    are ``x, ẋ, θ, θ̇`` (the layout of gymnasium's ``CartPoleVectorEnv``)."""

    # The constants are 0-d float64 arrays rather than Python floats: the arithmetic is the same,
    # but NumPy would convert a Python float into an array on every operation, and at small
    # num_envs those conversions are a good part of the cost of a step.
    gravity = np.array(9.8)
    masscart = np.array(1.0)
    masspole = np.array(0.1)
    total_mass = np.array(masspole + masscart)
    length = np.array(0.5)  # half the pole's length
    polemass_length = np.array(masspole * length)
    four_thirds = np.array(4.0 / 3.0)
    force_mag = 10.0
    tau = np.array(0.02)  # seconds per step
    theta_threshold_radians = np.array(12 * 2 * math.pi / 360)
    x_threshold = np.array(2.4)
    reset_bound = 0.05

    def __init__(self, num_envs=1, seed=None, max_episode_steps=500):
        # Twice the termination thresholds, so that the terminating observation is in the space.
        high = np.array([2 * self.x_threshold, np.inf, 2 * self.theta_threshold_radians, np.inf])
        super().__init__(num_envs, Box(-high, high), Discrete(2), seed, max_episode_steps)
        self.state = np.zeros((4, self.num_envs))
        self._force_of_action = np.array([-self.force_mag, self.force_mag])
        # Made once, as a step is mostly the fixed cost of its NumPy calls (num_envs is small):
        self._derivative = np.zeros((4, self.num_envs))  # d/dt of the state: rows ẋ, ẍ, θ̇, θ̈
        self._limits = np.repeat(np.array([[self.x_threshold], [np.inf], [self.theta_threshold_radians], [np.inf]]),
                                 self.num_envs, axis=1)  # (4, num_envs), not broadcast: a full array compares faster
        self._rewards = np.ones(self.num_envs)  # 1 on every step; copied, as a caller may keep what step returns

    def accelerations(self, theta, theta_dot, force):
        """``(ẍ, θ̈)`` of the module docstring's equations (Florian 2007), elementwise::

            temp = (F + m_p l θ̇² sin θ) / M
            θ̈    = (g sin θ - cos θ · temp) / (l (4/3 - m_p cos² θ / M))
            ẍ    = temp - m_p l θ̈ cos θ / M
        """
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (self.four_thirds - self.masspole * np.square(costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        return xacc, thetaacc

    def _advance(self, actions):
        """Explicit Euler on all four rows at once, ``state ← state + τ · d/dt state`` (the numbers of
        :meth:`_advance_reference`'s four updates, in fewer NumPy calls); terminated where ``|x| > 2.4`` or
        ``|θ| > 12°``."""
        derivative = self._derivative
        derivative[1], derivative[3] = self.accelerations(self.state[2], self.state[3], self._force_of_action[actions])
        derivative[0::2] = self.state[1::2]  # ẋ, θ̇ before the update
        self.state += np.multiply(self.tau, derivative, out=derivative)
        beyond = np.abs(self.state) > self._limits  # (4, num_envs); never true for ẋ and θ̇ (limit inf)
        return self._rewards.copy(), beyond[0] | beyond[2], self._time_limit_reached()

    def _advance_reference(self, actions):
        """:meth:`_advance` as four separate Euler updates (a test checks they agree bit for bit)."""
        x, x_dot, theta, theta_dot = self.state  # views: the updates below write into self.state
        xacc, thetaacc = self.accelerations(theta, theta_dot, self._force_of_action[actions])
        x += self.tau * x_dot
        x_dot += self.tau * xacc
        theta += self.tau * theta_dot
        theta_dot += self.tau * thetaacc
        terminations = (np.abs(x) > self.x_threshold) | (np.abs(theta) > self.theta_threshold_radians)
        return np.ones(self.num_envs), terminations, self._time_limit_reached()

    def _observe(self):
        # A float32 copy of state.T, shape (num_envs, 4).  It keeps state's memory layout
        # (column-major), as gymnasium's CartPoleVectorEnv does: a C-ordered copy costs 8x more.
        return self.state.T.astype(np.float32)

    def _reset_envs(self, mask):
        self.state[:, mask] = self.rng.uniform(
            -self.reset_bound, self.reset_bound, size=(4, np.count_nonzero(mask))
        )
