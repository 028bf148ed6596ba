"""Wall time for minippo's PPO to solve CartPole-v1 (or to swing up Pendulum-v1).

Run (from the repository root)::

    python benchmarks/bench_ppo.py                          # CartPole-v1, cartpole-fast, seeds 1 2 3
    python benchmarks/bench_ppo.py --preset cartpole        # CleanRL's exact hyper-parameters
    python benchmarks/bench_ppo.py --env Pendulum-v1        # preset pendulum, 500k steps, target -250

A run *solves* the task when the mean return of its last 20 finished episodes reaches the target
(475 for CartPole-v1, whose maximum is 500; -250 for Pendulum-v1); it stops there, or at the end
of its step budget.  The clock starts when training starts (environment reset included) and
stops after the update during which the target was reached.  Reported per seed: time and steps
to the target and the overall steps/s; then the median over seeds.

Training uses ``--threads`` BLAS threads (default 1, via ``PPOConfig.blas_threads``): with 64-unit
networks multithreading only adds synchronisation, and on a busy machine it costs 10x or more.

For context, CleanRL's PyTorch ppo.py (CleanRL defaults, 500k steps, CPU) takes about 85-90 s for
its whole run at about 5,800 steps/s.  Environment-stepping throughput against gymnasium is
measured separately (benchmarks of ``minippo.envs``).
"""
import argparse
import statistics
import sys
from dataclasses import replace

from _options import finite_float, non_negative_int, positive_int

from minippo.rl.ppo import RECENT_EPISODES, Trainer, make_env
from minippo.rl.ppo_config import preset_for

TARGETS = {"CartPole-v1": 475.0, "Pendulum-v1": -250.0}
DEFAULT_STEPS = {"Pendulum-v1": 500_000}
CLEANRL_REFERENCE = "CleanRL ppo.py (PyTorch, CPU), CartPole-v1: ~85-90 s for 500k steps, ~5,800 steps/s"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1", help="environment id (default: CartPole-v1)")
    parser.add_argument("--preset", help="preset name (default: the environment's default preset)")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=[1, 2, 3],
                        help="seeds (default: 1 2 3)")
    parser.add_argument("--target", type=finite_float,
                        help="mean return of the last 20 episodes that counts as solved")
    parser.add_argument("--total-steps", type=positive_int, help="step budget per run (default: the preset's)")
    parser.add_argument("--threads", type=positive_int, default=1, help="BLAS threads during training (default: 1)")
    return parser.parse_args(argv)


def time_to_target(config, target):
    """(seconds, steps) until the last 20 episodes average ``target`` (None, None if never), and SPS."""
    reached = {}

    def stop_when_solved(trainer, stats):
        if len(trainer.history.episodes) >= RECENT_EPISODES and trainer.history.recent_return() >= target:
            reached.update(time=stats["time"], steps=stats["global_step"])
            return True
        return False

    history = Trainer(config).train(stop_when_solved)
    last = history.updates[-1]
    return reached.get("time"), reached.get("steps"), last["sps"], history.recent_return()


def main(args):
    base_id = args.env.removeprefix("gymnasium:")
    target = args.target if args.target is not None else TARGETS.get(base_id)
    if target is None:
        sys.exit(f"no default target for {args.env}; pass --target")
    try:
        config = preset_for(args.env, args.preset)
        total_steps = args.total_steps if args.total_steps is not None else DEFAULT_STEPS.get(
            base_id, config.total_steps)
        config = replace(config, total_steps=total_steps)
        make_env(config).close()  # an unknown environment, or no gymnasium: say so before training
    except (ValueError, ImportError) as error:
        sys.exit(f"error: {error}")
    print(f"PPO ({config.algo}) on {config.env_id}: {config.num_envs} envs x {config.num_steps} steps, "
          f"lr {config.learning_rate}, budget {total_steps:,} steps, target {target} "
          f"(mean of last {RECENT_EPISODES} episodes), BLAS threads {args.threads}")
    times = []
    for seed in args.seeds:
        seconds, steps, sps, final = time_to_target(replace(config, seed=seed, blas_threads=args.threads), target)
        if seconds is None:
            print(f"  seed {seed}: not solved in {total_steps:,} steps (final mean return {final:.1f}), "
                  f"{sps:,.0f} steps/s")
            times.append(float("inf"))
        else:
            print(f"  seed {seed}: solved in {seconds:6.1f} s at step {steps:,}, {sps:,.0f} steps/s")
            times.append(seconds)
    median = statistics.median(times)
    print(f"median wall time to target: {median:.1f} s" if median != float("inf") else "median: not solved")
    print(f"reference: {CLEANRL_REFERENCE}")


if __name__ == "__main__":
    main(parse_args())
