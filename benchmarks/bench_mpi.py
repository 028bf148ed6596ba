"""Data-parallel scaling with MPI: throughput at N = 1 and N = 2 ranks, and a cost model for many machines.

Run (from the repository root, with ``pip install ".[mpi]"``)::

    python benchmarks/bench_mpi.py                          # all workloads, N = 1 and 2
    python benchmarks/bench_mpi.py --workloads cartpole --ranks 1 2 4

Each measurement is a fresh ``mpiexec -n N`` of this script (``--worker``), with one BLAS thread and
one minippo thread per rank (N ranks x 1 thread = the cores used), on a fixed *global* batch, so that
N ranks do the same work as one (strong scaling):

* **cartpole** -- PPO on CartPole-v1 with 128 environments (2 x 64) x 128 steps per update, 4 epochs of
  4 minibatches (16 optimiser steps per update); environment steps/s over updates 2..n.
* **pendulum** -- PPO on Pendulum-v1 with 16 environments x 128 steps, 10 epochs of 32 minibatches
  (320 optimiser steps per update); environment steps/s.
* **pretrain-M** -- GPT pretraining at config M of ``bench_gpt.py`` (V 2048, C 256, 6 layers, 8 heads,
  T 256, batch 8 documents of T + 1 tokens); tokens/s over steps 2..n.

Speed-up = rate(N) / rate(1); parallel efficiency = speed-up / N.  The worker also times the
``Allreduce`` calls (``World.average_gradients``: communication plus waiting for the slowest rank).

**Cost model** (printed from the N = 1 measurements): per optimiser step every rank sends and receives
the flat gradient buffer (parameters x 4 bytes in float32); a ring allreduce moves 2 (N − 1) / N of it
through each link, so at bandwidth W one update spends  t_comm(N) = steps · 2 (N − 1)/N · bytes / W,
latency not counted.  Compute splits N ways: t(N) = t_1 / N + t_comm(N), efficiency t_1 / (N t(N)).
The table gives t_comm at 10 and 100 Gbit/s and the largest N whose efficiency stays above 80%
(and at most the number of environments or documents per update, past which there is nothing to split).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from _options import positive_int

WORKLOADS = ("cartpole", "pendulum", "pretrain-M")
GBIT = 1e9 / 8  # bytes/s in one Gbit/s
EFFICIENCY = 0.8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--ranks", type=positive_int, nargs="+", default=[1, 2], help="rank counts (default: 1 2)")
    parser.add_argument("--updates", type=positive_int, default=6,
                        help="PPO updates / pretraining steps timed per run, after one warm-up (default: 6)")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the workers (run under mpiexec) ----------------------------------------------------------------
def timed_allreduce(world):
    """Wrap ``world.average_gradients`` to add up the seconds spent in it; returns the running total."""
    spent = [0.0]
    average = world.average_gradients

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = average(*args, **kwargs)
        spent[0] += time.perf_counter() - started
        return result

    world.average_gradients = timed
    return spent


def ppo_worker(workload, updates):
    from minippo.rl.ppo import Trainer
    from minippo.rl.ppo_config import PPOConfig

    if workload == "cartpole":
        config = PPOConfig(num_envs=128, num_steps=128, total_steps=128 * 128 * (updates + 1))
    else:
        config = PPOConfig(env_id="Pendulum-v1", num_envs=16, num_steps=128, total_steps=16 * 128 * (updates + 1),
                           num_minibatches=32, update_epochs=10, ent_coef=0.0, normalize_obs=True,
                           normalize_reward=True, learning_rate=3e-4)
    trainer = Trainer(config)
    spent, marks = timed_allreduce(trainer.world), []
    trainer.train(lambda trainer, stats: marks.append((time.perf_counter(), stats["global_step"], spent[0])))
    (t0, step0, comm0), (t1, step1, comm1) = marks[0], marks[-1]
    params = sum(value.size for value in trainer.agent.params.values())
    return {"rate": (step1 - step0) / (t1 - t0), "unit": "env steps/s", "update_seconds": (t1 - t0) / updates,
            "allreduce_seconds": (comm1 - comm0) / updates, "params": params,
            "steps_per_update": config.update_epochs * config.num_minibatches, "split_limit": config.num_envs}


def pretrain_worker(updates):
    import numpy as np

    from minippo.distributed import world
    from minippo.nn.gpt import GPT, GPTConfig
    from minippo.pretrain import PretrainConfig, pretrain

    V, C, L, H, T, B = 2048, 256, 6, 8, 256, 8
    rng = np.random.default_rng(0)
    documents = [rng.integers(0, V, T + 1) for _ in range(64)]
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C), seed=0)
    config = PretrainConfig(steps=updates + 1, batch_size=B, log_every=1, checkpoint_every=10 ** 6)
    spent, marks = timed_allreduce(world()), []

    def log(line):
        marks.append((time.perf_counter(), spent[0]))

    pretrain(model, documents, config, log=log)
    if not world().is_root:
        return None
    (t0, comm0), (t1, comm1) = marks[0], marks[-1]
    return {"rate": B * T * updates / (t1 - t0), "unit": "tokens/s", "update_seconds": (t1 - t0) / updates,
            "allreduce_seconds": (comm1 - comm0) / updates, "params": model.num_parameters(),
            "steps_per_update": 1, "split_limit": B}


def worker(args):
    from minippo import parallel
    from minippo.blas import blas_threads
    from minippo.distributed import world

    parallel.set_num_threads(1)
    with blas_threads(1):
        result = ppo_worker(args.worker, args.updates) if args.worker != "pretrain-M" else \
            pretrain_worker(args.updates)
    if world().is_root:
        print("RESULT " + json.dumps({**result, "ranks": world().size}), flush=True)


# -- the driver --------------------------------------------------------------------------------------
def measure(workload, ranks, updates):
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if mpiexec is None:
        sys.exit('mpiexec not found: pip install ".[mpi]"')
    command = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", workload, "--updates", str(updates)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode or not lines:
        sys.exit(f"{workload} on {ranks} ranks failed:\n{completed.stderr}")
    return json.loads(lines[0][len("RESULT "):])


def ring_seconds(result, ranks, gbits):
    """Allreduce seconds per update at ``gbits`` Gbit/s for ``ranks`` ranks (ring, bandwidth term only)."""
    bytes_per_step = 4 * result["params"]
    return result["steps_per_update"] * 2 * (ranks - 1) / ranks * bytes_per_step / (gbits * GBIT)


def max_ranks(result, gbits):
    """The largest N (up to the split limit) whose modelled efficiency stays above EFFICIENCY."""
    compute, best = result["update_seconds"], 1
    for ranks in range(2, result["split_limit"] + 1):
        if compute / ranks / (compute / ranks + ring_seconds(result, ranks, gbits)) < EFFICIENCY:
            break
        best = ranks
    return best


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} cores (load average {load}); one thread per rank; {args.updates} timed updates "
          f"after one warm-up")
    print(f"{'workload':12s} {'N':>3s} {'rate':>14s} {'speed-up':>9s} {'efficiency':>10s} "
          f"{'s/update':>9s} {'allreduce+wait':>15s}")
    singles = {}
    for workload in args.workloads:
        for ranks in args.ranks:
            result = measure(workload, ranks, args.updates)
            single = singles.setdefault(workload, result)
            speedup = result["rate"] / single["rate"]
            print(f"{workload:12s} {ranks:3d} {result['rate']:10,.0f} {result['unit'].split()[0]:>3s} "
                  f"{speedup:8.2f}x {speedup / ranks:9.0%} {result['update_seconds']:9.3f} "
                  f"{result['allreduce_seconds']:13.4f} s", flush=True)
    print("\ncost model (ring allreduce, bandwidth only; compute time per update measured at N = 1):")
    print(f"{'workload':12s} {'params':>10s} {'bytes/step':>11s} {'steps/update':>12s} {'compute s':>10s} "
          f"{'comm@10G':>9s} {'comm@100G':>10s} {'N>80%@10G':>10s} {'N>80%@100G':>11s}")
    for workload, result in singles.items():
        print(f"{workload:12s} {result['params']:10,d} {4 * result['params']:11,d} {result['steps_per_update']:12d} "
              f"{result['update_seconds']:10.3f} {ring_seconds(result, 2 ** 20, 10):9.4f} "
              f"{ring_seconds(result, 2 ** 20, 100):10.5f} {max_ranks(result, 10):10d} {max_ranks(result, 100):11d}")
    limits = ", ".join(f"{workload} {result['split_limit']}" for workload, result in singles.items())
    print(f"(comm columns at large N; N is capped at the environments or documents per update: {limits})")


if __name__ == "__main__":
    main()
