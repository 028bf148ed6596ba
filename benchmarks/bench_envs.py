"""Steps per second of CartPole-v1: minippo's native vector env against gymnasium's.

Run:  python benchmarks/bench_envs.py [--steps-budget 200000] [--num-envs 1 16 256 4096]

Every implementation takes uniformly random actions (drawn before timing starts) for a number of
``step`` calls chosen so each cell simulates roughly ``--steps-budget`` environment steps, and
reports environment steps per second (``num_envs × calls / seconds``, best of ``--repeats``; the
implementations take turns within each repeat):

* ``minippo``          -- ``minippo.envs.make("CartPole-v1")``: NumPy, same-step autoreset,
  episode statistics included;
* ``gym sync``         -- ``gymnasium.make_vec(..., vectorization_mode="sync")``: a Python loop
  over gymnasium's single-environment CartPole (next-step autoreset);
* ``gym vector``       -- gymnasium's own NumPy ``CartPoleVectorEnv``
  (``vectorization_mode="vector_entry_point"``, next-step autoreset, no episode statistics).

The gymnasium columns are skipped when gymnasium is not installed.
"""
import argparse
import time

import numpy as np
from _options import positive_int

from minippo import envs


def time_interleaved(env_by_name, calls_by_name, num_envs, repeats):
    """Best-of-``repeats`` environment steps per second of each env, over random-action steps.

    The implementations take turns within every repeat, so that a change in the machine's load
    during the run affects them alike.
    """
    rng = np.random.default_rng(0)
    actions = {name: rng.integers(2, size=(calls, num_envs)) for name, calls in calls_by_name.items()}
    best = dict.fromkeys(env_by_name, np.inf)
    for env in env_by_name.values():
        env.reset(seed=0)
    for _ in range(repeats):
        for name, env in env_by_name.items():
            start = time.perf_counter()
            for action in actions[name]:
                env.step(action)
            best[name] = min(best[name], time.perf_counter() - start)
    for env in env_by_name.values():
        env.close()
    return {name: num_envs * calls_by_name[name] / best[name] for name in env_by_name}


def implementations(num_envs):
    """``{name: zero-argument constructor}`` for every implementation available here."""
    makers = {"minippo": lambda: envs.make("CartPole-v1", num_envs=num_envs)}
    try:
        import gymnasium
    except ImportError:
        return makers
    makers["gym sync"] = lambda: gymnasium.make_vec("CartPole-v1", num_envs, vectorization_mode="sync")
    makers["gym vector"] = lambda: gymnasium.make_vec(
        "CartPole-v1", num_envs, vectorization_mode="vector_entry_point"
    )
    return makers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=positive_int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--steps-budget", type=positive_int, default=200_000, help="environment steps per cell")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--max-sync-steps", type=positive_int, default=50_000, help="cap for the slow Python loop")
    args = parser.parse_args()

    names = list(implementations(1))
    compare = len(names) > 1  # the ratio needs a gymnasium column
    print(f"CartPole-v1, random actions, environment steps per second (best of {args.repeats})")
    print(f"{'num_envs':>9} " + " ".join(f"{name:>12}" for name in names)
          + (f" {'minippo/best gym':>17}" if compare else ""))
    for num_envs in args.num_envs:
        env_by_name = {name: make() for name, make in implementations(num_envs).items()}
        budget = {name: args.steps_budget for name in env_by_name}
        if "gym sync" in budget:  # a Python loop over sub-environments: slow at every num_envs
            budget["gym sync"] = min(args.steps_budget, args.max_sync_steps)
        calls_by_name = {name: max(steps // num_envs, 20) for name, steps in budget.items()}
        results = time_interleaved(env_by_name, calls_by_name, num_envs, args.repeats)
        row = " ".join(f"{results[name]:>12,.0f}" for name in names)
        if compare:
            gym_best = max(value for name, value in results.items() if name != "minippo")
            row += f" {results['minippo'] / gym_best:>16.2f}x"
        print(f"{num_envs:>9} {row}")


if __name__ == "__main__":
    main()
