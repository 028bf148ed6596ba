"""Data-parallel scaling with MPI: throughput at N = 1 and N = 2 ranks, and a cost model for many machines.

Run (from the repository root, with ``pip install ".[mpi]"``)::

    python benchmarks/bench_mpi.py                          # all workloads, N = 1 and 2
    python benchmarks/bench_mpi.py --workloads cartpole --repeats 5 --split-wait
    python benchmarks/bench_mpi.py --workloads cartpole --ranks 1 2 4
    python benchmarks/bench_mpi.py --workloads cartpole --instructions --updates 3

Each measurement is a fresh ``mpiexec -n N`` of this script (``--worker``), with one BLAS thread and
one minippo thread per rank (N ranks x 1 thread = the cores used), on a fixed *global* batch, so that
N ranks do the same work as one (strong scaling):

* **cartpole** -- PPO on CartPole-v1 with 128 environments (2 x 64) x 128 steps per update, 4 epochs of
  4 minibatches (16 optimiser steps per update); environment steps/s over updates 2..n.
* **pendulum** -- PPO on Pendulum-v1 with 16 environments x 128 steps, 10 epochs of 32 minibatches
  (320 optimiser steps per update); environment steps/s.
* **pretrain-M** -- GPT pretraining at config M of ``bench_gpt.py`` (V 2048, C 256, 6 layers, 8 heads,
  T 256, batch 8 documents of T + 1 tokens); tokens/s over steps 2..n.

For every N > 1 it also runs **one rank's share alone** (one process with 1/N of the batch: 64 of the
128 environments, ...) and **N such shares at once** as independent processes without MPI.  That
splits the speed-up t_1 / t_N into three factors that say where the time goes:

    t_1 / t_N  =  t_1 / t_share   x   t_share / t_xN   x   t_xN / t_N
                  code: the work      machine: N busy       MPI: collectives and waiting for the
                  that does not       processes slow each   slowest rank at every one of them
                  shrink with the     other (shared caches,
                  batch (per-step     memory, clock; a busy
                  Python overhead)    machine's other jobs)

The worker times every collective of ``minippo.distributed`` (gradients, statistics, gathers, the
parameter check) and counts them.  With ``--split-wait`` each is preceded by a ``Barrier`` timed on its
own, separating *waiting* for the other ranks from the *transfer* itself, which depends far less on the
machine's load (the barrier adds a few microseconds per collective).

``--instructions`` (PPO workloads, needs valgrind; minutes per run) counts instructions per update
instead of timing: at N = 1, for one rank's share alone and per rank at N, each split into those run
inside MPI calls (transfer and busy waiting) and the rest.  Unlike times, the counts outside MPI do not
move with the machine's load, so they show what the ranks compute beyond one rank's share.

On a shared machine one measurement says little: ``--repeats R`` runs these four interleaved R times
(rotating their order) and reports the median and quartiles of the paired ratios and of the rates, each
run's line giving the load average it started at.

**Cost model** (printed from the N = 1 measurements): per optimiser step every rank sends and receives
the flat gradient buffer (parameters x 4 bytes in float32); a ring allreduce moves 2 (N − 1) / N of it
through each link, so at bandwidth W one update spends  t_comm(N) = steps · 2 (N − 1)/N · bytes / W,
latency not counted.  Compute splits N ways: t(N) = t_1 / N + t_comm(N), efficiency t_1 / (N t(N)).
The table gives t_comm at 10 and 100 Gbit/s and the largest N whose efficiency stays above 80%
(and at most the number of environments or documents per update, past which there is nothing to split).
"""
import argparse
import functools
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _options import positive_int

WORKLOADS = ("cartpole", "pendulum", "pretrain-M")
COLLECTIVES = ("average_gradients", "mean", "mean_std", "mean_std_groups", "mean_weight", "gather_rows",
               "gather_rows_each", "gather_list", "check_identical", "broadcast_")  # the World methods that communicate
GBIT = 1e9 / 8  # bytes/s in one Gbit/s
WORKER_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
EFFICIENCY = 0.8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--ranks", type=positive_int, nargs="+", default=[1, 2], help="rank counts (default: 1 2)")
    parser.add_argument("--updates", type=positive_int, default=6,
                        help="PPO updates / pretraining steps timed per run, after one warm-up (default: 6)")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="interleaved repeats of every run; medians are reported (default: 1)")
    parser.add_argument("--split-wait", action="store_true",
                        help="time a Barrier before every collective: waiting apart from transfer")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per update under valgrind instead of timing (PPO workloads; slow)")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--share", type=positive_int, default=1, help=argparse.SUPPRESS)  # 1/share of the batch
    args = parser.parse_args(argv)
    if args.instructions and not args.worker and "pretrain-M" in args.workloads:
        parser.error("--instructions counts the PPO workloads only: pass --workloads cartpole and/or pendulum")
    return args


