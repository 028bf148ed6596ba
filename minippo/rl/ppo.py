"""PPO and REINFORCE on vector environments, with every detail of CleanRL's ppo.py in plain sight.

One *update* (CleanRL: "iteration") is:

1. **Rollout.**  Step ``num_envs`` environments ``num_steps`` times with the current policy,
   storing s_t, a_t, log π_old(a_t|s_t), V_old(s_t), r_t and the end-of-episode flags.  Where an
   episode is *truncated* (time limit) the value of its last observation V(final_obs) is stored too.
2. **Targets** (GAE, ``minippo.rl.advantages``), time-major (T, N):

       δ_t = r_t + γ · b_t · V(s_{t+1}) − V(s_t)       b_t = 0 if the episode terminated at t
       A_t = δ_t + γ λ · c_t · A_{t+1}                   c_t = 0 if it ended at t for any reason
       R_t = A_t + V(s_t)

   where V(s_{t+1}) is V(final_obs) on truncation (the time limit is not part of the task, so the
   return continues beyond it) and V of the observation after the rollout for t = T − 1.
3. **Optimisation.**  ``update_epochs`` passes over the T·N samples, each pass shuffled and cut into
   ``num_minibatches`` minibatches.  On each minibatch, with ρ = π(a|s) / π_old(a|s) and advantages
   normalised within the minibatch, Â = (A − mean A) / (std A + 1e-8):

       L = −mean(min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â))                               policy
           + c_v · ½ mean(max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²))     value
           − c_e · mean(H(π(·|s)))                                                 entropy bonus

   then the global gradient norm is clipped to ``max_grad_norm`` and Adam (ε = 1e-5) takes a step
   whose learning rate falls linearly from ``learning_rate`` to 0 over the run.  With ``target_kl``
   set, the epochs stop early once the minibatch estimate of KL(π_old ‖ π) exceeds it.

REINFORCE (``algo="reinforce"``) shares steps 1-2 with λ = 1, which makes A_t + V(s_t) the
discounted return-to-go G_t = Σ_k γᵏ r_{t+k} (bootstrapped with V where the rollout cuts an episode
short), and then takes **one** gradient step per rollout on the policy-gradient identity
∇E[R] = E[R(τ) ∇log P(τ)] = E[Σ_t G_t ∇log π(a_t|s_t)], exact for γ = 1 (for γ < 1 the exact gradient
of the discounted return has another factor γᵗ in each term, which, as usual, is dropped):

    L = −mean(Â_t log π(a_t|s_t)) [+ c_v ½ mean((V − G)²)] − c_e mean(H)

with A_t = G_t − V(s_t) when ``reinforce_baseline`` is on (the critic is then trained alongside),
or A_t = G_t with V ≡ 0 when it is off (episodes still running at the end of a rollout lose their
remaining rewards).  With ``norm_adv`` (the default) Â = (A − mean A) / (std A + 1e-8) over the
rollout; subtracting the batch mean acts as a baseline, so the estimate is pure Monte Carlo,
Â_t = G_t, only with both ``reinforce_baseline`` and ``norm_adv`` off.

**Precision.**  The networks and every rollout buffer are in ``config.dtype`` (float32 by default,
or float64).  Observations are converted to it explicitly where they leave the environment
(:func:`network_obs`): the native environments return float32, some gymnasium ones float64.

**Speed.**  The networks are tiny (64 units), so time goes into per-call overhead, not arithmetic:
more environments per step (``num_envs``) is the cheapest speed-up.  Multithreaded BLAS only adds
overhead at these sizes, so training runs with ``config.blas_threads`` (default 1) BLAS threads.

**Reproducibility.**  The environment seed and three generators spawned from ``seed`` (network
initialisation, action sampling, minibatch shuffling) fix everything: the same seed gives the same
learning curve bit for bit.
"""
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np

from minippo import envs
from minippo.blas import blas_threads
from minippo.checks import check_integer_fields, finite_number, integer_at_least, is_integer
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.module import check_dtype
from minippo.nn.optim import AdamW, clip_grad_norm, linear_schedule
from minippo.rl.actor_critic import ActorCritic
from minippo.rl.advantages import generalized_advantages, whiten
from minippo.rl.losses import explained_variance, ppo_policy_loss, reinforce_loss, value_loss

