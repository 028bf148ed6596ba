"""Any gymnasium vector environment behind minippo's ``VectorEnv`` interface.

gymnasium is an optional dependency (``pip install "minippo[bench]"``): it is imported only when
an adapter is built.

What the adapter translates:

* **spaces** -- gymnasium's ``Box`` (floating dtype) and ``Discrete`` (``start == 0``) become
  ours; anything else is refused with a ``ValueError``;
* **autoreset** -- minippo resets a finished sub-environment inside the same ``step``.  gymnasium
  1.x vector envs declare their mode in ``metadata["autoreset_mode"]``:

  - ``SAME_STEP`` (what :func:`make_gymnasium` asks for): gymnasium has already reset the
    finished sub-environments; their last observations arrive as an object array in
    ``infos["final_obs"]``, which is stacked into a regular array;
  - ``NEXT_STEP`` (gymnasium's default) or ``DISABLED``: the finished sub-environments are reset
    right away with ``reset(options={"reset_mask": finished})``, which only gymnasium's
    ``SyncVectorEnv`` and ``AsyncVectorEnv`` (possibly wrapped) support;

* **episode statistics** -- computed by :class:`VectorEnv` from the rewards, as for native envs;
* **seeds** -- gymnasium takes integer seeds only.  A ``numpy.random.Generator`` seed ``rng`` is
  turned into the integer ``int(rng.integers(2**32))`` as soon as it is given (which advances
  ``rng``), so the same generator state gives the same episodes.

gymnasium's own per-step ``infos`` are not forwarded (``reset`` does forward its ``infos``).

* **saving** -- a gymnasium environment's state can only be captured by pickling it (and not for
  every environment), so :meth:`GymnasiumAdapter.state_dict` returns None: a training run resumed
  from a checkpoint starts new episodes (``minippo.rl.ppo.Trainer.load_state``), where a native
  environment continues its running ones.
"""
import numpy as np

from minippo.checks import check_seed, integer_at_least
from minippo.envs.spaces import Box, Discrete
from minippo.envs.vector_env import VectorEnv

INSTALL_HINT = 'install it with  pip install "minippo[bench]"  (or  pip install gymnasium)'


def import_gymnasium():
    """The ``gymnasium`` module, or an ``ImportError`` that says how to install it."""
    try:
        import gymnasium
    except ImportError as error:
        raise ImportError(f"this needs gymnasium, an optional dependency of minippo: {INSTALL_HINT}") from error
    return gymnasium


def integer_seed(seed):
    """``seed`` (None, an int >= 0 or a Generator) as gymnasium takes it: None or an int >= 0.

    A Generator gives ``int(seed.integers(2**32))``, drawn from it (see the module docstring).
    """
    if isinstance(check_seed(seed), np.random.Generator):
        return int(seed.integers(2**32))
    return None if seed is None else int(seed)  # gymnasium refuses NumPy integers


def space_from_gymnasium(space, name):
    """Our ``Box``/``Discrete`` equivalent of the gymnasium space ``space`` (called ``name``)."""
    gymnasium = import_gymnasium()
    if isinstance(space, gymnasium.spaces.Discrete):
        if space.start != 0:
            raise ValueError(f"{name}: only Discrete spaces starting at 0 are supported, got {space}")
        return Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        if space.dtype.kind != "f":
            raise ValueError(f"{name}: only Box spaces with a floating dtype are supported, got {space}")
        return Box(space.low, space.high, space.shape, space.dtype)
    raise ValueError(f"{name}: only gymnasium Box and Discrete spaces are supported, got {space}")