# -- the workers (run under mpiexec) ----------------------------------------------------------------
def time_collectives(world, split_wait):
    """Wrap every collective of ``world`` to count it and add up its seconds (and, with ``split_wait``,
    those of a Barrier before it); returns the running totals {"calls", "seconds", "wait"}."""
    totals, depth = {"calls": 0, "seconds": 0.0, "wait": 0.0}, [0]

    def timed(method):
        def run(*args, **kwargs):
            if depth[0]:  # called by another collective (LOCAL.mean_std calls mean): counted there
                return method(*args, **kwargs)
            if split_wait and world.size > 1:
                started = time.perf_counter()
                world.comm.Barrier()
                totals["wait"] += time.perf_counter() - started
            started, depth[0] = time.perf_counter(), 1
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] = 0
                totals["seconds"] += time.perf_counter() - started
                totals["calls"] += 1
        return run

    for name in COLLECTIVES:
        if hasattr(world, name):  # (an older minippo, to compare with, may lack one)
            setattr(world, name, timed(getattr(world, name)))
    return totals


def per_update(marks, updates):
    """Seconds per update and the collectives' figures per update between the first and last mark."""
    (t0, first), (t1, last) = marks[0], marks[-1]
    return {"update_seconds": (t1 - t0) / updates,
            **{f"{name}_per_update": (last[name] - first[name]) / updates for name in first}}


def ppo_worker(workload, updates, share, split_wait, count_instructions):
    from minippo.rl.ppo import Trainer
    from minippo.rl.ppo_config import PPOConfig

    if workload == "cartpole":
        num_envs = 128 // share
        config = PPOConfig(num_envs=num_envs, num_steps=128, total_steps=num_envs * 128 * (updates + 1))
    else:
        num_envs = 16 // share
        config = PPOConfig(env_id="Pendulum-v1", num_envs=num_envs, num_steps=128,
                           total_steps=num_envs * 128 * (updates + 1), num_minibatches=32, update_epochs=10,
                           ent_coef=0.0, normalize_obs=True, normalize_reward=True, learning_rate=3e-4)
    trainer = Trainer(config)
    params = sum(value.size for value in trainer.agent.params.values())
    if count_instructions:
        trainer.train(lambda trainer, stats: True)  # stops after the warm-up update
        # the other ``updates``; callgrind --toggle-collect=functools_reduce counts only inside this call
        functools.reduce(lambda first, second: trainer.train(), [None, None])
        return {"params": params}
    totals, marks = time_collectives(trainer.world, split_wait), []
    trainer.train(lambda trainer, stats: marks.append((time.perf_counter(), dict(totals))))
    return {**per_update(marks, updates), "params": params, "items_per_update": config.batch_size,
            "unit": "env steps/s", "steps_per_update": config.update_epochs * config.num_minibatches,
            "split_limit": config.num_envs}


def pretrain_worker(updates, share, split_wait):
    import numpy as np

    from minippo.distributed import world
    from minippo.nn.gpt import GPT, GPTConfig
    from minippo.pretrain import PretrainConfig, pretrain

    V, C, L, H, T, B = 2048, 256, 6, 8, 256, 8 // share
    rng = np.random.default_rng(0)
    documents = [rng.integers(0, V, T + 1) for _ in range(64)]
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C), seed=0)
    config = PretrainConfig(steps=updates + 1, batch_size=B, log_every=1, checkpoint_every=10 ** 6)
    totals, marks = time_collectives(world(), split_wait), []
    pretrain(model, documents, config, log=lambda line: marks.append((time.perf_counter(), dict(totals))))
    if not world().is_root:  # only rank 0 logs
        return None
    return {**per_update(marks, updates), "params": model.num_parameters(), "items_per_update": B * T,
            "unit": "tokens/s", "steps_per_update": 1, "split_limit": B}


def worker(args):
    import minippo.cli  # noqa: F401 (the modules the command line has imported when it freezes them)
    from minippo import parallel
    from minippo.blas import blas_threads
    from minippo.distributed import world
    from minippo.memory import freeze_imported_objects, keep_freed_memory

    keep_freed_memory()  # as the command line does: without it a CartPole update pays ~6,000 page faults
    freeze_imported_objects()  # as the command line does: without it a full garbage collection takes ~12 ms
    parallel.set_num_threads(1)
    with blas_threads(1):
        result = ppo_worker(args.worker, args.updates, args.share, args.split_wait, args.instructions) \
            if args.worker != "pretrain-M" else pretrain_worker(args.updates, args.share, args.split_wait)
    if world().is_root:
        print("RESULT " + json.dumps({**result, "ranks": world().size}), flush=True)
    if args.instructions:  # under valgrind, Python's own exit after MPI's has crashed: end here
        if world().size > 1:
            world().comm.Barrier()
            world().MPI.Finalize()
        os._exit(0)


