"""PPO and REINFORCE on vector environments, with every detail of CleanRL's ppo.py in plain sight.

One *update* (CleanRL: "iteration") is:

1. **Rollout.**  Step ``num_envs`` environments ``num_steps`` times with the current policy,
   storing s_t, a_t, log π_old(a_t|s_t), r_t and the end-of-episode flags.  Where an episode is
   *truncated* (time limit) the value of its last observation V(final_obs) is stored too.  The
   critic's V_old(s_t) of every step comes afterwards, in one pass (it does not choose the actions).
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
learning curve bit for bit.  :meth:`Trainer.save` holds everything a run needs to continue
(networks, optimizer, update count, history, and of every rank the environments with their
normalisation statistics, the generators and the next observations), and a run continued with
:meth:`Trainer.load_state` is bit-identical to an uninterrupted one.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from minippo import envs
from minippo.blas import blas_threads
from minippo.distributed import LOCAL, world
from minippo.envs.wrappers import find_wrapper  # noqa: F401 (importable from here as before)
from minippo.nn.checkpoint import load_checkpoint
from minippo.nn.optim import AdamW, clip_grad_norm, linear_schedule
from minippo.rl import resume
from minippo.rl.actor_critic import ActorCritic
from minippo.rl.advantages import whiten
from minippo.rl.losses import (
    explained_variance,
    ppo_policy_loss,
    reinforce_loss,
    value_loss,
)
from minippo.rl.ppo_config import PPOConfig, preset_for  # noqa: F401 (preset_for: importable from here as before)
from minippo.rl.resume import OPTIMIZER_KEY
from minippo.rl.rollout_buffer import Batch, RolloutBuffer, gae_targets

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-5
RECENT_EPISODES = 20  # "mean recent return" averages this many episodes
VALUE_PASS_ROWS = 2048  # observations per pass of the critic over a finished rollout (activations stay in cache)


def make_env(config, num_envs=None, seed=None, training=True, statistics_world=LOCAL):
    """The vector environment ``config`` describes, with its normalisation wrappers.

    Reward scaling is only applied when ``training``; observation normalisation always (its
    statistics are part of the policy).  The wrappers' running statistics merge the observations and
    returns of every rank of ``statistics_world`` (``minippo.distributed``).
    """
    env = envs.make(config.env_id, num_envs=config.num_envs if num_envs is None else num_envs,
                    seed=config.seed if seed is None else seed)
    if config.normalize_obs:
        env = envs.NormalizeObservation(env, clip=config.obs_clip, dtype=config.dtype,  # statistics in float64
                                        world=statistics_world)
    if config.normalize_reward and training:
        env = envs.NormalizeReward(env, gamma=config.gamma, clip=config.reward_clip, world=statistics_world)
    return env


def network_obs(agent, obs):
    """Observations from an environment converted to the network's dtype (an explicit cast: the
    networks refuse any other dtype)."""
    return np.asarray(obs, dtype=agent.dtype)


def rollout_values(agent, obs):
    """V(s) of a rollout's observations (T, N, *obs_shape) -> (T, N), computed after the rollout: the critic
    does not choose the actions, so passes of about ``VALUE_PASS_ROWS`` observations replace one call per
    step (a rollout of 64 CartPole environments: 11.5 -> 9.9 ms)."""
    T, N = obs.shape[:2]
    values = np.empty((T, N), dtype=agent.dtype)
    steps_per_pass = max(1, VALUE_PASS_ROWS // N)
    for start in range(0, T, steps_per_pass):
        rows = obs[start:start + steps_per_pass]
        values[start:start + steps_per_pass] = agent.value(rows.reshape(-1, *obs.shape[2:])).reshape(len(rows), N)
    return values


def ppo_loss_and_gradients(agent, batch, config, world=LOCAL, advantage_moments=None):
    """PPO's loss on a minibatch (module docstring, step 3); adds its gradient into ``agent.grads``.

    Returns the loss terms and diagnostics as floats.  Advantages are whitened with the statistics of
    the minibatches of every rank of ``world`` (or ``advantage_moments``, those statistics gathered
    already: ``whiten(moments=)``).
    """
    advantages = whiten(batch.advantages, world=world, moments=advantage_moments) if config.norm_adv \
        else batch.advantages
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


def reinforce_loss_and_gradients(agent, batch, config, world=LOCAL):
    """REINFORCE's loss on a batch (module docstring); adds its gradient into ``agent.grads``."""
    advantages = whiten(batch.advantages, world=world) if config.norm_adv else batch.advantages
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

    Under ``mpiexec -n N`` (``minippo.distributed``) each rank steps ``config.num_envs / N`` of the
    environments (a given ``env`` is this rank's share), seeded from ``config.seed`` and the rank; the
    networks start as rank 0's, every optimiser step averages the gradients of all ranks, advantages
    are whitened over all ranks, and the history (episodes, diagnostics) is the global one on every
    rank.  Only rank 0 writes checkpoints.
    """

    def __init__(self, config, env=None, agent=None):
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        self.config = config
        self.world = world()
        num_envs = self.world.share(config.num_envs, "num_envs")
        env_seed = self.world.rank_seed(config.seed)
        self.env = make_env(config, num_envs, env_seed, statistics_world=self.world) if env is None else env
        if self.env.num_envs != num_envs:
            raise ValueError(f"env has {self.env.num_envs} sub-environments, config.num_envs is {config.num_envs}"
                             + (f" over {self.world.size} MPI ranks" if self.world.size > 1 else ""))
        init_seed = np.random.SeedSequence(config.seed).spawn(3)[0]  # the same on every rank
        self.agent = agent if agent is not None else ActorCritic(
            self.env.single_observation_space, self.env.single_action_space, config.hidden_sizes,
            dtype=config.dtype, seed=np.random.default_rng(init_seed))
        if self.agent.dtype != config.dtype:
            raise ValueError(f"agent has dtype {self.agent.dtype}, config.dtype is {config.dtype}")
        self.world.broadcast_(self.agent.params)
        self.seed_rank_streams(env_seed)
        # One flat array for Adam (element-wise, so the same numbers as one array per parameter, in one
        # NumPy call per operation instead of twelve); checkpoints keep one moment per parameter.
        self.optimizer = AdamW({OPTIMIZER_KEY: self.agent.flat_params}, {OPTIMIZER_KEY: self.agent.flat_grads},
                               lr=config.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0, decay=[])
        action_space = self.env.single_action_space
        action_dtype = self.agent.dtype if self.agent.continuous else np.int64
        self.rollout = RolloutBuffer(config.num_steps, num_envs, self.env.single_observation_space.shape,
                               action_space.shape, action_dtype, self.agent.dtype)
        self.history = History()
        self.global_step = 0
        self.next_obs = None
        self.rollout_episodes = None  # this rank's episodes of the last rollout (collect_rollout)

    def seed_rank_streams(self, env_seed):
        """Seed this rank's random streams from ``env_seed``: its environments' (``env_seed``, which the first
        rollout resets them with), its action sampling and its minibatch order."""
        self.env_seed = env_seed
        action_seed, shuffle_seed = np.random.SeedSequence(env_seed).spawn(3)[1:]  # the rank's own
        self.action_rng = np.random.default_rng(action_seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)

    def collect_rollout(self):
        """Fill ``self.rollout`` with ``num_steps`` steps of every sub-environment (step 1)."""
        rollout, agent, env = self.rollout, self.agent, self.env
        if self.next_obs is None:
            self.next_obs = network_obs(agent, env.reset(seed=self.env_seed)[0])
        rollout.final_values.fill(0.0)
        rollout.episode_ends.fill(False)
        first_step, next_obs = self.global_step, self.next_obs
        for t in range(self.config.num_steps):
            rollout.obs[t] = next_obs
            actions, rollout.logprobs[t] = agent.sample_actions(next_obs, self.action_rng)
            rollout.actions[t] = actions
            obs, rewards, terminations, truncations, infos = env.step(actions)
            next_obs = network_obs(agent, obs)
            rollout.rewards[t] = rewards
            rollout.terminations[t] = terminations
            rollout.truncations[t] = truncations
            if infos:  # some episode ended on this step
                rollout.episode_ends[t] = infos["_episode"]
                rollout.episode_returns[t] = infos["episode"]["r"]
                rollout.episode_lengths[t] = infos["episode"]["l"]
                if np.count_nonzero(truncations):  # (faster than truncations.any() on small arrays)
                    truncated = truncations & ~terminations  # only these bootstrap from V(final_obs)
                    final_obs = network_obs(agent, infos["final_obs"][truncated])
                    rollout.final_values[t, truncated] = agent.value(final_obs)
        self.next_obs = next_obs
        self.global_step += self.config.num_steps * self.config.num_envs  # of every rank
        self.rollout_episodes = rollout.finished_episodes(first_step, self.config.num_envs)  # this rank's
        rollout.values[:] = rollout_values(agent, rollout.obs)
        rollout.last_values[:] = agent.value(next_obs)
        return rollout

    def flat_batch(self, advantages, returns):
        """The rollout flattened to T·N samples (step 3 shuffles these)."""
        rollout, n = self.rollout, self.rollout.rewards.size
        return Batch(rollout.obs.reshape(n, -1), rollout.actions.reshape(n, *rollout.actions.shape[2:]),
                     rollout.logprobs.reshape(n), rollout.values.reshape(n),
                     advantages.reshape(n), returns.reshape(n))

    def ppo_update(self, batch, lr):
        """``update_epochs`` shuffled passes of minibatch steps (step 3); returns the diagnostics.

        The advantage statistics of every minibatch over the ranks are gathered before the steps, in one
        collective for all the epochs' minibatches (each collective is a point where the ranks wait for
        the slowest).  With ``target_kl`` the epochs after an early stop must not draw their shuffles,
        so they are gathered one epoch at a time."""
        config = self.config
        clipfracs = []
        batch_size = len(batch.advantages)  # this rank's share of config.batch_size
        minibatch_size = batch_size // config.num_minibatches
        epochs_at_once = config.update_epochs if config.target_kl is None else 1
        for _ in range(0, config.update_epochs, epochs_at_once):
            orders = np.concatenate([self.shuffle_rng.permutation(batch_size) for _ in range(epochs_at_once)])
            minibatches = [orders[start:start + minibatch_size] for start in range(0, len(orders), minibatch_size)]
            moments = self.world.mean_std_groups([batch.advantages[minibatch] for minibatch in minibatches]) \
                if config.norm_adv else [None] * len(minibatches)
            steps = []  # the steps' diagnostics, averaged over the ranks by the last step
            for index, (minibatch, advantage_moments) in enumerate(zip(minibatches, moments)):
                self.gradient_step(ppo_loss_and_gradients, Batch(*(array[minibatch] for array in batch)), lr,
                                   advantage_moments, steps=steps, last=index == len(minibatches) - 1)
            clipfracs += [step["clipfrac"] for step in steps]
            stats = steps[-1]
            if config.target_kl is not None and stats["approx_kl"] > config.target_kl:
                break  # early stop: the policy moved too far from the one that collected the data
        stats["clipfrac"] = float(np.mean(clipfracs))
        return stats

    def gradient_step(self, loss_and_gradients, batch, lr, *loss_arguments, steps=None, last=True):
        """Zero the gradients, compute them (``loss_and_gradients(agent, batch, config, world,
        *loss_arguments)``), average them (and the diagnostics) over the ranks, clip their global norm,
        take one Adam step; return the step's diagnostics.

        Steps in a row can share the averaging of their diagnostics, which nothing reads before the
        last of them: each appends its own to the list ``steps``, and the one with ``last=True`` averages
        all of them along with its gradients, in its one ``Allreduce`` (in place in ``steps``).  The
        other steps' gradients are averaged where they lie, with no copy, and return their diagnostics
        unaveraged."""
        self.agent.zero_grad()
        stats = loss_and_gradients(self.agent, batch, self.config, self.world, *loss_arguments)
        steps = [] if steps is None else steps
        steps.append(stats)
        grads = {OPTIMIZER_KEY: self.agent.flat_grads}
        if last:
            pending = {(step, name): value for step, diagnostics in enumerate(steps)
                       for name, value in diagnostics.items() if name != "grad_norm"}  # (grad_norm: global already)
            averaged = self.world.average_gradients(grads, pending)
            for (step, name), value in averaged.items():
                steps[step][name] = value
        else:
            self.world.average_gradients(grads)
        stats["grad_norm"] = clip_grad_norm(self.agent.grads, self.config.max_grad_norm, flat=self.agent.flat_grads)
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
        for update in range(len(self.history.updates), config.num_updates):  # from where a resumed run stopped
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
            self.world.check_identical(self.agent.params, f"update {update + 1}")
            values, returns, episodes = self.world.gather_rows_each([batch.values, batch.returns,
                                                                     self.rollout_episodes])  # of every rank
            self.history.episodes.extend((int(step), episode_return, int(length))
                                         for step, episode_return, length in episodes.tolist())
            stats.update(update=update + 1, global_step=self.global_step, learning_rate=lr,
                         explained_variance=explained_variance(values, returns),
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
        """Checkpoint the run: the networks, the optimizer, the config, the observation statistics (what
        :func:`load_policy` reads) and the rest :meth:`load_state` needs to continue it
        (``minippo.rl.resume``).  Under MPI every rank must call it; rank 0 writes."""
        resume.save_run(self, path)

    def load_state(self, path):
        """Continue the run :meth:`save` wrote to ``path``, bit-identically when on as many MPI ranks, and on
        another number with the environments regrouped and new random streams (``minippo.rl.resume``)."""
        resume.load_run(self, path)


def load_policy(path, env=None):
    """``(agent, config, obs_rms_state)`` from a checkpoint written by :meth:`Trainer.save`.

    The network is sized by the single observation and action spaces of ``env``; by default a new
    ``envs.make(config.env_id)``.  Pass the environment when the policy was trained on one given to
    :class:`Trainer` directly, whose spaces ``config.env_id`` does not describe.
    ``obs_rms_state`` (None without observation normalisation) goes to
    ``NormalizeObservation.obs_rms.load_state_dict``.
    """
    state = load_checkpoint(path, kind="ppo_policy")
    if not isinstance(state["config"], dict):
        raise ValueError(f"{str(path)!r} has no PPO config")
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
    obs_rms = state["extra"].get("obs_rms")
    if obs_rms is not None:
        if not (isinstance(obs_rms, dict) and set(obs_rms) == {"mean", "var", "count"}):
            raise ValueError(f"{str(path)!r}: the saved observation statistics must be null or an object with "
                             f"mean, var and count, got {str(obs_rms)[:80]}")
        obs_rms = {key: np.asarray(value) for key, value in obs_rms.items()}
    return agent, config, obs_rms
