"""``minippo evaluate``: the mean and standard deviation of a saved policy's episode returns.

    minippo evaluate --load runs/cartpole.npz --episodes 20 --deterministic

The environment defaults to the one the policy was trained on; ``--env`` picks another with the
same spaces (e.g. ``gymnasium:CartPole-v1``).  Observation statistics saved with the policy are
applied, frozen; rewards are never scaled.  ``--deterministic`` acts with the most likely action.
"""
from dataclasses import replace

import numpy as np

from minippo import envs
from minippo.commands import integer_option
from minippo.rl.evaluation import evaluate_policy
from minippo.rl.ppo import find_wrapper, load_policy, make_env
from minippo.seeding import spawn_seeds


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="run a policy saved by train-ppo and print its mean return",
        description="Run N episodes (in parallel, one per environment copy) with a policy saved by "
        "'minippo train-ppo --save' and print the mean ± standard deviation of their returns.",
    )
    parser.add_argument("--load", required=True, metavar="PATH", help="checkpoint written by train-ppo --save")
    parser.add_argument("--env", help="environment id (default: the one the policy was trained on)")
    parser.add_argument("--episodes", type=integer_option(1), default=10, help="number of episodes (default: 10)")
    parser.add_argument("--deterministic", action="store_true",
                        help="take the most likely action instead of sampling")
    parser.add_argument("--seed", type=integer_option(0), default=0,
                        help="seed of the environments and the sampling (default: 0)")
    parser.set_defaults(func=run)


def run(args):
    agent, config, obs_rms = load_policy(args.load)
    config = replace(config, env_id=args.env or config.env_id)
    env = make_env(config, num_envs=args.episodes, seed=args.seed, training=False)
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
    returns = evaluate_policy(agent, env, action_rng, args.deterministic)
    env.close()
    mode = "deterministic" if args.deterministic else "sampled actions"
    print(f"{config.env_id}: mean return {returns.mean():.2f} ± {returns.std():.2f} "
          f"over {len(returns)} episodes ({mode})")
    return 0