# -- the driver --------------------------------------------------------------------------------------
def worker_command(workload, args, ranks, share, tool=()):
    """The ``mpiexec -n ranks [tool...] python bench_mpi.py --worker ...`` command of one run."""
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if mpiexec is None:
        sys.exit('mpiexec not found: pip install ".[mpi]"')
    return [mpiexec, "-n", str(ranks), *tool, sys.executable, __file__, "--worker", workload, "--updates",
            str(args.updates), "--share", str(share)] + ["--split-wait"] * args.split_wait + \
        ["--instructions"] * args.instructions


def measure(workload, args, ranks=1, share=1, copies=1):
    """One run's result dict: ``ranks`` ranks on the whole batch, or one process on 1/``share`` of it;
    with ``copies`` > 1, that many such processes at once, independent (the slowest one's result)."""
    command = worker_command(workload, args, ranks, share)
    load = os.getloadavg()[0]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=WORKER_ENV)
                 for _ in range(copies)]
    results = []
    for process in processes:
        stdout, stderr = process.communicate()
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode or not lines:
            sys.exit(f"{workload} on {ranks} ranks failed:\n{stderr}")
        results.append(json.loads(lines[0][len("RESULT "):]))
    return {**max(results, key=lambda result: result["update_seconds"]), "load": load}


def count_instructions(workload, args, ranks=1, share=1):
    """Instructions per update of each rank, as (total, inside MPI calls) pairs: the worker under
    callgrind, counting only its ``args.updates`` updates after a warm-up one."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as folder:
        tool = [valgrind, "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
                f"--callgrind-out-file={folder}/callgrind.%p"]
        completed = subprocess.run(worker_command(workload, args, ranks, share, tool), check=False,
                                   capture_output=True, text=True, env=WORKER_ENV)
        if completed.returncode:
            sys.exit(f"{workload} on {ranks} ranks failed under valgrind:\n{completed.stderr[-3000:]}")
        return [callgrind_totals(path, args.updates) for path in sorted(glob.glob(f"{folder}/callgrind.*"))]


def callgrind_totals(path, updates):
    """(all instructions, those inside MPI calls) per update, from a callgrind output file: the latter
    the inclusive counts of MPI's entry points (``PMPI_*``, which MPI functions do not call)."""
    listing = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path], check=True,
                             capture_output=True, text=True).stdout
    total = in_mpi = 0
    for line in listing.splitlines():  # "  1,234 (12.3%)  file:function [object]"
        match = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S*)", line)
        if match is None:
            continue
        count, where = int(match.group(1).replace(",", "")), match.group(2)
        if where == "PROGRAM":
            total = count
        elif where.partition(":")[2].startswith("PMPI_"):
            in_mpi += count
    return total / updates, in_mpi / updates


def report_instructions(args):
    """``--instructions``: for each PPO workload, instructions per update at N = 1, for one rank's share
    alone and per rank at N, with the part spent inside MPI calls (transfer and busy waiting)."""
    print(f"instructions per update (valgrind --tool=callgrind; {args.updates} counted updates after one warm-up)")
    print(f"{'workload':11s} {'run':11s} {'per rank':>12s} {'in MPI calls':>12s} {'outside':>12s}")
    for workload in args.workloads:
        for label, ranks, share, copies in runs_of(args.ranks):
            if copies > 1:
                continue  # instructions do not depend on what else runs
            for rank, (total, in_mpi) in enumerate(count_instructions(workload, args, ranks, share)):
                name = label if ranks == 1 else f"{label} r{rank}"
                print(f"{workload:11s} {name:11s} {total / 1e6:11.1f}M {in_mpi / 1e6:11.1f}M "
                      f"{(total - in_mpi) / 1e6:11.1f}M", flush=True)


def runs_of(ranks_list):
    """The (label, ranks, share, copies) runs of one repeat: N = 1, then for each N > 1: one rank's share
    alone, N such shares at once as independent processes, and N ranks."""
    runs = [("N=1", 1, 1, 1)]
    for ranks in ranks_list:
        if ranks > 1:
            runs += [(f"1/{ranks} alone", 1, ranks, 1), (f"1/{ranks} x{ranks}", 1, ranks, ranks),
                     (f"N={ranks}", ranks, 1, 1)]
    return runs


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


