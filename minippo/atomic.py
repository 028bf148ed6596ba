"""Atomic file writes: a crash or a full disk never leaves a half-written file at the destination.

The content goes to a temporary file in the destination's directory, is flushed and fsynced, gets the
permissions a normal ``open(path, "w")`` would give (0666 minus the umask), and is then renamed over
the destination with ``os.replace`` -- atomic on POSIX and Windows.  Every file minippo saves
(checkpoints, tokenizers) goes through :func:`atomic_write`.

Nothing is left behind: the temporary file is removed on any exception, Ctrl-C included, and the
temporary files of the same destination that a killed process (SIGKILL, power loss) left behind are
removed by the next write of that destination.  An operating-system error (no permission, no space
left) names the destination, not the temporary file.
"""
import contextlib
import errno
import os
import re
import tempfile

WRITE_MODES = ("w", "wt", "wb")  # the modes whose file starts empty, as the temporary file does
TEMPORARY_NAME_PART = 64  # characters of the destination's name in the temporary file's name
TEMPORARY_SUFFIX = "[a-z0-9_]{8}"  # the random part tempfile.mkstemp adds


def temporary_prefix(path):
    """The start of the name of ``path``'s temporary files: ``.tmp-<name>-`` (64 characters of the name
    at most: all of it could be too long)."""
    return ".tmp-" + os.path.basename(path)[:TEMPORARY_NAME_PART] + "-"


def remove_stale_temporaries(path):
    """Remove the temporary files an interrupted write of ``path`` left in its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(temporary_prefix(path)) + TEMPORARY_SUFFIX + "$")
    for name in os.listdir(directory):
        if pattern.match(name):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:  # another process removed it first
                pass


def _current_umask():
    """The process's umask, which ``os.umask`` can only report by changing it.

    Linux shows it in ``/proc/self/status``, and reading it there changes nothing.  Elsewhere it is
    set to 0 and back, and a file another thread creates in that instant gets mode 0666 -- so that is
    only the fallback.  (Reading the umask once at import would be simpler, but wrong for a program
    that sets its umask later.)
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None, newline=None):
    """``with atomic_write(path) as file: ...`` writes ``path`` all at once or not at all.

    ``mode`` is one of ``"w"``, ``"wt"`` (text, with ``encoding`` and ``newline`` as for ``open``; the
    ``csv`` module wants ``newline=""``) or ``"wb"`` (bytes): the new file
    replaces the old one whole, so appending (``"a"``), reading (``"r"``, ``"+"``) or failing if the file
    exists (``"x"``) cannot be done this way.

    Because the destination is replaced rather than written into, the result differs from ``open(path,
    "w")`` when the destination is special:

    * a read-only destination is replaced (``open`` fails with PermissionError);
    * a symbolic link is replaced by a regular file; the file it pointed to is left as it was;
    * a file with several hard links stops being shared: the other names keep the old content;
    * missing parent directories are created.

    An ``OSError`` while writing (e.g. no space left on device) is raised again with ``path`` as its
    file name.
    """
    if mode not in WRITE_MODES:
        raise ValueError(f"mode must be one of {WRITE_MODES}, got {mode!r}")
    path = os.fsdecode(path)  # str, bytes or path-like -> str
    if os.path.isdir(path):  # os.replace would fail only at the end, naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = None

    def create_temporary(name, flags):
        # open() calls this only once it has accepted mode and encoding, and from then on the file
        # object owns the descriptor (it is closed even if open() fails after this point).
        nonlocal temporary
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=temporary_prefix(path))
        return handle

    try:
        with open(path, mode, encoding=encoding, newline=newline, opener=create_temporary) as file:
            os.chmod(temporary, 0o666 & ~_current_umask())
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.errno is not None and (
                error.filename is None or os.path.basename(os.fsdecode(error.filename)).startswith(
                    temporary_prefix(path))):  # name the file the user named, not the temporary one
            raise type(error)(error.errno, error.strerror, path) from error
        raise
