"""Training runs that lose nothing: outputs checked before the work, no silent overwriting, and an
interrupt (Ctrl-C, or SIGTERM from a cluster scheduler) that ends with a resumable checkpoint.

A training command uses it in three places::

    def register(subparsers):
        ...
        runs.add_run_options(parser)            # --overwrite, --resume PATH, --save-every K, --keep K

    def run(args):
        runs.check_outputs(args, files=[(args.save, "--save")])  # before any work
        with runs.Interrupt() as interrupt:
            for step in range(start, steps):
                ...  # one step
                runs.save_periodic(save, args.save, step + 1, args.save_every, args.keep)
                if interrupt.any_rank(world):  # (a function's step loop: stop=interrupt.stop_after(world))
                    save(args.save)
                    return runs.interrupted(args, f"step {step + 1}", args.save)  # how to resume; 130
            save(args.save)  # (a Ctrl-C while saving waits for the checkpoint)

The rules:

* **Outputs are checked first.**  Every output path must be writable before training starts: its
  directory is created, and a directory where a file is expected (or a file where a directory is
  expected), or a directory the user may not write in, is an error naming the option.
* **No clobbering.**  An output that already exists belongs to an earlier run: the command refuses
  unless ``--overwrite`` (replace it) or ``--resume`` (continue that run) is given.  A ``--resume``
  path that does not exist is an error, never a fresh start.
* **Interrupts.**  Inside ``with Interrupt()``, the first SIGINT or SIGTERM only sets
  ``requested``: the loop finishes its current step, the command writes its checkpoint and
  :func:`interrupted` prints ``interrupted at <step>; resume with: <the command with --resume>``
  and returns the status 130 (128 + SIGINT, what shells report for Ctrl-C), with no traceback.
  A second signal stops at once (KeyboardInterrupt, which ``minippo.cli`` reports as
  ``minippo <command>: interrupted``, status 130).
* **Periodic checkpoints.**  ``--save-every K`` writes ``<name>.step<N><ext>`` beside the checkpoint
  every K steps (atomically, as every checkpoint) and keeps the last ``--keep`` of them
  (:func:`save_periodic`); each one can be given to ``--resume``.
"""
import os
import re
import shlex
import signal
import sys
import threading

import numpy as np

from minippo import distributed

DEFAULT_KEEP = 3
INTERRUPTED_STATUS = 130  # 128 + SIGINT: what a shell reports for a program ended by Ctrl-C
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_run_options(parser, resume=True, periodic=True, unit="updates"):
    """Add ``--overwrite`` and, with ``resume``, ``--resume PATH``; with ``periodic``, ``--save-every K``
    (K ``unit``, e.g. "iterations") and ``--keep K``."""
    from minippo.commands import integer_option  # (the command-line layer; the rest of this module is not)

    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier run (by default an existing output is an error)")
    if resume:
        parser.add_argument("--resume", metavar="CHECKPOINT",
                            help="continue the run saved in this checkpoint (written at the end, on Ctrl-C or by "
                                 "--save-every); with the same options the result is bit-identical")
    if periodic:
        parser.add_argument("--save-every", type=integer_option(1), metavar="K",
                            help=f"also write a resumable checkpoint NAME.stepN.npz every K {unit} (default: off)")
        parser.add_argument("--keep", type=integer_option(1), default=DEFAULT_KEEP, metavar="K",
                            help=f"periodic checkpoints kept, the latest (default: {DEFAULT_KEEP})")


# -- outputs -----------------------------------------------------------------------------------------

def check_writable_directory(directory, option, path):
    """Create ``directory`` (with its parents) and check that files can be written in it."""
    existing = directory
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if existing and not os.path.isdir(existing):
        raise ValueError(f"{option} {path}: {existing} is a file, not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot create the directory {directory} ({error.strerror})") from error
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot write in the directory {directory} (permission denied)")


def check_output_file(path, option):
    """``path`` can be written as a file: it is not a directory and its directory is writable (created)."""
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a directory, not a file")
    check_writable_directory(os.path.dirname(os.path.abspath(path)), option, path)


