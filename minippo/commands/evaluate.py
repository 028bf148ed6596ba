"""``minippo evaluate``: the mean and standard deviation of a saved policy's episode returns; and the
evaluation options that ``train-ppo`` and ``rlhf`` share (``--eval-every``, ``--stop-at``, ``--eval-metric``).

    minippo evaluate --load runs/cartpole.npz --episodes 20 --deterministic

The environment defaults to the one the policy was trained on; ``--env`` picks another with the
same spaces (e.g. ``gymnasium:CartPole-v1``).  Observation statistics saved with the policy are
applied, frozen; rewards are never scaled.  ``--deterministic`` acts with the most likely action.
Episodes run at most 64 at a time (the first episode of each environment copy, then the copies are
reset), folded into running statistics: any ``--episodes`` costs time, with a progress line and ETA,
not memory.  Ctrl-C prints the statistics of the episodes finished so far.
"""
import os
from dataclasses import replace

import numpy as np

from minippo import envs
from minippo.checks import finite_number
from minippo.commands import integer_option
from minippo.progress import Progress
from minippo.rl.evaluation import (
    CONTROL_METRICS,
    MAX_EVAL_ENVS,
    PeriodicEvaluation,
    ReturnStatistics,
    evaluate_episodes,
)
from minippo.rl.ppo import find_wrapper, load_policy, make_env
from minippo.rlhf.evaluation import RLHF_METRICS, PeriodicRLHFEvaluation, held_out_prompts
from minippo.seeding import spawn_seeds


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="run a policy saved by train-ppo and print its mean return",
        description="Run N episodes (up to 64 in parallel, the first episode of each environment copy) with a "
        "policy saved by 'minippo train-ppo --save' and print the mean ± standard deviation of their returns.",
    )
    parser.add_argument("--load", required=True, metavar="PATH", help="checkpoint written by train-ppo --save")
    parser.add_argument("--env", help="environment id (default: the one the policy was trained on)")
    parser.add_argument("--episodes", type=integer_option(1), default=10,
                        help="number of episodes, streamed 64 at a time (default: 10)")
    parser.add_argument("--deterministic", action="store_true",
                        help="take the most likely action instead of sampling")
    parser.add_argument("--seed", type=integer_option(0), default=0,
                        help="seed of the environments and the sampling (default: 0)")
    parser.set_defaults(func=run)


def run(args, on_chunk=None):
    """``on_chunk(statistics)`` is called after each chunk of episodes, after the progress line."""
    agent, config, obs_rms = load_policy(args.load)
    config = replace(config, env_id=args.env or config.env_id)
    env = make_env(config, num_envs=min(args.episodes, MAX_EVAL_ENVS), seed=args.seed, training=False)
    if env.single_observation_space.shape != agent.observation_space.shape or \
            env.single_action_space != agent.action_space:
        raise ValueError(f"--env {config.env_id} has observations {env.single_observation_space} and actions "
                         f"{env.single_action_space}; the policy expects {agent.observation_space} and "
                         f"{agent.action_space}")
    if obs_rms is not None:
        normalizer = find_wrapper(env, envs.NormalizeObservation)
        normalizer.obs_rms.load_state_dict(obs_rms)
        normalizer.update_stats = False
    action_rng = np.random.default_rng(spawn_seeds(args.seed, 1)[0])  # independent of the environments' stream
    progress = Progress(args.episodes, "episodes")
    finished = ReturnStatistics()

    def after_chunk(statistics):
        nonlocal finished
        finished = statistics
        progress.update(statistics.count, f"mean return {statistics.mean:.2f}")
        return on_chunk is not None and on_chunk(statistics)

    mode = "deterministic" if args.deterministic else "sampled actions"
    try:
        evaluate_episodes(agent, env, args.episodes, action_rng, args.deterministic, on_chunk=after_chunk)
    except KeyboardInterrupt:
        print(f"interrupted after {finished.count:,} of {args.episodes:,} episodes")
    finally:
        env.close()
    if finished.count:
        print(f"{config.env_id}: mean return {finished.mean:.2f} ± {finished.std:.2f} "
              f"over {finished.count:,} episodes ({mode})")
    return 0


