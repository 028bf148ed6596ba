"""Running statistics and the two normalisation wrappers PPO commonly uses.

:class:`RunningMeanStd` keeps the exact mean and (population) variance of every sample it has
seen, merging one batch at a time with the parallel update of Chan, Golub & LeVeque (1979).  For
what has been seen so far (``n_a`` samples, mean ``μ_a``, variance ``σ²_a``) and a new batch
(``n_b``, ``μ_b``, ``σ²_b``), with ``n = n_a + n_b`` and ``δ = μ_b - μ_a``::

    μ  = μ_a + δ · n_b / n
    σ² = (n_a σ²_a + n_b σ²_b + δ² · n_a n_b / n) / n

Wrappers take a vector environment and expose the same interface (``reset``, ``step``, ``close``,
``num_envs`` and the spaces); ``unwrapped`` is the innermost environment.

* :class:`NormalizeObservation`: ``obs ← (obs - μ) / sqrt(σ² + ε)``, μ and σ² running over every
  observation returned so far (also applied to ``infos["final_obs"]``).
* :class:`NormalizeReward`: ``r ← r / sqrt(Var[G] + ε)`` where ``G ← γ G + r`` is each
  sub-environment's running discounted return (zeroed when its episode ends).  Rewards are scaled,
  not centred: shifting them would change what the agent is paid for surviving.
  ``infos["episode"]`` keeps the raw, unscaled returns.

Both take ``clip`` (``None`` or a positive bound) to clip their output into ``[-clip, clip]``, and
have ``update_stats``: set it to False to freeze the statistics, e.g. for evaluation.  The
statistics are saved and restored with ``rms.state_dict()`` / ``rms.load_state_dict(state)``; a
wrapper's ``state_dict()`` holds the wrapped environment's and its own running state (JSON-friendly).
"""
import numpy as np

from minippo.checks import finite_number, is_real
from minippo.distributed import LOCAL
from minippo.envs.spaces import Box, as_shape
from minippo.nn.checkpoint import json_friendly


def check_positive(value, name):
    """``value`` as a positive float, or a ``TypeError``/``ValueError`` naming ``name``."""
    if not finite_number(value, name) > 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


class RunningMeanStd:
    """Mean ``mean`` and variance ``var`` (ddof=0) of ``count`` samples of shape ``shape``.

    Before any sample, ``mean = 0`` and ``var = 1`` so that normalising is the identity.  ``shape``
    is a tuple of non-negative ints (an int ``k`` means ``(k,)``; ``()`` for scalars).  Each update
    merges the batches of every rank of ``world`` (``minippo.distributed``), in rank order.
    """

    def __init__(self, shape=(), world=LOCAL):
        self.shape = as_shape(shape)
        self.world = world
        self.mean = np.zeros(self.shape)
        self.var = np.ones(self.shape)
        self.count = 0

    def update(self, batch):
        """Merge ``batch``, an array of shape ``(n_b, *shape)``, into the statistics.

        With ``shape == ()`` a single number is a batch of one.
        """
        batch = np.asarray(batch, dtype=np.float64)
        if batch.shape == self.shape == ():
            batch = batch[None]
        if batch.shape[1:] != self.shape:
            raise ValueError(f"batch must have shape (n, *{self.shape}), got {batch.shape}")
        batch = self.world.gather_rows(batch)
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        batch_mean = batch.sum(axis=0) / batch_count
        if not np.isfinite(batch_mean).all():
            raise ValueError("batch must be finite (no NaN or inf)")
        batch_var = np.square(batch - batch_mean).sum(axis=0) / batch_count
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (batch_count / total)
        self.var = (
            self.var * self.count + batch_var * batch_count + np.square(delta) * (self.count * batch_count / total)
        ) / total
        self.count = total

    def state_dict(self):
        """The statistics as arrays: ``{"mean", "var", "count"}`` (copies)."""
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.array(self.count, dtype=np.int64)}

    def load_state_dict(self, state):
        """Restore statistics saved by :meth:`state_dict`."""
        if not isinstance(state, dict) or set(state) != {"mean", "var", "count"}:
            raise ValueError("state must be a dict with exactly the keys 'mean', 'var' and 'count'")
        mean, var = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["var"], dtype=np.float64)
        count = np.asarray(state["count"])
        if mean.shape != self.shape or var.shape != self.shape:
            raise ValueError(f"state mean and var must have shape {self.shape}, got {mean.shape} and {var.shape}")
        if count.shape != () or count.dtype.kind not in "iu" or count < 0:
            raise ValueError(f"state count must be a non-negative integer, got {state['count']!r}")
        if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
            raise ValueError("state mean must be finite and var finite and non-negative")
        self.mean, self.var, self.count = mean.copy(), var.copy(), int(count)

    def __repr__(self):
        return f"RunningMeanStd(shape={self.shape}, count={self.count})"