ALGORITHMS = ("ppo", "reinforce")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-5
RECENT_EPISODES = 20  # "mean recent return" averages this many episodes


@dataclass
class PPOConfig:
    """Hyper-parameters; the defaults are CleanRL's ppo.py defaults for CartPole-v1."""

    env_id: str = "CartPole-v1"
    algo: str = "ppo"                # "ppo" or "reinforce"
    total_steps: int = 500_000       # environment steps, summed over the sub-environments
    seed: int = 1
    num_envs: int = 4
    num_steps: int = 128             # rollout length per sub-environment
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True           # linear decay of the learning rate to 0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True            # normalise advantages per minibatch
    clip_coef: float = 0.2           # ε of the surrogate (and of the value clipping)
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    hidden_sizes: tuple = (64, 64)
    normalize_obs: bool = False      # NormalizeObservation, then clip to ±obs_clip
    obs_clip: float = 10.0
    normalize_reward: bool = False   # NormalizeReward(γ), then clip to ±reward_clip
    reward_clip: float = 10.0
    reinforce_baseline: bool = True  # REINFORCE only: subtract V(s) and train the critic
    blas_threads: int = 1            # 64-wide layers run faster on one BLAS thread (minippo.blas)
    dtype: str = "float32"           # of the networks and the rollout buffers: float32 or float64

    def __post_init__(self):
        self.hidden_sizes = tuple(self.hidden_sizes)
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")
        if not isinstance(self.env_id, str):
            raise TypeError(f"env_id must be a string, got {type(self.env_id).__name__}")
        check_integer_fields(self, {"total_steps": 1, "num_envs": 1, "num_steps": 1, "num_minibatches": 1,
                                    "update_epochs": 1, "blas_threads": 1, "seed": 0})
        self.dtype = check_dtype(self.dtype).name  # any spelling GPTConfig takes; stored by name (JSON)
        if self.total_steps < self.batch_size:
            raise ValueError(f"total_steps={self.total_steps} is less than one rollout "
                             f"(num_envs * num_steps = {self.batch_size})")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches} must divide "
                             f"num_envs * num_steps = {self.batch_size}")
        for name in ("learning_rate", "gamma", "gae_lambda", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm",
                     "target_kl", "obs_clip", "reward_clip"):
            value = getattr(self, name)
            if value is not None or name not in ("max_grad_norm", "target_kl"):  # these two may be None
                # stored as a Python float: a NumPy float64 would make float32 arithmetic float64 (NEP 50)
                setattr(self, name, finite_number(value, name))
        for name in ("learning_rate", "clip_coef", "obs_clip", "reward_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("ent_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_grad_norm", "target_kl"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive or None, got {getattr(self, name)}")
        if any(not is_integer(n) or n < 1 for n in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive ints, got {self.hidden_sizes}")
        whitened = self.batch_size if self.algo == "reinforce" else self.minibatch_size
        if self.norm_adv and whitened == 1:  # (A − mean A)/(std A + ε) of one advantage is 0
            what = "batches (num_envs * num_steps)" if self.algo == "reinforce" else "minibatches"
            raise ValueError(f"norm_adv whitens the advantages of each of the {what}, which here hold one "
                             f"sample: every advantage would be 0 and nothing learned; use more samples per "
                             f"update or norm_adv=False")

    @property
    def batch_size(self):
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self):
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self):
        return self.total_steps // self.batch_size


PRESETS = {
    # CleanRL ppo.py defaults.
    "cartpole": PPOConfig(),
    # Tuned for wall time: 4x the environments per step (cheap: one batched call), so 4x larger
    # minibatches, and an 8x larger learning rate.
    "cartpole-fast": PPOConfig(total_steps=300_000, num_envs=16, learning_rate=2e-3),
    # REINFORCE with a learned baseline: one gradient step per 2,048-step rollout.
    "cartpole-reinforce": PPOConfig(algo="reinforce", total_steps=300_000, num_envs=16, learning_rate=1e-2,
                                    gae_lambda=1.0, ent_coef=0.0),
    # CleanRL ppo_continuous_action.py defaults.
    "pendulum": PPOConfig(env_id="Pendulum-v1", total_steps=1_000_000, num_envs=1, num_steps=2048,
                          learning_rate=3e-4, num_minibatches=32, update_epochs=10, ent_coef=0.0,
                          normalize_obs=True, normalize_reward=True),
}
DEFAULT_PRESET = {"CartPole-v1": "cartpole-fast", "Pendulum-v1": "pendulum"}


