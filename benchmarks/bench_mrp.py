"""Benchmark ``MRP.solve`` on a large random sparse MRP and on a 2-D grid.

Run (about two minutes, ~2 GB of memory):

    python benchmarks/bench_mrp.py

or small and quick:

    python benchmarks/bench_mrp.py --states 100000 --grid 200

For each method it prints the wall time, the achieved relative residual
‖V − R − γPV‖∞ / ‖V‖∞, and the cost in matvec-equivalents: the solve time divided
by the median time of one product ``P @ v`` measured in the same run.

1. Random MRP: every state moves to ``--successors`` uniformly random states with random
   probabilities, γ = 0.99, no terminal states.  Such a graph is an expander: it mixes
   fast, so Krylov needs few iterations, but sparse LU fills in to a nearly dense matrix
   (10¹² entries for a million states), so "direct" is skipped.
2. Grid MRP: an n×n grid numbered row by row; each step moves to one of the 4 neighbours
   (bumping into a wall stays put), a few random cells are exits (terminal), every step
   costs −1, γ = 1: V(s) = −(expected number of steps to an exit).  The walk mixes
   slowly, so Krylov needs many iterations, while the grid's LU stays small: "auto"
   should pick "direct".  Value iteration is skipped: it needs a multiple of the
   expected exit time (hundreds of thousands) of sweeps.
"""
import argparse
import os
import time

# Single-threaded BLAS, like the sparse product it is compared with.  The Krylov solvers'
# vector operations are too small to gain from threads, and on a busy machine spinning
# OpenBLAS threads made them 10-20× slower.  Set OPENBLAS_NUM_THREADS to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the BLAS setting)
import scipy.sparse  # noqa: E402
from _options import checked, non_negative_int, positive_float, positive_int  # noqa: E402

from minippo.mrp import MRP  # noqa: E402

# The random MRP has no terminal states, so it needs γ < 1.
DISCOUNT = checked(float, lambda gamma: 0 <= gamma < 1, "a discount in [0, 1)")
EXIT_FRACTION = checked(float, lambda fraction: 0 < fraction < 1, "a fraction strictly between 0 and 1")


def random_mrp(n_states, n_successors, gamma, rng):
    successors = rng.integers(n_states, size=(n_states, n_successors))
    weights = rng.random((n_states, n_successors))
    weights /= weights.sum(axis=1, keepdims=True)
    indptr = np.arange(0, n_states * n_successors + 1, n_successors)
    P = scipy.sparse.csr_array((weights.ravel(), successors.ravel(), indptr), shape=(n_states, n_states))
    return MRP(P, rng.random(n_states), gamma)


def grid_mrp(n, exit_fraction, gamma, rng):
    S = n * n
    row, column = np.divmod(np.arange(S), n)
    targets = [
        np.clip(row + d_row, 0, n - 1) * n + np.clip(column + d_column, 0, n - 1)
        for d_row, d_column in [(1, 0), (-1, 0), (0, 1), (0, -1)]
    ]
    sources = np.tile(np.arange(S), 4)
    P = scipy.sparse.csr_array((np.full(4 * S, 0.25), (sources, np.concatenate(targets))), shape=(S, S))
    is_exit = np.zeros(S, dtype=bool)
    is_exit[rng.choice(S, size=max(1, int(exit_fraction * S)), replace=False)] = True
    P = (scipy.sparse.diags_array((~is_exit).astype(np.float64)) @ P).tocsr()  # exits have empty rows
    return MRP(P, -np.ones(S), gamma)


def matvec_seconds(P, repeats, rng):
    vector = rng.random(P.shape[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        P @ vector
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def report(title, mrp, methods, skipped, tol, repeats, rng):
    start = time.perf_counter()
    picked = mrp.auto_method()
    decide = time.perf_counter() - start
    matvec = matvec_seconds(mrp.P, repeats, rng)
    print(f"\n{title}")
    print(f"  {mrp.n_states:,} states, {mrp.P.nnz:,} transitions, γ = {mrp.gamma}; "
          f"one P @ v: {matvec * 1e3:.1f} ms (median of {repeats}); "
          f"auto picks {picked!r} (decided in {decide * 1e3:.1f} ms = {decide / matvec:.1f} matvecs)")
    print(f"  {'method':<10}  {'seconds':>8}  {'rel. residual':>13}  {'matvec-equivalents':>18}")
    scale = None
    for method in methods:
        # "iterative" guarantees an absolute error ‖V − V*‖∞ ≤ tol; ask for tol relative to ‖V‖∞.
        method_tol = tol * scale if method == "iterative" else tol
        start = time.perf_counter()
        values = mrp.solve(method, tol=method_tol)
        seconds = time.perf_counter() - start
        scale = scale or float(np.max(np.abs(values)))
        label = f"auto→{picked}" if method == "auto" else method
        print(f"  {label:<10}  {seconds:8.2f}  {mrp.residual(values):13.1e}  {seconds / matvec:18.0f}")
    for method, reason in skipped.items():
        print(f"  {method:<10}  skipped: {reason}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=positive_int, default=1_000_000,
                        help="states of the random MRP (default: 10⁶)")
    parser.add_argument("--successors", type=positive_int, default=10, help="successors per state (default: 10)")
    parser.add_argument("--gamma", type=DISCOUNT, default=0.99, help="discount of the random MRP (default: 0.99)")
    parser.add_argument("--grid", type=positive_int, default=500, help="side n of the n×n grid MRP (default: 500)")
    parser.add_argument("--exit-fraction", type=EXIT_FRACTION, default=1e-3,
                        help="fraction of grid exits (default: 0.001)")
    parser.add_argument("--tol", type=positive_float, default=1e-10, help="solver tolerance (default: 1e-10)")
    parser.add_argument("--repeats", type=positive_int, default=7,
                        help="timings of P @ v to take a median of (default: 7)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for the random MRPs (default: 0)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    mrp = random_mrp(args.states, args.successors, args.gamma, rng)
    print(f"random MRP built and validated in {time.perf_counter() - start:.1f} s")
    report(
        "Random sparse MRP",
        mrp,
        methods=["auto", "krylov", "iterative"],
        skipped={"direct": "sparse LU of a random graph fills in to a nearly dense factor (S² entries)"},
        tol=args.tol,
        repeats=args.repeats,
        rng=rng,
    )
    del mrp

    report(
        f"{args.grid}×{args.grid} grid MRP (exits at {args.exit_fraction:.2%} of cells, reward −1 per step)",
        grid_mrp(args.grid, args.exit_fraction, 1.0, rng),
        methods=["auto", "direct", "krylov"],
        skipped={"iterative": "needs a multiple of the expected exit time in sweeps"},
        tol=args.tol,
        repeats=args.repeats,
        rng=rng,
    )


if __name__ == "__main__":
    main()
