"""The actor-critic of control-task PPO: a policy network π(a|s) and a value network V(s).

Two separate MLPs read the observation (CleanRL's ``Agent``; nothing is shared between them)::

    actor:   s → tanh(64) → tanh(64) → head     output gain 0.01: the initial policy is near uniform
    critic:  s → tanh(64) → tanh(64) → V(s)     output gain 1.0

(hidden gains √2, orthogonal init, biases 0: see ``minippo.nn.mlp``).  The head depends on the
action space:

* ``Discrete(n)`` -- the actor outputs n logits z, π = softmax(z) (``minippo.nn.categorical``);
* ``Box((D,))``   -- the actor outputs the mean μ of a diagonal Gaussian whose log-std is one more
  parameter, ``log_std`` (D,), independent of the state (``minippo.rl.gaussian``).

Rollouts call :meth:`ActorCritic.sample_actions` (a ~ π(·|s) with log π(a|s)) on every step and
:meth:`ActorCritic.value` (V(s)) on all the steps at once; :meth:`ActorCritic.act` does both.  The update
calls :meth:`ActorCritic.evaluate` on stored (s, a) pairs and then :meth:`ActorCritic.backward` with
dL/dlog π, dL/dH and dL/dV, which adds the gradients of every parameter into ``grads``.

Parameters are named ``actor.layers.{i}.weight|bias``, ``critic.layers.{i}.weight|bias`` and, for a
Gaussian head, ``log_std``.
"""
from typing import NamedTuple

import numpy as np

from minippo.envs.spaces import Box, Discrete
from minippo.nn.categorical import (
    entropy_backward,
    entropy_forward,
    log_softmax,
    token_logprobs_backward,
)
from minippo.nn.mlp import MLP
from minippo.nn.module import Module, as_generator, check_array, check_dtype, prefixed
from minippo.rl.gaussian import (
    gaussian_entropy,
    gaussian_entropy_backward,
    gaussian_logprobs_backward,
    gaussian_logprobs_forward,
    gaussian_sample,
)

POLICY_HEAD_GAIN = 0.01
VALUE_HEAD_GAIN = 1.0


class Evaluation(NamedTuple):
    logprobs: np.ndarray  # log π(a|s), (N,)
    entropy: np.ndarray   # H(π(·|s)), (N,)
    values: np.ndarray    # V(s), (N,)


def sample_categorical(log_probs_all, rng):
    """One index per row of ``log_probs_all`` (N, n), drawn by inverting the CDF with u ~ U[0, 1)."""
    cdf = np.cumsum(np.exp(log_probs_all), axis=-1)
    u = rng.random(cdf.shape[0], dtype=cdf.dtype)
    actions = (cdf < u[:, None]).sum(axis=-1)  # the first a with u <= CDF(a)
    return np.minimum(actions, cdf.shape[-1] - 1)  # rounding can leave CDF(n−1) a hair below u


def flat_views(flat, arrays):
    """Consecutive views into the 1-D array ``flat`` shaped as the arrays of the dict ``arrays``, in its
    order and with its keys (their values are not copied)."""
    views, offset = {}, 0
    for name, array in arrays.items():
        views[name] = flat[offset:offset + array.size].reshape(array.shape)  # (size,) -> array.shape
        offset += array.size
    return views


