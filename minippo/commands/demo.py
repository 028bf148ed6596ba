"""``minippo demo``: the README's main command.

Until the end-to-end RLHF pipeline lands it runs the Markov-reward-process
example from the seed article (V(吃饭) = 13.68) by every solver.
"""
from minippo.commands import mrp as mrp_command


def register(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo (for now: the seed article's MRP example)",
        description="Run the end-to-end demo. For now this solves the seed article's "
        "Markov reward process (吃饭 -> 喝酒/喝茶) by every method and prints the table.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the Monte Carlo estimate (default: 0)")
    parser.set_defaults(func=run)


def run(args):
    return mrp_command.run_example(seed=args.seed)