def add_evaluation_options(parser, metrics, unit):
    """``--eval-every``, ``--stop-at`` and ``--eval-metric`` on a training command (``metrics``: the
    choices, the first the default; ``unit``: what K counts)."""
    parser.add_argument("--eval-every", type=integer_option(0), default=0, metavar="K",
                        help=f"evaluate every K {unit} and keep the best checkpoint as best.npz (default: 0, off)")
    parser.add_argument("--stop-at", type=float, default=None, metavar="X",
                        help="stop once an evaluation's --eval-metric reaches X (needs --eval-every)")
    parser.add_argument("--eval-metric", choices=metrics, default=metrics[0],
                        help=f"evaluation figure that picks the best checkpoint and --stop-at (default: {metrics[0]})")


def add_control_evaluation_options(parser):
    """train-ppo's evaluation options: :func:`add_evaluation_options` and ``--eval-episodes``."""
    add_evaluation_options(parser, CONTROL_METRICS, "updates")
    parser.add_argument("--eval-episodes", type=integer_option(1), default=10, metavar="N",
                        help="deterministic episodes per evaluation (default: 10)")


def evaluation_requested(args):
    """True with ``--eval-every K``; ``--stop-at`` without it is an error."""
    if args.stop_at is not None:
        finite_number(args.stop_at, "--stop-at")
        if not args.eval_every:
            raise ValueError("--stop-at needs --eval-every K (the evaluations it compares with the target)")
    return args.eval_every > 0


def best_path_beside(path):
    """``best.npz`` in the directory of ``path`` (None without a path)."""
    return None if path is None else os.path.join(os.path.dirname(os.path.abspath(path)), "best.npz")


def periodic_evaluation(args, trainer):
    """train-ppo's :class:`PeriodicEvaluation` from the options (None without ``--eval-every``); the best
    checkpoint goes beside ``--save``.  Call it after a resumed run is loaded: its best so far carries on."""
    if not evaluation_requested(args):
        return None
    evaluation = PeriodicEvaluation(trainer, args.eval_every, args.eval_episodes, args.eval_metric, args.stop_at,
                                    best_path_beside(args.save))
    updates = trainer.history.updates  # of a resumed run: its evaluations so far
    evaluation.tracker.replay([stats["update"] for stats in updates], updates)
    return evaluation


def add_rlhf_evaluation_options(parser):
    """rlhf's evaluation options: :func:`add_evaluation_options`, ``--eval-prompts`` and ``--eval-greedy``."""
    add_evaluation_options(parser, RLHF_METRICS, "iterations")
    parser.add_argument("--eval-prompts", metavar="FILE",
                        help="held-out prompts, one per line, used verbatim (default: the shipped test prompts)")
    parser.add_argument("--eval-greedy", action="store_true",
                        help="evaluate greedy responses instead of sampled ones (seeded from --seed)")


def rlhf_evaluation(args, trainer, template, seed):
    """rlhf's :class:`PeriodicRLHFEvaluation` from the options (None without ``--eval-every``): raw held-out
    prompts laid out with ``template``, sampled from a stream derived from the run's ``seed``; the best policy
    goes to ``best.npz`` in ``--out``."""
    if not evaluation_requested(args):
        return None
    from minippo.commands.rlhf import read_prompts  # (rlhf imports this module)
    prompts = held_out_prompts(template) if args.eval_prompts is None else \
        [template.prompt_text(prompt) for prompt in read_prompts(args.eval_prompts)]
    return PeriodicRLHFEvaluation(trainer, args.eval_every, prompts, args.eval_metric, args.stop_at,
                                  os.path.join(args.out, "best.npz"), spawn_seeds(seed, 3)[2],
                                  args.eval_greedy, template=template)
