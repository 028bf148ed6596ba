"""minippo.atomic.atomic_write: a file is replaced all at once or not at all.

(Its use by checkpoints -- no temporary file left behind, the file mode -- is tested in
test_optim_checkpoint.py.)
"""
import os
import stat

import pytest

from minippo import atomic
from minippo.atomic import atomic_write


@pytest.mark.parametrize("mode", ["r", "rb", "a", "ab", "x", "xb", "w+", "wb+", "r+b"])
def test_modes_other_than_writing_afresh_are_rejected(tmp_path, mode):
    path = tmp_path / "file"
    path.write_bytes(b"keep")
    with pytest.raises(ValueError, match="mode must be one of"):
        with atomic_write(path, mode):
            pass
    assert path.read_bytes() == b"keep"
    assert os.listdir(tmp_path) == ["file"]  # no temporary file was created


@pytest.mark.parametrize("mode, content", [("wb", b"new"), ("w", "new"), ("wt", "new")])
def test_write_modes_replace_the_file(tmp_path, mode, content):
    path = tmp_path / "file"
    path.write_bytes(b"old content")
    with atomic_write(path, mode) as file:
        file.write(content)
    assert path.read_bytes() == b"new"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("mode, encoding, error", [("wb", "utf-8", ValueError),
                                                    ("w", "no-such-codec", LookupError),
                                                    ("w", 5, TypeError)])
def test_a_rejected_encoding_leaks_no_descriptor_or_file(tmp_path, mode, encoding, error):
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(error):
        with atomic_write(tmp_path / "file", mode, encoding=encoding):
            pass
    assert len(os.listdir("/proc/self/fd")) == open_before
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_umask_is_read_without_changing_it(tmp_path, monkeypatch):
    """Setting the umask to 0 and back races with threads creating files; on Linux it is not needed."""
    try:
        with open("/proc/self/status") as status:
            if not any(line.startswith("Umask:") for line in status):
                pytest.skip("this kernel does not show the umask in /proc/self/status")
    except OSError:
        pytest.skip("no /proc/self/status")
    umask = os.umask(0o027)
    try:
        def refuse(mask):
            raise AssertionError(f"os.umask({mask:#o}) called")

        monkeypatch.setattr(atomic.os, "umask", refuse)
        with atomic_write(tmp_path / "file") as file:
            file.write(b"x")
    finally:
        monkeypatch.undo()
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "file").st_mode) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and links")
def test_documented_differences_from_open(tmp_path):
    read_only = tmp_path / "read-only"
    read_only.write_bytes(b"old")
    read_only.chmod(0o444)
    target, link = tmp_path / "target", tmp_path / "link"
    target.write_bytes(b"target")
    link.symlink_to(target)
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"shared")
    os.link(first, second)
    for path in (read_only, link, first, tmp_path / "new" / "dirs" / "file"):
        with atomic_write(path) as file:
            file.write(b"new")
    assert read_only.read_bytes() == b"new"
    assert not link.is_symlink() and link.read_bytes() == b"new" and target.read_bytes() == b"target"
    assert first.read_bytes() == b"new" and second.read_bytes() == b"shared"
    assert (tmp_path / "new" / "dirs" / "file").read_bytes() == b"new"


def test_a_name_at_the_length_limit_can_be_written(tmp_path):
    """The temporary file's name holds only the start of the destination's, so a destination whose
    name is as long as the file system allows (255 bytes on Linux) works as it does with open()."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    path = tmp_path / ("n" * limit)
    with atomic_write(path) as file:
        file.write(b"long")
    assert path.read_bytes() == b"long" and os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("kind", [str, bytes])
def test_str_and_bytes_paths_are_accepted_as_open_accepts_them(tmp_path, kind):
    name = "données.txt"  # not ASCII: bytes paths are the file system's encoding of the name
    path = str(tmp_path / name) if kind is str else os.fsencode(tmp_path / name)
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.write("écrit")
    assert (tmp_path / name).read_text(encoding="utf-8") == "écrit" and os.listdir(tmp_path) == [name]


def test_a_directory_at_the_destination_is_refused_before_writing(tmp_path):
    body_ran = []
    with pytest.raises(IsADirectoryError) as error:
        with atomic_write(tmp_path):
            body_ran.append(True)
    assert str(error.value) == f"[Errno 21] Is a directory: {str(tmp_path)!r}"  # not a temporary file's name
    assert body_ran == [] and os.listdir(tmp_path) == [] and not any(
        name.startswith(".tmp-") for name in os.listdir(tmp_path.parent))


def test_temporary_files_of_killed_writes_are_swept_by_the_next_write(tmp_path):
    """A write killed with SIGKILL cannot clean up; the next write of the same file does (and only
    touches that file's temporaries)."""
    path = tmp_path / "model.npz"
    stale = [tmp_path / ".tmp-model.npz-abcd_123", tmp_path / ".tmp-model.npz-zzzzzzzz"]
    others = [tmp_path / ".tmp-model.npz-b-abcd1234", tmp_path / ".tmp-other-abcd1234", tmp_path / "notes"]
    for leftover in stale + others:
        leftover.write_bytes(b"partial")
    with atomic_write(path) as file:
        file.write(b"whole")
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz"] + [p.name for p in others])


def test_an_interrupt_while_writing_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as file:
            file.write(b"half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["model.npz"] and path.read_bytes() == b"old"


def full_disk(descriptor):
    raise OSError(28, "No space left on device")


def read_only_directory(dir, prefix):  # noqa: A002 (tempfile's name)
    raise PermissionError(13, "Permission denied", os.path.join(dir, prefix + "abcd1234"))


@pytest.mark.parametrize("module, function, failure, message", [
    (atomic.os, "fsync", full_disk, "[Errno 28] No space left on device"),
    (atomic.tempfile, "mkstemp", read_only_directory, "[Errno 13] Permission denied")])
def test_os_errors_are_reported_as_such_naming_the_destination(tmp_path, monkeypatch, module, function, failure,
                                                               message):
    """As the file system reports them (monkeypatched: tests may run as root, whom permissions do not stop)."""
    monkeypatch.setattr(module, function, failure)
    path = tmp_path / "model.npz"
    with pytest.raises(OSError) as error:
        with atomic_write(path) as file:
            file.write(b"data")
    assert str(error.value) == f"{message}: {str(path)!r}"  # not the temporary file's name
    assert os.listdir(tmp_path) == []