def preset_for(env_id, name=None):
    """The named preset (or the environment's default one) with ``env_id`` filled in.

    Ids of the form ``gymnasium:CartPole-v1`` share the native environment's presets.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a string, got {type(env_id).__name__}")
    if name is None:
        name = DEFAULT_PRESET.get(env_id.removeprefix(envs.registry.GYMNASIUM_PREFIX))
        if name is None:
            return PPOConfig(env_id=env_id)
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return replace(PRESETS[name], env_id=env_id)


def make_env(config, num_envs=None, seed=None, training=True):
    """The vector environment ``config`` describes, with its normalisation wrappers.

    Reward scaling is only applied when ``training``; observation normalisation always (its
    statistics are part of the policy).
    """
    env = envs.make(config.env_id, num_envs=config.num_envs if num_envs is None else num_envs,
                    seed=config.seed if seed is None else seed)
    if config.normalize_obs:
        env = envs.NormalizeObservation(env, clip=config.obs_clip, dtype=config.dtype)  # statistics in float64
    if config.normalize_reward and training:
        env = envs.NormalizeReward(env, gamma=config.gamma, clip=config.reward_clip)
    return env


def find_wrapper(env, wrapper_type):
    """The first wrapper of type ``wrapper_type`` around ``env`` (looking inwards), or None."""
    while True:
        if isinstance(env, wrapper_type):
            return env
        if not hasattr(env, "env"):
            return None
        env = env.env


def network_obs(agent, obs):
    """Observations from an environment converted to the network's dtype (an explicit cast: the
    networks refuse any other dtype)."""
    return np.asarray(obs, dtype=agent.dtype)


class Rollout:
    """Time-major buffers (T = num_steps, N = num_envs) of one rollout, allocated once."""

    def __init__(self, num_steps, num_envs, obs_shape, action_shape, action_dtype, dtype):
        T, N = num_steps, num_envs
        self.obs = np.zeros((T, N, *obs_shape), dtype=dtype)
        self.actions = np.zeros((T, N, *action_shape), dtype=action_dtype)
        self.logprobs = np.zeros((T, N), dtype=dtype)
        self.values = np.zeros((T, N), dtype=dtype)
        self.rewards = np.zeros((T, N), dtype=dtype)
        self.terminations = np.zeros((T, N), dtype=bool)
        self.truncations = np.zeros((T, N), dtype=bool)
        self.final_values = np.zeros((T, N), dtype=dtype)  # V(final_obs), where truncated
        self.last_values = np.zeros(N, dtype=dtype)        # V(s_T), the state after the rollout


class Batch(NamedTuple):
    """Flat (T·N) samples for the loss functions."""

    obs: np.ndarray
    actions: np.ndarray
    logprobs: np.ndarray    # log π_old(a|s)
    values: np.ndarray      # V_old(s)
    advantages: np.ndarray
    returns: np.ndarray


def gae_targets(rollout, gamma, lam, use_critic=True):
    """(advantages, returns) (T, N) of a rollout: GAE with bootstrapping as in the module docstring.

    ``use_critic=False`` takes V ≡ 0 (with λ = 1: the plain discounted returns-to-go).
    """
    values, final_values, last_values = rollout.values, rollout.final_values, rollout.last_values
    if not use_critic:
        values, final_values, last_values = (np.zeros_like(a) for a in (values, final_values, last_values))
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]  # where the episode ended, values[t+1] belongs to the next episode:
    next_values[-1] = last_values  # replaced by V(final_obs) on truncation, ignored on termination
    next_values = np.where(rollout.truncations, final_values, next_values)
    bootstrap = np.logical_not(rollout.terminations).astype(values.dtype)
    continues = np.logical_not(rollout.terminations | rollout.truncations).astype(values.dtype)
    return generalized_advantages(rollout.rewards, values, next_values, bootstrap, continues, gamma, lam)


def ppo_loss_and_gradients(agent, batch, config):
    """PPO's loss on a minibatch (module docstring, step 3); adds its gradient into ``agent.grads``.

    Returns the loss terms and diagnostics as floats.
    """
    advantages = whiten(batch.advantages) if config.norm_adv else batch.advantages
    logprobs, entropy, values = agent.evaluate(batch.obs, batch.actions)
    policy = ppo_policy_loss(logprobs, batch.logprobs, advantages, config.clip_coef)
    v_loss, dvalues = value_loss(values, batch.values, batch.returns,
                                 config.clip_coef if config.clip_vloss else None)
    entropy_mean = float(entropy.mean())
    loss = policy.loss + config.vf_coef * v_loss - config.ent_coef * entropy_mean
    dentropy = np.full_like(entropy, -config.ent_coef / len(entropy))
    agent.backward(policy.dlogprobs, dentropy, config.vf_coef * dvalues)
    return {"loss": loss, "policy_loss": policy.loss, "value_loss": v_loss, "entropy": entropy_mean,
            "approx_kl": policy.approx_kl, "clipfrac": policy.clipfrac}


def reinforce_loss_and_gradients(agent, batch, config):
    """REINFORCE's loss on a batch (module docstring); adds its gradient into ``agent.grads``."""
    advantages = whiten(batch.advantages) if config.norm_adv else batch.advantages
    logprobs, entropy, values = agent.evaluate(batch.obs, batch.actions)
    policy_loss, dlogprobs = reinforce_loss(logprobs, advantages)
    if config.reinforce_baseline:
        v_loss, dvalues = value_loss(values, None, batch.returns)
    else:
        v_loss, dvalues = 0.0, np.zeros_like(values)
    entropy_mean = float(entropy.mean())
    loss = policy_loss + config.vf_coef * v_loss - config.ent_coef * entropy_mean
    dentropy = np.full_like(entropy, -config.ent_coef / len(entropy))
    agent.backward(dlogprobs, dentropy, config.vf_coef * dvalues)
    return {"loss": loss, "policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy_mean}


@dataclass
class History:
    """What a run produced: one dict per update and one (global_step, return, length) per episode."""

    updates: list = field(default_factory=list)
    episodes: list = field(default_factory=list)

    def recent_return(self, n=RECENT_EPISODES):
        """Mean return of the last ``n`` finished episodes (NaN before the first one)."""
        returns = [episode_return for _, episode_return, _ in self.episodes[-n:]]
        return float(np.mean(returns)) if returns else float("nan")


class Trainer:
    """Runs PPO or REINFORCE as configured.  ``Trainer(config).train()`` returns a :class:`History`.

    ``env`` defaults to ``make_env(config)``; ``agent`` to a new :class:`ActorCritic` in
    ``config.dtype`` (a given agent must have that dtype).  Observations are converted to it.
    """

    def __init__(self, config, env=None, agent=None):
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        self.config = config
        self.env = make_env(config) if env is None else env
        if self.env.num_envs != config.num_envs:
            raise ValueError(f"env has {self.env.num_envs} sub-environments, config.num_envs is {config.num_envs}")
        init_seed, action_seed, shuffle_seed = np.random.SeedSequence(config.seed).spawn(3)
        self.agent = agent if agent is not None else ActorCritic(
            self.env.single_observation_space, self.env.single_action_space, config.hidden_sizes,
            dtype=config.dtype, seed=np.random.default_rng(init_seed))
        if self.agent.dtype != config.dtype:
            raise ValueError(f"agent has dtype {self.agent.dtype}, config.dtype is {config.dtype}")
        self.action_rng = np.random.default_rng(action_seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.optimizer = AdamW(self.agent.params, self.agent.grads, lr=config.learning_rate,
                               betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0, decay=[])
        action_space = self.env.single_action_space
        action_dtype = self.agent.dtype if self.agent.continuous else np.int64
        self.rollout = Rollout(config.num_steps, config.num_envs, self.env.single_observation_space.shape,
                               action_space.shape, action_dtype, self.agent.dtype)
        self.history = History()
        self.global_step = 0
        self.next_obs = None

    def collect_rollout(self):
        """Fill ``self.rollout`` with ``num_steps`` steps of every sub-environment (step 1)."""
        rollout, agent, env = self.rollout, self.agent, self.env
        if self.next_obs is None:
            self.next_obs = network_obs(agent, env.reset(seed=self.config.seed)[0])
        rollout.final_values.fill(0.0)
        for t in range(self.config.num_steps):
            rollout.obs[t] = self.next_obs
            actions, rollout.logprobs[t], rollout.values[t] = agent.act(self.next_obs, self.action_rng)
            rollout.actions[t] = actions
            obs, rewards, terminations, truncations, infos = env.step(actions)
            self.next_obs = network_obs(agent, obs)
            self.global_step += env.num_envs
            rollout.rewards[t] = rewards
            rollout.terminations[t] = terminations
            rollout.truncations[t] = truncations
            if infos:  # some episode ended on this step
                truncated = truncations & ~terminations  # only these bootstrap from V(final_obs)
                if truncated.any():
                    final_obs = network_obs(agent, infos["final_obs"][truncated])
                    rollout.final_values[t, truncated] = agent.value(final_obs)
                finished = infos["_episode"]
                for episode_return, length in zip(infos["episode"]["r"][finished], infos["episode"]["l"][finished]):
                    self.history.episodes.append((self.global_step, float(episode_return), int(length)))
        rollout.last_values[:] = agent.value(self.next_obs)
        return rollout

    def flat_batch(self, advantages, returns):
        """The rollout flattened to T·N samples (step 3 shuffles these)."""
        rollout, n = self.rollout, self.config.batch_size
        return Batch(rollout.obs.reshape(n, -1), rollout.actions.reshape(n, *rollout.actions.shape[2:]),
                     rollout.logprobs.reshape(n), rollout.values.reshape(n),
                     advantages.reshape(n), returns.reshape(n))

    def ppo_update(self, batch, lr):
        """``update_epochs`` shuffled passes of minibatch steps (step 3); returns the diagnostics."""
        config = self.config
        clipfracs = []
        for _ in range(config.update_epochs):
            order = self.shuffle_rng.permutation(config.batch_size)
            for start in range(0, config.batch_size, config.minibatch_size):
                minibatch = Batch(*(array[order[start:start + config.minibatch_size]] for array in batch))
                stats = self.gradient_step(ppo_loss_and_gradients, minibatch, lr)
                clipfracs.append(stats["clipfrac"])
            if config.target_kl is not None and stats["approx_kl"] > config.target_kl:
                break  # early stop: the policy moved too far from the one that collected the data
        stats["clipfrac"] = float(np.mean(clipfracs))
        return stats

    def gradient_step(self, loss_and_gradients, batch, lr):
        """Zero the gradients, compute them, clip their global norm, take one Adam step."""
        self.agent.zero_grad()
        stats = loss_and_gradients(self.agent, batch, self.config)
        stats["grad_norm"] = clip_grad_norm(self.agent.grads, self.config.max_grad_norm)
        self.optimizer.step(lr)
        return stats

    def train(self, callback=None):
        """Run ``config.num_updates`` updates; return the history.

        ``callback(trainer, stats)`` is called after each update with that update's dict (policy
        and value loss, entropy, approx_kl, clipfrac, explained_variance, sps, ...); returning a
        true value stops training.
        """
        with blas_threads(self.config.blas_threads):
            return self._train(callback)

    def _train(self, callback):
        config = self.config
        ppo = config.algo == "ppo"
        started, start_step = time.perf_counter(), self.global_step
        for update in range(config.num_updates):
            lr = linear_schedule(update, config.learning_rate, config.num_updates) if config.anneal_lr \
                else config.learning_rate
            self.collect_rollout()
            advantages, returns = gae_targets(self.rollout, config.gamma, config.gae_lambda if ppo else 1.0,
                                              use_critic=ppo or config.reinforce_baseline)
            batch = self.flat_batch(advantages, returns)
            if ppo:
                stats = self.ppo_update(batch, lr)
            else:
                stats = self.gradient_step(reinforce_loss_and_gradients, batch, lr)
            elapsed = time.perf_counter() - started
            stats.update(update=update + 1, global_step=self.global_step, learning_rate=lr,
                         explained_variance=explained_variance(batch.values, batch.returns),
                         recent_return=self.history.recent_return(), time=elapsed,
                         sps=(self.global_step - start_step) / elapsed)
            self.history.updates.append(stats)
            if not math.isfinite(stats["loss"]):
                raise FloatingPointError(f"loss became {stats['loss']} at update {update + 1}; "
                                         "lower the learning rate")
            if callback is not None and callback(self, stats):
                break
        return self.history

    def save(self, path):
        """Checkpoint the networks, the optimizer, the observation statistics and the config."""
        normalizer = find_wrapper(self.env, envs.NormalizeObservation)
        obs_rms = None if normalizer is None else {key: np.asarray(value).tolist()
                                                   for key, value in normalizer.obs_rms.state_dict().items()}
        save_checkpoint(path, self.agent.params, asdict(self.config), self.optimizer.state_dict(),
                        self.global_step, self.action_rng, extra={"obs_rms": obs_rms})


def load_policy(path, env=None):
    """``(agent, config, obs_rms_state)`` from a checkpoint written by :meth:`Trainer.save`.

    The network is sized by the single observation and action spaces of ``env``; by default a new
    ``envs.make(config.env_id)``.  Pass the environment when the policy was trained on one given to
    :class:`Trainer` directly, whose spaces ``config.env_id`` does not describe.
    ``obs_rms_state`` (None without observation normalisation) goes to
    ``NormalizeObservation.obs_rms.load_state_dict``.
    """
    state = load_checkpoint(path)
    if not isinstance(state["config"], dict) or "obs_rms" not in state["extra"]:
        raise ValueError(f"{str(path)!r} is not a PPO checkpoint (it has no PPO config)")
    config = PPOConfig(**state["config"])
    spaces_env = envs.make(config.env_id, num_envs=1, seed=0) if env is None else env
    agent = ActorCritic(spaces_env.single_observation_space, spaces_env.single_action_space,
                        config.hidden_sizes, dtype=config.dtype, seed=0)
    if env is None:
        spaces_env.close()
    shapes = {name: np.shape(value) for name, value in state["params"].items()}
    try:
        agent.load_state_dict(state["params"])
    except ValueError as error:
        if shapes == {name: value.shape for name, value in agent.params.items()}:  # the network fits; the values do not
            raise ValueError(f"{str(path)!r}: {error}") from error
        source = f"{config.env_id!r} (config.env_id)" if env is None else "the env given"
        raise ValueError(f"{str(path)!r} does not fit the spaces of {source}; pass the environment the policy "
                         f"was trained on as env. {error}") from error
    obs_rms = state["extra"]["obs_rms"]
    if obs_rms is not None:
        if not (isinstance(obs_rms, dict) and set(obs_rms) == {"mean", "var", "count"}):
            raise ValueError(f"{str(path)!r}: the saved observation statistics must be null or an object with "
                             f"mean, var and count, got {str(obs_rms)[:80]}")
        obs_rms = {key: np.asarray(value) for key, value in obs_rms.items()}
    return agent, config, obs_rms


def evaluate_policy(agent, env, rng, deterministic=False, max_steps=1_000_000):
    """The return of the first episode of each of ``env.num_envs`` sub-environments, (num_envs,).

    Counting only first episodes keeps the average unbiased (a fixed number of episodes collected
    in parallel would favour short ones).  An episode still running after ``max_steps`` steps (an
    environment without a time limit whose policy never ends it) is a RuntimeError, not a hang.
    """
    max_steps = integer_at_least(max_steps, "max_steps", 1)
    returns = np.full(env.num_envs, np.nan)
    obs, _ = env.reset()
    for _ in range(max_steps):
        if not np.isnan(returns).any():
            return returns
        actions, _, _ = agent.act(network_obs(agent, obs), rng, deterministic)
        obs, _, _, _, infos = env.step(actions)
        if infos:
            first = infos["_episode"] & np.isnan(returns)
            returns[first] = infos["episode"]["r"][first]
    if np.isnan(returns).any():
        running = np.flatnonzero(np.isnan(returns)).tolist()
        raise RuntimeError(f"the episodes of sub-environments {running} did not end within max_steps={max_steps} "
                           f"steps; give the environment a time limit or raise max_steps")
    return returns