class GymnasiumAdapter(VectorEnv):
    """Wrap an already constructed ``gymnasium.vector.VectorEnv`` (see the module docstring).

    ``seed`` (None, an int >= 0 or a Generator) is used by the first ``reset()`` that is not given
    one; gymnasium then seeds sub-environment ``i`` with ``seed + i``.
    """

    def __init__(self, gym_env, seed=None):
        gymnasium = import_gymnasium()
        if not isinstance(gym_env, gymnasium.vector.VectorEnv):
            raise TypeError(f"gym_env must be a gymnasium.vector.VectorEnv, got {type(gym_env).__name__}")
        modes = gymnasium.vector.AutoresetMode
        self.autoreset_mode = gym_env.metadata.get("autoreset_mode", modes.NEXT_STEP)
        supports_reset_mask = isinstance(
            gym_env.unwrapped, (gymnasium.vector.SyncVectorEnv, gymnasium.vector.AsyncVectorEnv)
        )
        if self.autoreset_mode != modes.SAME_STEP and not supports_reset_mask:
            raise ValueError(
                f"cannot give {gym_env} same-step autoreset: it uses {self.autoreset_mode} and does "
                "not support reset(options={'reset_mask': ...}); build it with "
                "gymnasium.make_vec(..., vectorization_mode='sync', "
                "vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP})"
            )
        super().__init__(
            gym_env.num_envs,
            space_from_gymnasium(gym_env.single_observation_space, "single_observation_space"),
            space_from_gymnasium(gym_env.single_action_space, "single_action_space"),
        )
        self.gym_env = gym_env
        self._same_step = self.autoreset_mode == modes.SAME_STEP
        self._first_seed = integer_seed(seed)
        self._obs = None  # the observations to return, finished episodes' last ones included
        self._reset_obs = None  # SAME_STEP: gymnasium's observations, already reset

    def reset(self, *, seed=None, options=None):
        """Reset every sub-environment through gymnasium (``seed``, as an int, and ``options`` passed on)."""
        seed = integer_seed(seed)
        if seed is None:
            seed = self._first_seed
        self._first_seed = None
        obs, infos = self.gym_env.reset(seed=seed, options=options)
        self._obs = np.array(obs)
        self._start_episodes()
        return self._observe(), infos

    def state_dict(self):
        """None: gymnasium environments have no pickle-free state (see the module docstring)."""
        return None

    def load_state_dict(self, state):
        """Accepts only None (:meth:`state_dict`'s); the next ``reset`` starts new episodes."""
        if state is not None:
            raise ValueError("a gymnasium environment's state cannot be restored; its saved state must be None")

    def close(self):
        self.gym_env.close()
        super().close()

    def __repr__(self):
        return f"GymnasiumAdapter({self.gym_env})"

    def _advance(self, actions):
        obs, rewards, terminations, truncations, infos = self.gym_env.step(actions)
        self._obs = np.array(obs)
        if self._same_step and "_final_obs" in infos:
            self._reset_obs = self._obs.copy()
            finished = infos["_final_obs"]
            self._obs[finished] = np.stack(infos["final_obs"][finished])
        return (
            np.asarray(rewards, dtype=np.float64),
            np.asarray(terminations, dtype=bool),
            np.asarray(truncations, dtype=bool),
        )

    def _observe(self):
        return self._obs.copy()

    def _reset_envs(self, mask):
        if self._same_step:  # gymnasium has reset them already
            self._obs[mask] = self._reset_obs[mask]
        else:
            obs, _ = self.gym_env.reset(options={"reset_mask": mask.copy()})
            self._obs[mask] = np.asarray(obs)[mask]


def make_gymnasium(gym_id, num_envs=1, seed=None, **kwargs):
    """``gymnasium.make_vec(gym_id, ...)`` with same-step autoreset, wrapped in a :class:`GymnasiumAdapter`.

    ``kwargs`` go to the gymnasium environment's constructor (e.g. ``g=9.81`` for Pendulum-v1).
    """
    gymnasium = import_gymnasium()
    num_envs = integer_at_least(num_envs, "num_envs", 1)
    try:
        gym_env = gymnasium.make_vec(
            gym_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP},
            **kwargs,
        )
    except gymnasium.error.Error as error:
        raise ValueError(f"gymnasium cannot make {gym_id!r}: {error}") from error
    return GymnasiumAdapter(gym_env, seed=seed)