def spread(values, digits=2, unit=""):
    """``median [lower-upper quartile]`` of ``values``, or the one value."""
    text = f"{statistics.median(values):.{digits}f}{unit}"
    if len(values) == 1:
        return text
    lower, _, upper = statistics.quantiles(values, n=4, method="inclusive")
    return f"{text} [{lower:.{digits}f}-{upper:.{digits}f}]"


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if 1 not in args.ranks:
        args.ranks = [1, *args.ranks]
    if args.instructions:
        return report_instructions(args)
    runs = runs_of(args.ranks)
    print(f"{os.cpu_count()} cores; one thread per rank; {args.updates} timed updates after one warm-up; "
          f"{args.repeats} interleaved repeat(s)" + ("; a timed Barrier before every collective" * args.split_wait))
    print(f"{'workload':11s} {'run':11s} {'load':>5s} {'rate':>18s} {'s/update':>9s} {'collectives':>11s} "
          f"{'in them':>9s} {'waiting':>9s}")
    results = {workload: {label: [] for label, *_ in runs} for workload in args.workloads}
    for repeat in range(args.repeats):
        for workload in args.workloads:
            rotated = runs[repeat % len(runs):] + runs[:repeat % len(runs)]  # pairs every order alike
            for label, ranks, share, copies in rotated:
                result = measure(workload, args, ranks, share, copies)
                results[workload][label].append(result)
                waiting = f"{result['wait_per_update']:8.4f}s" if args.split_wait and ranks > 1 else f"{'':9s}"
                rate = f"{result['items_per_update'] / result['update_seconds']:9,.0f} {result['unit']}"
                print(f"{workload:11s} {label:11s} {result['load']:5.1f} {rate:>18s} {result['update_seconds']:9.4f} "
                      f"{result['calls_per_update']:11.0f} {result['seconds_per_update']:8.4f}s {waiting}",
                      flush=True)
    print(f"\nmedian [quartiles] over {args.repeats} repeat(s) of the paired ratios: speed-up = code x machine x MPI")
    print(f"{'workload':11s} {'N':>3s} {'speed-up t_1/t_N':>22s} {'code t_1/t_share':>22s} "
          f"{'machine t_share/t_xN':>22s} {'MPI t_xN/t_N':>22s} {'collectives s/update':>21s}")
    for workload, by_label in results.items():
        def seconds(label):
            return [result["update_seconds"] for result in by_label[label]]

        def ratios(top, bottom):
            return spread([a / b for a, b in zip(seconds(top), seconds(bottom))], unit="x")

        for ranks in args.ranks[1:]:
            alone, at_once, many = f"1/{ranks} alone", f"1/{ranks} x{ranks}", f"N={ranks}"
            in_them = [result["seconds_per_update"] for result in by_label[many]]
            print(f"{workload:11s} {ranks:3d} {ratios('N=1', many):>22s} {ratios('N=1', alone):>22s} "
                  f"{ratios(alone, at_once):>22s} {ratios(at_once, many):>22s} {spread(in_them, 4):>21s}")
    print("\nrates, median [quartiles]:")
    for workload, by_label in results.items():
        print(f"{workload:11s} " + "; ".join(
            f"{label} {spread([r['items_per_update'] / r['update_seconds'] for r in by_label[label]], 0)}"
            for label in by_label) + f" ({by_label['N=1'][0]['unit']})")
    print("\ncost model (ring allreduce, bandwidth only; compute time per update: median at N = 1):")
    print(f"{'workload':12s} {'params':>10s} {'bytes/step':>11s} {'steps/update':>12s} {'compute s':>10s} "
          f"{'comm@10G':>9s} {'comm@100G':>10s} {'N>80%@10G':>10s} {'N>80%@100G':>11s}")
    for workload, by_label in results.items():
        result = {**by_label["N=1"][0],
                  "update_seconds": statistics.median(result["update_seconds"] for result in by_label["N=1"])}
        print(f"{workload:12s} {result['params']:10,d} {4 * result['params']:11,d} {result['steps_per_update']:12d} "
              f"{result['update_seconds']:10.3f} {ring_seconds(result, 2 ** 20, 10):9.4f} "
              f"{ring_seconds(result, 2 ** 20, 100):10.5f} {max_ranks(result, 10):10d} {max_ranks(result, 100):11d}")
    limits = ", ".join(f"{workload} {by_label['N=1'][0]['split_limit']}" for workload, by_label in results.items())
    print(f"(comm columns at large N; N is capped at the environments or documents per update: {limits})")


if __name__ == "__main__":
    main()
