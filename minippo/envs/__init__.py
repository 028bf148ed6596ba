"""Vector environments: ``num_envs`` copies of a task stepped together, in batches.

::

    import numpy as np
    from minippo import envs

    env = envs.make("CartPole-v1", num_envs=8, seed=0)
    obs, infos = env.reset()
    actions = env.action_space.sample(np.random.default_rng(0))
    obs, rewards, terminations, truncations, infos = env.step(actions)

Modules, one concept each:

- ``spaces``            ``Box`` and ``Discrete``: which arrays are valid observations/actions.
- ``vector_env``        the ``VectorEnv`` interface, same-step autoreset, episode statistics.
- ``cartpole``          ``CartPoleEnv`` (CartPole-v1), vectorized NumPy.
- ``pendulum``          ``PendulumEnv`` (Pendulum-v1), vectorized NumPy.
- ``tabular``           ``TabularMDPEnv``: episodes sampled from a finite MDP's tables.
- ``gymnasium_adapter`` ``GymnasiumAdapter``: any gymnasium vector env behind the same interface.
- ``wrappers``          ``RunningMeanStd``, ``NormalizeObservation``, ``NormalizeReward``.
- ``registry``          ``make(id, num_envs, seed)``.

gymnasium is optional and only imported when a gymnasium environment is requested.
The user guide is docs/envs.md.
"""
from minippo.envs.cartpole import CartPoleEnv
from minippo.envs.gymnasium_adapter import GymnasiumAdapter, make_gymnasium
from minippo.envs.pendulum import PendulumEnv
from minippo.envs.registry import NATIVE_ENVS, make
from minippo.envs.spaces import Box, Discrete
from minippo.envs.tabular import TabularMDPEnv
from minippo.envs.vector_env import VectorEnv
from minippo.envs.wrappers import NormalizeObservation, NormalizeReward, RunningMeanStd, VectorWrapper

__all__ = [
    "Box",
    "CartPoleEnv",
    "Discrete",
    "GymnasiumAdapter",
    "NATIVE_ENVS",
    "NormalizeObservation",
    "NormalizeReward",
    "PendulumEnv",
    "RunningMeanStd",
    "TabularMDPEnv",
    "VectorEnv",
    "VectorWrapper",
    "make",
    "make_gymnasium",
]
