"""``minippo mrp``: solve a Markov reward process by every method and print the values side by side.

Without ``--file`` it solves the seed article's example, whose answer is
V(吃饭) = 6 + 0.8·(0.5·(3 + 0.8·10) + 0.5·(5 + 0.8·4)) = 13.68.
"""
import argparse
import json
import math
import time
import unicodedata
import warnings

from minippo.commands import integer_option
from minippo.mrp import MRP
from minippo.mrp.monte_carlo import NEGLIGIBLE_TAIL_WEIGHT, default_max_steps
from minippo.progress import Progress, format_duration
from minippo.sizes import check_memory, lu_memory
from minippo.text.files import read_text, unique_keys

SPEC_FORMAT = """\
spec.json format (the arguments of MRP.from_dict):
  {
    "gamma": 0.8,
    "rewards":     {"吃饭": 6, "喝酒": 3, "喝茶": 5, "醉": 10, "醒": 4},
    "transitions": {"吃饭": {"喝酒": 0.5, "喝茶": 0.5}, "喝酒": {"醉": 1}, "喝茶": {"醒": 1}}
  }
transitions[s][s2] is the probability P(s2|s) of moving from s to s2; each state's
probabilities sum to 1.  A state with no outgoing transitions is terminal: its
reward is collected and the episode ends.  Every state needs a reward.  "gamma"
(the discount, in [0, 1]) may be left out when --gamma is given."""

# The seed article's example: eat (吃饭), then drink wine (喝酒) and end up drunk (醉),
# or drink tea (喝茶) and end up sober (醒).
SEED_EXAMPLE = {
    "gamma": 0.8,
    "rewards": {"吃饭": 6, "喝酒": 3, "喝茶": 5, "醉": 10, "醒": 4},
    "transitions": {"吃饭": {"喝酒": 0.5, "喝茶": 0.5}, "喝酒": {"醉": 1.0}, "喝茶": {"醒": 1.0}},
}
SOLVERS = ("direct", "iterative", "krylov", "auto")
MONTE_CARLO = "monte-carlo"
DEFAULT_EPISODES = 1000
DEFAULT_TIME_LIMIT = 60.0  # seconds each of iterative and Monte Carlo may run before they stop and say so
PROGRESS_INTERVAL = 10.0  # seconds between progress lines of a slow method


