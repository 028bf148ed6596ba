"""The vector-environment interface, with same-step autoreset and episode statistics.

A vector environment runs ``num_envs`` independent copies ("sub-environments") of one task in
lock-step.  Everything comes in batches whose first axis is the sub-environment::

    obs, infos = env.reset(seed=0)                  # obs (num_envs, *obs_shape)
    obs, rewards, terminations, truncations, infos = env.step(actions)
                                                    # actions (num_envs, *action_shape)
                                                    # rewards float64, the flags bool, (num_envs,)

``terminations[i]`` means sub-environment ``i`` reached a terminal state (its value is 0 from
now on); ``truncations[i]`` means it was cut off by a time limit (its value is *not* 0: bootstrap
from the final observation).  Both can be true on the same step, as in gymnasium.

**Same-step autoreset.**  A finished sub-environment is reset inside the ``step`` that finished
it, so every returned observation is one the agent can act on:

* ``obs[i]`` is the first observation of the new episode;
* ``infos["final_obs"][i]`` is the last observation of the finished one (``infos["final_obs"]``
  is a full ``(num_envs, *obs_shape)`` array, meaningful where ``infos["_final_obs"]`` is true);
* ``infos["episode"]["r"][i]`` and ``infos["episode"]["l"][i]`` are the finished episode's
  undiscounted return and length (0 where the mask ``infos["_episode"]`` is false).

On steps where no episode ends ``infos`` is an empty dict.  This matches gymnasium 1.x with
``autoreset_mode=AutoresetMode.SAME_STEP`` plus its ``RecordEpisodeStatistics`` wrapper, except
that ``final_obs`` is one stacked array instead of an object array.

Subclasses only describe the dynamics, through three hooks that act on all sub-environments at
once (no Python loop over environments):

* ``_advance(actions) -> (rewards, terminations, truncations)`` moves every sub-environment one
  step (``actions`` already validated by ``action_space.check_action``);
* ``_observe() -> obs`` returns a new observation array for the current states;
* ``_reset_envs(mask)`` starts new episodes where the boolean ``mask`` is true, drawing from
  ``self.rng``.

``self.episode_lengths`` already counts the step being taken when ``_advance`` runs, so the time
limit ``max_episode_steps`` is simply ``truncations = self._time_limit_reached()``.

**Saving.**  ``state_dict()`` is everything that decides what happens next (the sub-environments'
``state`` array, the random generator, the running episodes' statistics), JSON-friendly (lists, no
pickle); ``load_state_dict(state)`` continues from it exactly, so a resumed training run is
bit-identical.  (Environments whose state cannot be read, as gymnasium's, return None: see
``GymnasiumAdapter``.)
"""
import numpy as np

from minippo.checks import check_seed, integer_at_least
from minippo.envs.spaces import Box, Discrete
from minippo.nn.checkpoint import json_friendly, rng_from_state, rng_state

# The entries of a state_dict (of an environment or of a wrapper) that hold one value per sub-environment,
# the sub-environments along their last axis; the others are shared by all (running statistics, flags)
# or belong to the vector environment as a whole (its generator).
PER_ENV_ENTRIES = ("state", "episode_returns", "episode_lengths", "discounted_returns")

# 0 and 1 as 0-d int64 arrays rather than Python ints: the same arithmetic, but NumPy would convert a Python
# number into an array on every call, a good part of the cost of a step at small num_envs.
ZERO, ONE = np.array(0), np.array(1)
ZERO.flags.writeable = ONE.flags.writeable = False


def state_share(states, share, shares):
    """The state_dict of share ``share`` of ``shares`` equal shares of the sub-environments of several vector
    environments, given their ``states`` in order (the state_dicts of the ranks a run was saved by, say):
    every per-environment entry (``PER_ENV_ENTRIES``) of all of them concatenated and cut, the other
    entries the first state's (through wrappers' ``"env"`` entries; None, gymnasium's, stays None)."""
    first, result = states[0], {}
    if first is None:
        return None
    for key, value in first.items():
        if key == "env":
            result[key] = state_share([state["env"] for state in states], share, shares)
        elif key in PER_ENV_ENTRIES:
            joined = np.concatenate([np.asarray(state[key]) for state in states], axis=-1)
            size = joined.shape[-1] // shares
            result[key] = joined[..., share * size:(share + 1) * size]
        else:
            result[key] = value
    return result


