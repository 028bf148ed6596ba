"""The ``minippo`` command line: one sub-command per capability.

Each sub-command lives in its own module under ``minippo/commands/`` and exposes
``register(subparsers)``, which adds an argparse parser whose ``func`` default is
the function that runs it.  ``main`` only wires them together.
"""
import argparse
import importlib
import importlib.metadata
import os
import sys

import minippo
from minippo import distributed
from minippo.memory import keep_freed_memory

# Sub-command modules, in the order ``minippo --help`` lists them.
COMMAND_MODULES = [
    "minippo.commands.demo",
    "minippo.commands.grpo",
    "minippo.commands.mrp",
    "minippo.commands.pretrain",
    "minippo.commands.tokenizer",
    "minippo.commands.reward_model",
    "minippo.commands.rlhf",
    "minippo.commands.dpo",
    "minippo.commands.value",
    "minippo.commands.train_ppo",
    "minippo.commands.evaluate",
    "minippo.commands.generate",
    "minippo.commands.export",
]


def version():
    """The installed package's version (its metadata), or ``minippo.__version__`` when run from a source tree."""
    try:
        return importlib.metadata.version("minippo")
    except importlib.metadata.PackageNotFoundError:
        return minippo.__version__


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minippo",
        description="Reinforcement learning from human feedback, from scratch in NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"minippo {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv=None):
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen sub-command.

    Returns the process exit status.  Errors in user input (bad files, bad
    arguments), file-system errors (a missing file, a directory where a file
    should be, no permission), a missing optional dependency (gymnasium for a
    ``gymnasium:`` environment) and a diverging run are reported on stderr as
    ``minippo <command>: error: ...`` with status 2, not as a traceback.

    Under ``mpiexec -n N`` (``minippo.distributed``) only rank 0 writes to stdout, and an error on any
    rank ends every rank (with that rank's message), so that none waits forever for the others.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # large temporaries are reused instead of page-faulted in anew every step
    world = distributed.LOCAL
    try:
        world = distributed.world()
        if not world.is_root:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        status = args.func(args)
    except (ValueError, TypeError, OSError, FloatingPointError, ImportError) as error:
        rank = f" (rank {world.rank} of {world.size})" if world.size > 1 else ""
        print(f"minippo {args.command}: error{rank}: {error}", file=sys.stderr, flush=True)
        if world.size > 1:
            world.abort(2)
        return 2
    return 0 if status is None else status
