"""Evaluating a policy: episode returns counted without bias toward short episodes, streamed in bounded
chunks, and the periodic evaluation of a training run that keeps the best checkpoint and stops at a target.

* :func:`evaluate_policy` -- the first episode of each sub-environment of one vector environment.
* :func:`evaluate_episodes` -- any number of episodes, ``env.num_envs`` at a time, folded into
  :class:`ReturnStatistics` (count, mean, std, min, max): memory stays flat however many are asked for.
* :class:`EvaluationTracker` -- which evaluation was best by a chosen metric, and whether one reached
  ``--stop-at``; shared by ``train-ppo`` and ``rlhf``.
* :class:`PeriodicEvaluation` -- ``train-ppo --eval-every K``: every K updates, N deterministic episodes
  on separate environment copies whose observation normaliser holds a frozen *copy* of the training
  statistics, so evaluating never changes the training run.
"""
import math

import numpy as np

from minippo import envs
from minippo.checks import finite_number, integer_at_least
from minippo.envs.wrappers import RunningMeanStd
from minippo.rl.ppo import find_wrapper, make_env, network_obs
from minippo.seeding import spawn_seeds

MAX_EVAL_ENVS = 64  # environment copies stepped at once: the chunk of evaluate_episodes
CONTROL_METRICS = ("mean_return", "min_return")  # --eval-metric of train-ppo; higher is better


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
        actions, _ = agent.sample_actions(network_obs(agent, obs), rng, deterministic)
        obs, _, _, _, infos = env.step(actions)
        if infos:
            first = infos["_episode"] & np.isnan(returns)
            returns[first] = infos["episode"]["r"][first]
    if np.isnan(returns).any():
        running = np.flatnonzero(np.isnan(returns)).tolist()
        raise RuntimeError(f"the episodes of sub-environments {running} did not end within max_steps={max_steps} "
                           f"steps; give the environment a time limit or raise max_steps")
    return returns


class ReturnStatistics:
    """Count, mean, standard deviation (ddof = 0), min and max of episode returns, merged chunk by chunk
    (``RunningMeanStd``'s exact parallel update) in constant memory."""

    def __init__(self):
        self.moments = RunningMeanStd()
        self.min, self.max = math.inf, -math.inf

    def add(self, returns):
        """Merge a chunk of returns (k,)."""
        self.moments.update(returns)
        self.min, self.max = min(self.min, float(returns.min())), max(self.max, float(returns.max()))

    @property
    def count(self):
        return self.moments.count

    @property
    def mean(self):
        return float(self.moments.mean)

    @property
    def std(self):
        return float(np.sqrt(self.moments.var))

    def metrics(self):
        """The figures as logged: ``eval/mean_return``, ``eval/std_return``, ``eval/min_return``, ..."""
        return {"eval/mean_return": self.mean, "eval/std_return": self.std, "eval/min_return": self.min,
                "eval/max_return": self.max, "eval/episodes": self.count}


def evaluate_episodes(agent, env, episodes, rng, deterministic=False, max_steps=1_000_000, on_chunk=None):
    """:class:`ReturnStatistics` of ``episodes`` episodes, run ``env.num_envs`` at a time.

    Each chunk resets ``env`` (continuing its random stream, so the result is reproducible from the
    environment's seed and ``rng``) and takes the first episode of each sub-environment
    (:func:`evaluate_policy`); the last chunk keeps the first of them only.  ``on_chunk(statistics)`` is
    called after each chunk; a true return stops early (the statistics then count the episodes run).
    """
    episodes = integer_at_least(episodes, "episodes", 1)
    statistics = ReturnStatistics()
    while statistics.count < episodes:
        returns = evaluate_policy(agent, env, rng, deterministic, max_steps)
        statistics.add(returns[:episodes - statistics.count])
        if on_chunk is not None and on_chunk(statistics):
            break
    return statistics