class VectorEnv:
    """Base class: ``num_envs`` sub-environments stepped together, with same-step autoreset.

    Attributes: ``num_envs``, ``single_observation_space``, ``single_action_space``,
    ``observation_space`` and ``action_space`` (the batched spaces), ``max_episode_steps`` (the
    time limit, None for none), ``rng`` (the one ``numpy.random.Generator`` that drives every
    sub-environment's randomness) and ``episode_returns``/``episode_lengths`` of the running
    episodes.
    """

    def __init__(
        self, num_envs, single_observation_space, single_action_space, seed=None, max_episode_steps=None
    ):
        for name, space in [
            ("single_observation_space", single_observation_space),
            ("single_action_space", single_action_space),
        ]:
            if not isinstance(space, (Box, Discrete)):
                raise TypeError(f"{name} must be a minippo.envs.spaces Box or Discrete, got {space!r}")
        self.num_envs = integer_at_least(num_envs, "num_envs", 1)
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = single_observation_space.batch(self.num_envs)
        self.action_space = single_action_space.batch(self.num_envs)
        self.max_episode_steps = (
            None if max_episode_steps is None else integer_at_least(max_episode_steps, "max_episode_steps", 1)
        )
        self.rng = np.random.default_rng(check_seed(seed))
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = True

    def reset(self, *, seed=None, options=None):
        """Start a new episode in every sub-environment; return ``(obs, infos)``.

        ``seed`` (an int >= 0 or a Generator) replaces the random generator, making everything
        that follows reproducible; ``None`` keeps the current one.  Native environments take no
        ``options``.
        """
        if options:
            raise ValueError(f"{type(self).__name__}.reset takes no options, got {options!r}")
        if check_seed(seed) is not None:
            self.rng = np.random.default_rng(seed)
        self._reset_envs(np.ones(self.num_envs, dtype=bool))
        self._start_episodes()
        return self._observe(), {}

    def step(self, actions):
        """Advance every sub-environment by one step; see the module docstring for the returns."""
        if self._needs_reset:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        actions = self.action_space.check_action(actions)
        self.episode_lengths += ONE
        rewards, terminations, truncations = self._advance(actions)
        self.episode_returns += rewards
        dones = terminations | truncations
        if not np.count_nonzero(dones):  # (faster than dones.any() on small arrays)
            return self._observe(), rewards, terminations, truncations, {}
        infos = {
            "final_obs": self._observe(),
            "_final_obs": dones,
            "episode": {
                "r": np.where(dones, self.episode_returns, ZERO),  # float64, as the returns
                "l": np.where(dones, self.episode_lengths, ZERO),
            },
            "_episode": dones.copy(),
        }
        self.episode_returns[dones] = ZERO
        self.episode_lengths[dones] = ZERO
        self._reset_envs(dones)
        return self._observe(), rewards, terminations, truncations, infos

    @property
    def unwrapped(self):
        """This environment itself (wrappers return the environment they wrap)."""
        return self

    def state_dict(self):
        """What decides the next steps, JSON-friendly: the ``state`` array of the sub-environments, the
        random generator, the running episodes' returns and lengths, and whether a reset is due."""
        return json_friendly({"state": self.state, "rng": rng_state(self.rng), "episode_returns": self.episode_returns,
                              "episode_lengths": self.episode_lengths, "needs_reset": self._needs_reset})

    def load_state_dict(self, state):
        """Continue from :meth:`state_dict`'s output (ValueError if it does not fit this environment)."""
        if not isinstance(state, dict) or set(state) != set(self.state_dict()):
            raise ValueError(f"{type(self).__name__} state must be a dict with the keys {sorted(self.state_dict())}")
        arrays = {name: np.asarray(state[name], dtype=getattr(self, name).dtype)
                  for name in ("state", "episode_returns", "episode_lengths")}
        wrong = [name for name, array in arrays.items() if array.shape != getattr(self, name).shape]
        if wrong:
            raise ValueError(f"{type(self).__name__} state: {', '.join(wrong)} do not fit {self.num_envs} "
                             f"sub-environments")
        for name, array in arrays.items():
            getattr(self, name)[...] = array
        self.rng = rng_from_state(state["rng"])
        self._needs_reset = bool(state["needs_reset"])

    def close(self):
        """Release resources and require a new ``reset`` before stepping."""
        self._needs_reset = True

    def _time_limit_reached(self):
        """Truncation flags: the running episode has lasted ``max_episode_steps`` steps."""
        if self.max_episode_steps is None:
            return np.zeros(self.num_envs, dtype=bool)
        return self.episode_lengths >= self.max_episode_steps

    def _start_episodes(self):
        """Zero the episode statistics of all sub-environments after a full reset."""
        self.episode_returns[:] = 0.0
        self.episode_lengths[:] = 0
        self._needs_reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}(num_envs={self.num_envs})"

    def _advance(self, actions):
        """Step every sub-environment; return ``(rewards, terminations, truncations)``."""
        raise NotImplementedError

    def _observe(self):
        """A new array of the current observations, shape ``(num_envs, *obs_shape)``."""
        raise NotImplementedError

    def _reset_envs(self, mask):
        """Start new episodes in the sub-environments where the bool array ``mask`` is true."""
        raise NotImplementedError