class VectorWrapper:
    """A vector environment that forwards everything to ``env``; subclasses override what they change."""

    def __init__(self, env):
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    @property
    def unwrapped(self):
        """The innermost (unwrapped) environment."""
        return self.env.unwrapped

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=seed, options=options)

    def step(self, actions):
        return self.env.step(actions)

    def state_dict(self):
        """``{"env": the wrapped environment's state, **this wrapper's own}`` (see :meth:`own_state`)."""
        return {"env": self.env.state_dict(), **json_friendly(self.own_state())}

    def load_state_dict(self, state):
        """Continue from :meth:`state_dict`'s output."""
        if not isinstance(state, dict) or set(state) != {"env", *self.own_state()}:
            raise ValueError(f"{type(self).__name__} state must be a dict with the keys "
                             f"{sorted({'env', *self.own_state()})}")
        self.env.load_state_dict(state["env"])
        self.load_own_state({name: value for name, value in state.items() if name != "env"})

    def own_state(self):
        """The wrapper's running state, a dict of arrays (none here)."""
        return {}

    def load_own_state(self, state):
        """Restore :meth:`own_state`'s output (its keys are checked)."""

    def close(self):
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.env!r})"


def find_wrapper(env, wrapper_type):
    """The first wrapper of type ``wrapper_type`` around ``env`` (looking inwards), or None."""
    while True:
        if isinstance(env, wrapper_type):
            return env
        if not hasattr(env, "env"):
            return None
        env = env.env


def clip_if(values, clip):
    """``values`` clipped into ``[-clip, clip]``, or unchanged when ``clip`` is None.

    (``np.minimum(np.maximum(...))`` is ``np.clip`` without its Python-level overhead.)
    """
    return values if clip is None else np.minimum(np.maximum(values, -clip), clip)


class NormalizeObservation(VectorWrapper):
    """Observations standardised by running statistics (see the module docstring)."""

    def __init__(self, env, epsilon=1e-8, clip=None, dtype=None, world=LOCAL):
        """``dtype``: of the normalised observations (a floating dtype); by default the wrapped
        environment's observation dtype.  ``world``: the ranks whose observations the statistics merge."""
        if not isinstance(env.single_observation_space, Box):
            raise TypeError(f"NormalizeObservation needs Box observations, got {env.single_observation_space}")
        super().__init__(env)
        self.epsilon = check_positive(epsilon, "epsilon")
        self.clip = None if clip is None else check_positive(clip, "clip")
        bound = np.inf if clip is None else self.clip
        dtype = env.single_observation_space.dtype if dtype is None else dtype
        self.single_observation_space = Box(-bound, bound, env.single_observation_space.shape, dtype=dtype)
        self.observation_space = self.single_observation_space.batch(self.num_envs)
        self.obs_rms = RunningMeanStd(env.single_observation_space.shape, world)
        self.update_stats = True

    def normalize(self, obs):
        """``obs`` standardised with the current statistics (which it does not change)."""
        standardised = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return clip_if(standardised, self.clip).astype(self.single_observation_space.dtype)

    def reset(self, *, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        self._learn(obs)
        return self.normalize(obs), infos

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self._learn(obs)
        if "final_obs" in infos:  # same statistics as obs, so that values bootstrap consistently
            infos = {**infos, "final_obs": self.normalize(infos["final_obs"])}
        return self.normalize(obs), rewards, terminations, truncations, infos

    def _learn(self, obs):
        if self.update_stats:
            self.obs_rms.update(obs)

    def own_state(self):
        return {"obs_rms": self.obs_rms.state_dict()}

    def load_own_state(self, state):
        self.obs_rms.load_state_dict(state["obs_rms"])


class NormalizeReward(VectorWrapper):
    """Rewards divided by the running standard deviation of the discounted return (see the module
    docstring)."""

    def __init__(self, env, gamma=0.99, epsilon=1e-8, clip=None, world=LOCAL):
        """``world``: the ranks whose returns the statistics merge (``minippo.distributed``)."""
        super().__init__(env)
        if not is_real(gamma):
            raise TypeError(f"gamma must be a number in [0, 1], got {type(gamma).__name__}")
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.epsilon = check_positive(epsilon, "epsilon")
        self.clip = None if clip is None else check_positive(clip, "clip")
        self.return_rms = RunningMeanStd(world=world)
        self.discounted_returns = np.zeros(self.num_envs)
        self.update_stats = True

    def reset(self, *, seed=None, options=None):
        self.discounted_returns[:] = 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self.discounted_returns = self.gamma * self.discounted_returns + rewards
        if self.update_stats:
            self.return_rms.update(self.discounted_returns)
        self.discounted_returns[terminations | truncations] = 0.0
        scaled = clip_if(rewards / np.sqrt(self.return_rms.var + self.epsilon), self.clip)
        return obs, scaled, terminations, truncations, infos

    def own_state(self):
        return {"return_rms": self.return_rms.state_dict(), "discounted_returns": self.discounted_returns}

    def load_own_state(self, state):
        discounted_returns = np.asarray(state["discounted_returns"], dtype=np.float64)
        if discounted_returns.shape != self.discounted_returns.shape:
            raise ValueError(f"NormalizeReward state: discounted_returns must have shape "
                             f"{self.discounted_returns.shape}, got {discounted_returns.shape}")
        self.return_rms.load_state_dict(state["return_rms"])
        self.discounted_returns = discounted_returns
