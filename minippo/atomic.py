"""Atomic file writes: a crash or a full disk never leaves a half-written file at the destination.

The content goes to a temporary file in the destination's directory, is flushed and fsynced, gets the
permissions a normal ``open(path, "w")`` would give (0666 minus the umask), and is then renamed over
the destination with ``os.replace`` -- atomic on POSIX and Windows.  Every file minippo saves
(checkpoints, tokenizers) goes through :func:`atomic_write`.
"""
import contextlib
import os
import tempfile


def _current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """``with atomic_write(path) as file: ...`` writes ``path`` all at once or not at all."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-")
    try:
        os.chmod(temporary, 0o666 & ~_current_umask())
        with os.fdopen(handle, mode, encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
