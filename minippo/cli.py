"""The ``minippo`` command line: one sub-command per capability.

Each sub-command lives in its own module under ``minippo/commands/`` and exposes
``register(subparsers)``, which adds an argparse parser whose ``func`` default is
the function that runs it.  ``main`` only wires them together.
"""
import argparse
import importlib
import os
import sys
import traceback
import warnings

import minippo
from minippo import distributed, runs
from minippo.commands.options import options_named, parser_options
from minippo.memory import freeze_imported_objects, keep_freed_memory

# Errors in what the user gave (options, files, paths, settings) end with exit status 2, as argparse's
# own usage errors do; every other failure with status 1.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
               FileExistsError, FloatingPointError, ImportError)
DEBUG_VARIABLE = "MINIPPO_DEBUG"  # MINIPPO_DEBUG=1: print the traceback of an error too

# The sub-commands that run data-parallel under ``mpiexec -n N`` (minippo.distributed); the others refuse to.
DATA_PARALLEL_COMMANDS = ("pretrain", "reward-model", "rlhf", "train-ppo")

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


def build_parser():
    """The ``minippo`` parser; ``parser.commands`` maps each sub-command's name to its parser."""
    parser = argparse.ArgumentParser(
        prog="minippo",
        description="Reinforcement learning from human feedback, from scratch in NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"minippo {minippo.__version__}")  # setup.cfg's too
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    parser.commands = subparsers.choices
    return parser


def main(argv=None):
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen sub-command.

    Returns the process exit status.  Every failure is one line on stderr, ``minippo <command>: error:
    ...``, never a traceback or a Python source line (a warning is one line too, ``minippo <command>:
    warning: ...``):

    - status 2 for the user's input and settings (``USER_ERRORS``): bad arguments and files, a missing
      file or directory, no permission, a missing optional dependency (gymnasium for a ``gymnasium:``
      environment), a run that diverges with the chosen learning rate; a setting is named as the option
      that sets it (``--n-head``, not ``n_head``: :func:`minippo.commands.options.options_named`);
    - status 1 for anything else: out of memory, the operating system failing (no space left on the
      device), or a bug, named by its exception type;
    - status 130 after a Ctrl-C that no training loop handles (``minippo.runs``: a loop writes a resumable
      checkpoint first), or a second one inside a loop, with the line ``minippo <command>: interrupted``.

    With the environment variable ``MINIPPO_DEBUG=1`` the traceback (and Python's usual warnings) is
    shown as well.

    Under ``mpiexec -n N`` (``minippo.distributed``) only rank 0 writes to stdout, and an error on any
    rank ends every rank (with that rank's message), so that none waits forever for the others.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = sys.argv[1:] if argv is None else list(argv)  # minippo.runs prints how to resume
    keep_freed_memory()  # large temporaries are reused instead of page-faulted in anew every step
    freeze_imported_objects()  # the garbage collector's full passes stop visiting the modules' objects
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    prefix = f"minippo {args.command}"
    world = distributed.LOCAL
    formatwarning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = lambda message, category, *where, **line: f"{prefix}: warning: {one_line(message)}\n"
    try:
        if args.command not in DATA_PARALLEL_COMMANDS:  # N copies would repeat the work and race to write
            distributed.require_one_process(f"minippo {args.command}", "The commands that run data-parallel "
                                            f"are {', '.join(DATA_PARALLEL_COMMANDS)} (docs/mpi.md).")
        world = distributed.world()
        if not world.is_root:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        status = args.func(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr, flush=True)
        return stop(world, runs.INTERRUPTED_STATUS)
    except Exception as error:  # every failure becomes one line; MINIPPO_DEBUG=1 shows the traceback too
        if debug:
            traceback.print_exc()
        rank = f" (rank {world.rank} of {world.size})" if world.size > 1 else ""
        message = error_message(error)
        if not message.startswith(f"{getattr(args, 'config', None)}: "):  # (a --config file's names its keys)
            message = options_named(message, parser_options(parser.commands[args.command]))
        print(f"{prefix}: error{rank}: {message}", file=sys.stderr, flush=True)
        return stop(world, 2 if isinstance(error, USER_ERRORS) else 1)
    finally:
        warnings.formatwarning = formatwarning
    return 0 if status is None else status


def error_message(error):
    """The one line that reports ``error``: its message for the user's errors and the operating system's,
    "out of memory (...)" for ``MemoryError``, its type and message (and how to see the traceback) for
    anything unexpected."""
    message = one_line(error)
    if isinstance(error, USER_ERRORS):
        return message
    if isinstance(error, MemoryError):
        return f"out of memory ({message or 'MemoryError'}); choose smaller sizes"
    if isinstance(error, OSError):
        return message
    return f"internal error, {type(error).__name__}: {message} (set {DEBUG_VARIABLE}=1 to see the traceback)"


def one_line(message):
    """``message`` as text on one line: its lines joined by "; "."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def stop(world, status):
    """``status``, after ending every rank of an MPI job with it (a lone process just returns it)."""
    if world.size > 1:
        world.abort(status)
    return status