class EvaluationTracker:
    """The best of a run's evaluations by ``metric`` (higher is better), saved to ``best_path`` (None: not
    saved), and whether the latest reached ``stop_at`` (None: never stop).  ``unit`` names the steps
    ("update", "iteration") in the lines it logs."""

    def __init__(self, metric, unit, stop_at=None, best_path=None, log=print):
        self.metric, self.unit, self.best_path, self.log = metric, unit, best_path, log
        self.stop_at = None if stop_at is None else finite_number(stop_at, "stop_at")
        self.best_step, self.best_value, self.latest = None, -math.inf, None

    def record(self, step, metrics, save, described):
        """Note the evaluation ``metrics`` at ``step``: when it is the best so far (the first always is)
        call ``save(best_path)``; log ``described`` (the figures in words).  Returns True when it reached
        ``stop_at``."""
        self.latest = metrics[self.metric]
        best = self.best_step is None or self.latest > self.best_value
        if best:
            self.best_step, self.best_value = step, self.latest
            if self.best_path:
                save(self.best_path)
        marker = ("  (best" + (f", wrote {self.best_path})" if self.best_path else ")")) if best else ""
        self.log(f"eval at {self.unit} {step}: {described}{marker}")
        if self.reached:
            self.log(f"{self.metric} {self.latest:.3f} reached --stop-at {self.stop_at:g}: stopping")
        return self.reached

    def replay(self, steps, rows):
        """Take up the best of a resumed run: ``rows`` are its logged figures at ``steps``; those holding
        ``metric`` count as evaluations (nothing is saved or logged: best_path already holds the best)."""
        for step, row in zip(steps, rows):
            if self.metric in row and (self.best_step is None or row[self.metric] > self.best_value):
                self.best_step, self.best_value = step, row[self.metric]

    @property
    def reached(self):
        """True once the latest evaluation is at or above ``stop_at``."""
        return self.stop_at is not None and self.latest is not None and self.latest >= self.stop_at

    def summary(self):
        """``best eval/mean_return 500.000 at update 10 (runs/best.npz)``."""
        if self.best_step is None:
            return "no evaluation ran"
        saved = f" ({self.best_path})" if self.best_path else ""
        return f"best {self.metric} {self.best_value:.3f} at {self.unit} {self.best_step}{saved}"


class PeriodicEvaluation:
    """``train-ppo --eval-every``: a ``Trainer.train`` callback that, every ``every`` updates, runs
    ``episodes`` deterministic episodes, logs ``eval/*`` into that update's stats, saves the best
    checkpoint to ``best_path`` (``Trainer.save``; None: keep none) and returns True (stop) once the
    ``metric`` reaches ``stop_at``.

    The episodes run on environment copies of their own, seeded from ``config.seed`` with a stream the
    training does not use, reset to the same seed at every evaluation (so successive evaluations
    compare policies on the same start states).  Their observation normaliser gets a copy of the
    training statistics, frozen.  Every MPI rank evaluates the same episodes, so all agree on stopping.
    """

    def __init__(self, trainer, every, episodes, metric="mean_return", stop_at=None, best_path=None, log=print):
        config = trainer.config
        self.every = integer_at_least(every, "every", 1)
        self.episodes = integer_at_least(episodes, "episodes", 1)
        self.tracker = EvaluationTracker(f"eval/{metric}", "update", stop_at, best_path, log)
        self.seed = spawn_seeds(config.seed, 4)[3]  # Trainer uses streams 0-2 of config.seed
        self.env = make_env(config, num_envs=min(self.episodes, MAX_EVAL_ENVS), seed=self.seed, training=False)
        self.normalizer = find_wrapper(self.env, envs.NormalizeObservation)
        if self.normalizer is not None:
            self.normalizer.update_stats = False
            if find_wrapper(trainer.env, envs.NormalizeObservation) is None:
                raise ValueError("config.normalize_obs is on but the trainer's env has no NormalizeObservation "
                                 "wrapper: its statistics are what the evaluation must use")

    def evaluate(self, trainer):
        """:class:`ReturnStatistics` of the current policy."""
        if self.normalizer is not None:
            training = find_wrapper(trainer.env, envs.NormalizeObservation)
            self.normalizer.obs_rms.load_state_dict(training.obs_rms.state_dict())  # a copy
        self.env.reset(seed=self.seed)
        return evaluate_episodes(trainer.agent, self.env, self.episodes, np.random.default_rng(self.seed),
                                 deterministic=True)

    def __call__(self, trainer, stats):
        if stats["update"] % self.every:
            return False
        metrics = self.evaluate(trainer).metrics()
        stats.update(metrics)
        return self.tracker.record(stats["update"], metrics, trainer.save,
                                   f"mean return {metrics['eval/mean_return']:.2f} ± {metrics['eval/std_return']:.2f} "
                                   f"over {metrics['eval/episodes']} episodes")