def register(subparsers):
    parser = subparsers.add_parser(
        "mrp",
        help="solve a Markov reward process by every method (default: the seed example)",
        description="Solve V(s) = R(s) + γ Σ P(s'|s) V(s') by every method (direct LU, certified "
        "value iteration, Krylov, auto) and by Monte Carlo, and print the values side by side. "
        "Without --file, solves the seed article's example (V(吃饭) = 13.68).",
        epilog=SPEC_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--file", metavar="SPEC.json", help="solve the MRP in this JSON file (format below)")
    parser.add_argument("--gamma", type=float, help="discount γ in [0, 1], overriding the example's or file's")
    parser.add_argument(
        "--episodes",
        type=integer_option(2),
        default=DEFAULT_EPISODES,
        help=f"Monte Carlo episodes started from each state, at least 2 for a standard error "
        f"(default: {DEFAULT_EPISODES})",
    )
    parser.add_argument("--seed", type=integer_option(0), default=0,
                        help="seed for the Monte Carlo estimate (default: 0)")
    parser.add_argument("--methods", type=method_list, default=(*SOLVERS, MONTE_CARLO), metavar="M1,M2,...",
                        help=f"the methods to run, comma-separated, among {', '.join((*SOLVERS, MONTE_CARLO))} "
                        "(default: all)")
    parser.add_argument("--max-sweeps", type=integer_option(1),
                        help="stop value iteration after this many sweeps, and say so (default: no limit)")
    parser.add_argument("--time-limit", type=positive_seconds, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                        help="stop value iteration, and Monte Carlo after the episodes done so far, after this long, "
                        f"and say so in the output (default: {DEFAULT_TIME_LIMIT:g})")
    parser.set_defaults(func=run)


def method_list(text):
    """argparse type of --methods: the chosen methods in the table's order, each named once."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    known = (*SOLVERS, MONTE_CARLO)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected methods among {', '.join(known)}, got {text!r}")
    return tuple(name for name in known if name in chosen)


def positive_seconds(text):
    """argparse type of --time-limit: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def run(args):
    source = "the seed example" if args.file is None else args.file
    mrp = mrp_from_spec(SEED_EXAMPLE if args.file is None else read_spec(args.file), source, gamma=args.gamma)
    try:
        table = value_table(mrp, n_episodes=args.episodes, seed=args.seed, methods=args.methods,
                            max_sweeps=args.max_sweeps, time_limit=args.time_limit,
                            log=lambda line: print(line, flush=True))
    except FloatingPointError as error:
        raise FloatingPointError(f"{source}: {error}") from None
    print(table)
    return 0


def run_example(seed=0):
    """Print the seed example's table (used by ``minippo demo``)."""
    mrp = mrp_from_spec(SEED_EXAMPLE, "the seed example")
    print(value_table(mrp, n_episodes=DEFAULT_EPISODES, seed=seed))
    return 0


def read_spec(path):
    """The parsed JSON of ``path``; errors name the file and the problem."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read the file ({error.strerror})") from None
    try:
        return json.loads(text, object_pairs_hook=unique_keys(path))  # a repeated key is an error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def mrp_from_spec(spec, source, gamma=None):
    """Build the MRP a spec dict describes (see SPEC_FORMAT); ``gamma`` overrides the spec's.

    Errors are re-raised with ``source`` (the file name) in front.
    """
    expected = '"gamma", "rewards" and "transitions"'
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: expected a JSON object with keys {expected}; got {type(spec).__name__}")
    for key in spec:
        if key not in ("gamma", "rewards", "transitions"):
            raise ValueError(f"{source}: unexpected key {key!r}; expected the keys {expected}")
    for key in ("rewards", "transitions") if gamma is not None else ("gamma", "rewards", "transitions"):
        if key not in spec:
            raise ValueError(f"{source}: missing key {key!r}; expected the keys {expected}")
    try:
        return MRP.from_dict(spec["transitions"], spec["rewards"], spec["gamma"] if gamma is None else gamma)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{source}: {error}") from None


def value_table(mrp, n_episodes, seed, methods=(*SOLVERS, MONTE_CARLO), max_sweeps=None, time_limit=None,
                log=print):
    """The values by each of ``methods`` (``SOLVERS`` and ``MONTE_CARLO``), one row per state, as aligned text.

    Iterative and Monte Carlo stop at ``max_sweeps`` / ``time_limit`` seconds, printing progress
    through ``log`` every PROGRESS_INTERVAL seconds meanwhile; the notes below the table say where a
    method stopped, failed, or may be biased.
    """
    solvers = [method for method in methods if method in SOLVERS]
    solutions, notes = {}, []
    for method in solvers:
        try:
            solutions[method], note = solve_column(mrp, method, max_sweeps, time_limit, log)
        except RuntimeError as error:  # a Krylov solve that does not converge, an LU too large: no column values
            note = f"{method}: {error}"
        notes += [note] if note else []
    header = ["state", "reward", *solvers]
    rows = [[str(state), f"{mrp.R[i]:g}", *(f"{solutions[m][i]:.4f}" if m in solutions else "n/a"
                                            for m in solvers)] for i, state in enumerate(mrp.states)]
    residuals = ["residual", "", *(f"{mrp.residual(solutions[m]):.1e}" if m in solutions else "" for m in solvers)]
    description = f"with γ = {mrp.gamma:g}, {mrp.n_states} states"
    if "auto" in solvers:
        description += f"; auto uses {mrp.auto_method()}"
    if MONTE_CARLO in methods:
        header.append("Monte Carlo ± stderr")
        estimate, note, biased = monte_carlo_column(mrp, n_episodes, seed, time_limit, log)
        for row, value, stderr, cut in zip(rows, estimate.values, estimate.stderr, estimate.truncated):
            row.append(f"{value:.4f} ± {stderr:.4f}{' *' if biased and cut else ''}")
        residuals.append("")
        description += f"; Monte Carlo: {estimate.n_episodes} episodes per state, seed {seed}"
        notes += note
    rows.append(residuals)
    return "\n".join(
        [
            f"V(s) = R(s) + γ Σ P(s'|s) V(s') {description}",
            "residual = ‖V − R − γPV‖∞ / ‖V‖∞",
            "",
            format_table(header, rows),
            *notes,
        ]
    )


def solve_column(mrp, method, max_sweeps, time_limit, log):
    """``(values, note)``: the values by ``method``, and for value iteration stopped by a cap, a note saying so.

    A RuntimeError says why there are no values: BiCGSTAB did not converge, or "direct" was asked for on a
    P whose LU factors could fill in beyond the memory available (``minippo.sizes.lu_memory``)."""
    if method == "direct" and mrp.auto_method() != "direct":  # not small, not grid-like: LU may fill in
        try:
            check_memory(lu_memory, {}, {"n_states": mrp.n_states})
        except ValueError as error:
            raise RuntimeError(f"not run: {error} (auto uses {mrp.auto_method()})") from None
    if method != "iterative":
        return mrp.solve(method), None
    result = mrp.solve_iterative(max_sweeps=max_sweeps, watch=iteration_watch(time_limit, log))
    if result.converged:
        return result.values, None
    cap = f"--max-sweeps {max_sweeps}" if result.sweeps == max_sweeps else f"--time-limit {time_limit:g} s"
    return result.values, (f"iterative: stopped after {result.sweeps:,} sweeps ({cap}), with ‖V − V*‖∞ ≤ "
                           f"{result.error_bound:.2g}, not yet 1e-10")


def iteration_watch(time_limit, log):
    """The ``watch`` of value iteration: a progress line every PROGRESS_INTERVAL seconds, True after
    ``time_limit`` seconds."""
    started = last_line = time.perf_counter()

    def watch(sweeps, error_bound):
        nonlocal last_line
        now = time.perf_counter()
        if now - last_line >= PROGRESS_INTERVAL:
            last_line = now
            log(f"iterative: {sweeps:,} sweeps, ‖V − V*‖∞ ≤ {error_bound:.2g} (target 1e-10), "
                f"{format_duration(now - started)}")
        return time_limit is not None and now - started > time_limit

    return watch


def monte_carlo_column(mrp, n_episodes, seed, time_limit, log):
    """``(estimate, notes, biased)``: the Monte Carlo estimate (with progress and ETA, stopped at ``time_limit``),
    the notes on it, and whether episodes cut at max_steps bias it (their states are starred)."""
    progress = Progress(n_episodes, "Monte Carlo: episodes per state", log, interval=PROGRESS_INTERVAL)

    def watch(done):
        progress.update(done)
        return time_limit is not None and progress.elapsed() > time_limit

    with warnings.catch_warnings():  # truncation is noted under the table instead
        warnings.simplefilter("ignore", RuntimeWarning)
        estimate = mrp.monte_carlo(n_episodes, seed=seed, watch=watch)
    notes = []
    if estimate.n_episodes < n_episodes:
        notes.append(f"Monte Carlo: stopped after {estimate.n_episodes:,} of {n_episodes:,} episodes per state "
                     f"(--time-limit {time_limit:g} s)")
    cut, max_steps = int(estimate.truncated.sum()), default_max_steps(mrp.gamma)
    biased = cut > 0 and mrp.gamma**max_steps > NEGLIGIBLE_TAIL_WEIGHT  # else the cut tail is negligible
    if biased:
        notes.append(f"* {cut:,} episodes (of {estimate.n_episodes:,} per state) were still running after "
                     f"{max_steps:,} steps and were cut short: the starred estimates are biased")
    return estimate, notes, biased


def format_table(header, rows):
    """Columns separated by two spaces; the first left-aligned, the rest right-aligned.

    Widths count display columns, so CJK characters (two columns each) line up.
    """
    table = [header, *rows]
    widths = [max(display_width(row[column]) for row in table) for column in range(len(header))]
    rule = ["-" * width for width in widths]
    lines = []
    for row in [header, rule, *rows]:
        cells = [pad(cell, width, left=(column == 0)) for column, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def display_width(text):
    """Terminal columns ``text`` occupies: 2 for wide (CJK) characters, 1 otherwise."""
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def pad(text, width, left):
    padding = " " * (width - display_width(text))
    return text + padding if left else padding + text
