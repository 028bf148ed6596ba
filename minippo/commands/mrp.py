"""``minippo mrp``: solve a Markov reward process by every method and print the values side by side.

Without ``--file`` it solves the seed article's example, whose answer is
V(吃饭) = 6 + 0.8·(0.5·(3 + 0.8·10) + 0.5·(5 + 0.8·4)) = 13.68.
"""
import argparse
import json
import unicodedata

from minippo.commands import integer_option
from minippo.mrp import MRP
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
DEFAULT_EPISODES = 1000


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
    parser.set_defaults(func=run)


def run(args):
    if args.file is None:
        mrp = mrp_from_spec(SEED_EXAMPLE, "the seed example", gamma=args.gamma)
    else:
        mrp = mrp_from_spec(read_spec(args.file), args.file, gamma=args.gamma)
    print(value_table(mrp, n_episodes=args.episodes, seed=args.seed))
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


def value_table(mrp, n_episodes, seed):
    """The values by every solver and by Monte Carlo, one row per state, as aligned text."""
    solutions = {method: mrp.solve(method) for method in SOLVERS}
    estimate = mrp.monte_carlo(n_episodes, seed=seed)
    header = ["state", "reward", *SOLVERS, "Monte Carlo ± stderr"]
    rows = [
        [
            str(state),
            f"{mrp.R[i]:g}",
            *(f"{solutions[method][i]:.4f}" for method in SOLVERS),
            f"{estimate.values[i]:.4f} ± {estimate.stderr[i]:.4f}",
        ]
        for i, state in enumerate(mrp.states)
    ]
    rows.append(["residual", "", *(f"{mrp.residual(solutions[method]):.1e}" for method in SOLVERS), ""])
    return "\n".join(
        [
            f"V(s) = R(s) + γ Σ P(s'|s) V(s') with γ = {mrp.gamma:g}, {mrp.n_states} states; "
            f"auto uses {mrp.auto_method()}; Monte Carlo: {n_episodes} episodes per state, seed {seed}",
            "residual = ‖V − R − γPV‖∞ / ‖V‖∞",
            "",
            format_table(header, rows),
        ]
    )


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
