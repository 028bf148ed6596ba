"""The preset zoo: train a preset on several seeds and evaluate each policy deterministically.

Run (from the repository root; the Box2D and MuJoCo tasks need ``pip install ".[zoo]"``)::

    python benchmarks/ppo_zoo.py --preset cartpole                   # seeds 1 2 3, 10 episodes each
    python benchmarks/ppo_zoo.py --preset acrobot --seeds 1 2 3 4 5
    python benchmarks/ppo_zoo.py --preset pendulum --total-steps 200000   # a smaller budget than the preset's

Each seed runs ``minippo train-ppo --preset P --seed S --save ...`` and then ``minippo evaluate --load ...
--deterministic --episodes N``: N episodes, one per environment copy, with the observation statistics
frozen at their training values.  Reported per seed: the mean evaluation return and the wall time; then
the mean ± standard deviation over seeds of the per-seed means -- the figure of the table in docs/ppo.md,
beside CleanRL's and RL Baselines3 Zoo's published ones.  These runs take minutes to hours: they are
benchmarks, not tests.
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

from _options import non_negative_int, positive_int

from minippo.cli import main as minippo
from minippo.rl.ppo_config import PRESETS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="NAME",
                        help=f"preset to run: {', '.join(sorted(PRESETS))}")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=[1, 2, 3], help="seeds (default: 1 2 3)")
    parser.add_argument("--episodes", type=positive_int, default=10,
                        help="deterministic evaluation episodes per seed (default: 10)")
    parser.add_argument("--total-steps", type=positive_int, help="step budget per seed (default: the preset's)")
    return parser.parse_args(argv)


def quietly(argv):
    """``minippo <argv>`` with its output captured; returns it, or exits with its error."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = minippo(argv)
    if status != 0:
        sys.exit(f"minippo {' '.join(argv)} failed with status {status}")
    return output.getvalue()


def evaluation_return(printed):
    """The mean from ``minippo evaluate``'s line "<env>: mean return M ± S over N episodes (...)"."""
    line = next(line for line in printed.splitlines() if ": mean return " in line)
    return float(line.split(": mean return ")[1].split()[0])


def main(args):
    budget = [] if args.total_steps is None else ["--total-steps", str(args.total_steps)]
    config = PRESETS[args.preset]
    print(f"preset {args.preset} on {config.env_id}: {args.total_steps or config.total_steps:,} steps per seed, "
          f"seeds {' '.join(map(str, args.seeds))}, {args.episodes} deterministic evaluation episodes each")
    means = []
    with tempfile.TemporaryDirectory() as directory:
        for seed in args.seeds:
            checkpoint = os.path.join(directory, f"seed{seed}.npz")
            started = time.perf_counter()
            quietly(["train-ppo", "--preset", args.preset, "--seed", str(seed), "--save", checkpoint, *budget])
            seconds = time.perf_counter() - started
            means.append(evaluation_return(quietly(["evaluate", "--load", checkpoint, "--deterministic",
                                                    "--episodes", str(args.episodes), "--seed", str(seed)])))
            print(f"seed {seed}: mean return {means[-1]:9.2f}  ({seconds:,.0f} s)", flush=True)
    spread = statistics.stdev(means) if len(means) > 1 else 0.0
    print(f"{args.preset}: {statistics.mean(means):.2f} ± {spread:.2f} over {len(means)} seeds")


if __name__ == "__main__":
    main(parse_args())