class ActorCritic(Module):
    """``ActorCritic(observation_space, action_space, hidden_sizes=(64, 64), dtype, seed)``.

    ``observation_space`` must be a 1-D ``Box``; ``action_space`` a ``Discrete`` or a 1-D ``Box``
    (the single-environment spaces, e.g. ``env.single_action_space``).
    """

    def __init__(self, observation_space, action_space, hidden_sizes=(64, 64), dtype=np.float32, seed=None):
        if not isinstance(observation_space, Box) or len(observation_space.shape) != 1:
            raise TypeError(f"observation_space must be a 1-D Box, got {observation_space!r}")
        if isinstance(action_space, Discrete) and action_space.shape == ():
            self.continuous, n_outputs = False, action_space.n
        elif isinstance(action_space, Box) and len(action_space.shape) == 1:
            self.continuous, n_outputs = True, action_space.shape[0]
        else:
            raise TypeError(f"action_space must be a scalar Discrete or a 1-D Box, got {action_space!r}")
        hidden_sizes = tuple(hidden_sizes)
        self.dtype, rng = check_dtype(dtype), as_generator(seed)
        self.observation_space, self.action_space = observation_space, action_space
        sizes = [observation_space.shape[0], *hidden_sizes]
        self.actor = MLP([*sizes, n_outputs], output_gain=POLICY_HEAD_GAIN, dtype=self.dtype, seed=rng)
        self.critic = MLP([*sizes, 1], output_gain=VALUE_HEAD_GAIN, dtype=self.dtype, seed=rng)
        params = prefixed({"actor": self.actor, "critic": self.critic})
        if self.continuous:
            params["log_std"] = np.zeros(n_outputs, dtype=self.dtype)
        # Every parameter is a view into one flat array, and every gradient into another: the optimiser,
        # zero_grad and the ranks' Allreduce then make one NumPy call where they made one per parameter
        # (12 of them), which counts at these sizes (module docstring of minippo.rl.ppo, "Speed").
        self.flat_params = np.concatenate([value.ravel() for value in params.values()])
        self.flat_grads = np.zeros_like(self.flat_params)
        super().__init__(flat_views(self.flat_params, params))
        self.grads = flat_views(self.flat_grads, params)
        # The two networks read these parameters and add their gradients straight into these buffers.
        for prefix, network in (("actor", self.actor), ("critic", self.critic)):
            network.params = {name: self.params[f"{prefix}.{name}"] for name in network.params}
            network.grads = {name: self.grads[f"{prefix}.{name}"] for name in network.params}
        self._cache = None
        self._row_indices = np.arange(0)

    def zero_grad(self):
        """Reset every gradient to 0 (one fill of the flat gradient array)."""
        self.flat_grads.fill(0.0)

    def _as_obs(self, obs):
        obs = np.asarray(obs)
        if obs.dtype != self.dtype:
            raise TypeError(f"obs must have dtype {self.dtype} (the network's), got {obs.dtype}")
        return obs

    def value(self, obs):
        """V(s) for observations (N, obs_dim) -> (N,)."""
        return self.critic.forward(self._as_obs(obs))[:, 0]

    def act_reference(self, obs, rng, deterministic=False):
        """:meth:`act` as written first, the twin it is tested against: the same actions, log-probabilities
        and values, bit for bit, for the same generator state (Gaussian policies have no other way)."""
        if self.continuous:
            return self.act(obs, rng, deterministic)
        obs = self._as_obs(obs)
        log_probs_all = log_softmax(self.actor.forward(obs))
        actions = log_probs_all.argmax(axis=-1) if deterministic else sample_categorical(log_probs_all, rng)
        logprobs = np.take_along_axis(log_probs_all, actions[:, None], axis=-1)[:, 0]
        return actions, logprobs, self.value(obs)

    def act(self, obs, rng, deterministic=False):
        """Sample actions a ~ π(·|s) with the Generator ``rng``; return ``(actions, logprobs, values)``.

        ``deterministic=True`` takes the most likely action instead (argmax of the logits, or the
        Gaussian mean).  Categorical actions are int64 (N,), Gaussian ones (N, D) in the network's dtype.
        It is :meth:`sample_actions` followed by :meth:`value`.
        """
        actions, logprobs = self.sample_actions(obs, rng, deterministic)
        return actions, logprobs, self.value(obs)

    def sample_actions(self, obs, rng, deterministic=False):
        """:meth:`act` without the critic: ``(actions, logprobs)``.  A rollout calls it on every step and
        asks the critic for V(s) of all its steps at once afterwards, since V does not choose the actions.

        Where a NumPy call costs more than the arithmetic of these small networks, it makes fewer calls
        than :meth:`act_reference`: log π(a|s) is picked by indexing rows and columns
        (``take_along_axis`` builds its index arrays in ~10 calls), the observations are checked once.
        """
        head = self.actor.forward(self._as_obs(obs))
        if self.continuous:
            actions = head.copy() if deterministic else gaussian_sample(head, self.params["log_std"], rng)
            logprobs, _ = gaussian_logprobs_forward(head, self.params["log_std"], actions)
        else:
            log_probs_all = log_softmax(head)
            actions = log_probs_all.argmax(axis=-1) if deterministic else sample_categorical(log_probs_all, rng)
            logprobs = log_probs_all[self._rows(len(actions)), actions]  # log π(a_n|s_n) for each row n
        return actions, logprobs

    def _rows(self, count):
        """``arange(count)``, kept from call to call (a rollout asks for the same count every step)."""
        if len(self._row_indices) != count:
            self._row_indices = np.arange(count)
        return self._row_indices

    def evaluate(self, obs, actions):
        """log π(a|s), H(π(·|s)) and V(s) for stored pairs; keeps what :meth:`backward` needs.

        Continuous actions are cast to the network's dtype (the actions it sampled already are).
        """
        obs = self._as_obs(obs)
        head = self.actor.forward(obs)
        if self.continuous:
            actions = np.asarray(actions)
            if actions.shape != head.shape:
                raise ValueError(f"actions must have shape {head.shape}, got {actions.shape}")
            log_std = self.params["log_std"]
            logprobs, z = gaussian_logprobs_forward(head, log_std, actions.astype(self.dtype, copy=False))
            entropy = gaussian_entropy(log_std, len(obs))
            self._cache = (len(obs), z)
        else:
            actions = self.action_space.batch(len(obs)).check_action(actions)
            log_probs_all = log_softmax(head)  # token_logprobs_forward's result, without its second check
            logprobs = log_probs_all[self._rows(len(obs)), actions]
            entropy = entropy_forward(log_probs_all)
            self._cache = (len(obs), actions, log_probs_all, entropy)
        values = self.critic.forward(obs)[:, 0]
        return Evaluation(logprobs, entropy, values)

    def backward(self, dlogprobs, dentropy, dvalues):
        """Add the gradients of a loss L into ``grads``, given dL/dlog π, dL/dH and dL/dV (each (N,), in
        the network's dtype)."""
        if self._cache is None:
            raise RuntimeError("backward called before evaluate")
        count, *cache = self._cache
        dlogprobs, dentropy, dvalues = (check_array(gradient, (count,), self.dtype, name) for gradient, name in
                                        ((dlogprobs, "dlogprobs"), (dentropy, "dentropy"), (dvalues, "dvalues")))
        if self.continuous:
            log_std = self.params["log_std"]
            dhead, dlog_std = gaussian_logprobs_backward(dlogprobs, *cache, log_std)
            self.grads["log_std"] += dlog_std
            self.grads["log_std"] += gaussian_entropy_backward(dentropy, log_std)
        else:
            actions, log_probs_all, entropy = cache
            dhead = token_logprobs_backward(dlogprobs, actions, log_probs_all)
            dhead += entropy_backward(dentropy, log_probs_all, entropy)
        self.actor.backward(dhead)
        self.critic.backward(dvalues[:, None])
        self._cache = None