def check_output_directory(path, option):
    """``path`` is (or is created as) a directory files can be written in."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path} is a file, not a directory")
    check_writable_directory(os.path.abspath(path), option, path)


def check_outputs(args, files=(), directories=(), run_files=(), flag_checkpoint=None):
    """Check every output before the work (see the module docstring); raise ValueError naming the option.

    ``files`` and ``directories`` are ``(path, option)`` pairs (a None path is skipped); ``run_files``
    are ``(path, option)`` of files written inside the directory an option names.  An existing output file, or a
    periodic checkpoint of one, is an error unless ``args.overwrite`` or ``args.resume``; with
    ``args.overwrite`` the periodic checkpoints of the earlier run are removed.  ``args.resume`` must
    name an existing checkpoint file -- or, for a command whose ``--resume`` is a flag, the checkpoint it
    continues, ``flag_checkpoint``, must exist.
    """
    files = [(path, option) for path, option in files if path]
    for path, option in directories:
        check_output_directory(path, option)
    for path, option in files:
        check_output_file(path, option)
    resume = getattr(args, "resume", None)
    if resume is True and not os.path.exists(flag_checkpoint):  # pretrain's --resume: continue OUT/model.npz
        raise ValueError(f"--resume: {flag_checkpoint} does not exist (to start a new run, leave out --resume)")
    if isinstance(resume, str):
        if not os.path.exists(resume):
            raise ValueError(f"--resume {resume}: no such checkpoint (to start a new run, leave out --resume)")
        if os.path.isdir(resume):
            raise ValueError(f"--resume {resume} is a directory, not a checkpoint file")
    if resume or getattr(args, "overwrite", False):
        if getattr(args, "overwrite", False) and not resume:
            for path, _ in [*files, *run_files]:
                for old in periodic_checkpoints(path):
                    os.unlink(old)
        return
    for path, option, where in [*((path, option, path) for path, option in files),
                                *((path, option, os.path.dirname(path)) for path, option in run_files)]:
        earlier = [path] if os.path.exists(path) else periodic_checkpoints(path)[-1:]
        if earlier:
            raise ValueError(f"{option} {where}: {earlier[0]} exists (from an earlier run); pass --overwrite to "
                             f"replace it, or --resume CHECKPOINT to continue that run")


def check_same_settings(saved, current, resumable, checkpoint_path):
    """Raise ValueError listing every setting of the dict ``current``, other than the names in
    ``resumable``, that differs from the dict ``saved`` (a checkpoint's)."""
    differences = [f"{name}: checkpoint {saved.get(name)!r}, now {value!r}" for name, value in current.items()
                   if name not in resumable and saved.get(name) != value]
    if differences:
        allowed = f"only {', '.join(resumable)} may change" if resumable else "a resumed run keeps them all"
        raise ValueError(f"checkpoint {checkpoint_path!r} was trained with other settings ("
                         + "; ".join(differences) + f"); {allowed}")


# -- periodic checkpoints ----------------------------------------------------------------------------

def periodic_path(path, step):
    """``runs/model.npz`` at step 40 -> ``runs/model.step40.npz``."""
    root, extension = os.path.splitext(path)
    return f"{root}.step{step}{extension}"


def periodic_checkpoints(path):
    """The periodic checkpoints of ``path`` that exist, oldest (smallest step) first."""
    directory, name = os.path.split(os.path.abspath(path))
    root, extension = os.path.splitext(name)
    pattern = re.compile(re.escape(root) + r"\.step(\d+)" + re.escape(extension) + "$")
    if not os.path.isdir(directory):
        return []
    found = [(int(match.group(1)), os.path.join(os.path.dirname(path), name_found))
             for name_found in os.listdir(directory) if (match := pattern.match(name_found))]
    return [found_path for _, found_path in sorted(found)]


def save_periodic(save, path, step, every, keep):
    """Every ``every`` steps (``every`` None: never), ``save(periodic_path(path, step))`` and remove all
    but the last ``keep`` periodic checkpoints of ``path``.  Returns the path written, or None."""
    if not every or step % every:
        return None
    written = periodic_path(path, step)
    save(written)
    for old in periodic_checkpoints(path)[:-keep]:
        os.unlink(old)
    return written


# -- interrupts --------------------------------------------------------------------------------------

class Interrupt:
    """``with Interrupt() as interrupt:`` -- the first SIGINT or SIGTERM sets ``interrupt.requested``
    (``interrupt.signal`` names it) instead of ending the process; a second one raises
    KeyboardInterrupt.  The previous handlers are restored on exit.  Outside the main thread
    (where Python cannot handle signals) it does nothing."""

    def __init__(self):
        self.signal = None
        self.stopped_at = None  # the step a stop() of stop_after ended training at
        self._previous = {}

    @property
    def requested(self):
        return self.signal is not None

    def any_rank(self, world):
        """Whether any rank of ``world`` (``minippo.distributed``) was interrupted -- a collective call, so
        that under MPI every rank stops after the same step (one buffer allreduce, no pickling: it runs
        after every step)."""
        return world.mean(np.array([float(self.requested)])) > 0

    def stop_after(self, world):
        """``stop(steps_done)`` for a training loop: true once any rank of ``world`` was interrupted (a
        collective call); the step it first says so is kept as ``stopped_at``."""
        def stop(step):
            if self.stopped_at is None and self.any_rank(world):
                self.stopped_at = step
            return self.stopped_at is not None

        return stop

    def _handle(self, number, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number).name
        print(f"\n{self.signal}: stopping after this step (again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in HANDLED_SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def resume_command(args, checkpoint, ranks=1):
    """The command line that continues this run: the one given, without ``--overwrite`` and any
    ``--resume``, plus ``--resume CHECKPOINT`` (or ``--resume`` alone for a command whose --resume is a
    flag, when ``checkpoint`` is None); launched on as many MPI ``ranks`` as it ran on."""
    words = list(getattr(args, "command_line", None) or sys.argv[1:])
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == "--resume" and checkpoint is not None:
            skip = True  # its value follows
        elif word not in ("--overwrite", "--resume") and not word.startswith("--resume="):
            kept.append(word)
    kept += ["--resume"] + ([checkpoint] if checkpoint is not None else [])
    launcher = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    return shlex.join([*launcher, "minippo", *kept])


def interrupted(args, where, checkpoint, flag=False):
    """Print ``interrupted at <where>; resume with: <command>`` and return the exit status 130.

    ``checkpoint`` is where the resumable state was written (None: train-ppo without --save); ``flag``
    means the command's ``--resume`` takes no path (pretrain)."""
    if checkpoint is None:
        print(f"interrupted at {where}; nothing was saved (a run is resumable with --save PATH)", flush=True)
    else:
        command = resume_command(args, None if flag else checkpoint, distributed.world().size)
        print(f"wrote {checkpoint}\ninterrupted at {where}; resume with: {command}", flush=True)
    return INTERRUPTED_STATUS
