"""minippo.blas changes the BLAS thread count at run time; minippo.memory tunes the allocator."""
import mmap
import threading

import numpy as np
import pytest

from minippo import blas
from minippo.blas import blas_threads, get_blas_threads


@pytest.fixture
def openblas():
    """The thread count before the test; skips where no OpenBLAS is found."""
    before = get_blas_threads()
    if before is None:
        pytest.skip("NumPy is not linked against OpenBLAS here")
    return before


def test_blas_threads_sets_and_restores(openblas):
    before = openblas
    with blas_threads(1) as previous:
        assert previous == before
        assert get_blas_threads() == 1
    assert get_blas_threads() == before


@pytest.mark.parametrize("count", [0, -1, 1.5, True, 2 ** 31, 10 ** 20])
def test_blas_threads_rejects_bad_counts(count):
    with pytest.raises(ValueError, match="count"):
        with blas_threads(count):
            pass


def test_blas_threads_takes_numpy_integers(openblas):
    with blas_threads(np.int64(1)):
        assert get_blas_threads() == 1
    assert get_blas_threads() == openblas


def test_nested_blas_threads(openblas):
    with blas_threads(3):
        with blas_threads(1) as previous:
            assert previous == 3 and get_blas_threads() == 1
        assert get_blas_threads() == 3
    assert get_blas_threads() == openblas


def test_overlapping_blas_threads_in_two_threads(openblas):
    """Thread A enters, then B, then A exits first: B's count stays until B exits, then the count from
    before both comes back (not A's, as when each block restored what it found)."""
    a_entered, b_entered, a_exited = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def thread_a():
        with blas_threads(1):
            a_entered.set()
            b_entered.wait()
        a_exited.set()

    with blas_threads(3):  # the count in force before A and B
        thread = threading.Thread(target=thread_a)
        thread.start()
        a_entered.wait()
        with blas_threads(2):
            b_entered.set()
            a_exited.wait()
            seen["B alone"] = get_blas_threads()
        thread.join()
        seen["after both"] = get_blas_threads()
    assert seen == {"B alone": 2, "after both": 3}
    assert get_blas_threads() == openblas


def test_openblas_paths_read_the_whole_path():
    maps = [
        "7f0000000000-7f0000001000 r-xp 00000000 08:01 1234   /opt/my env/lib/libopenblas.so.0\n",
        "7f0000001000-7f0000002000 r--p 00001000 08:01 1234   /opt/my env/lib/libopenblas.so.0\n",
        "7f0000002000-7f0000003000 r-xp 00000000 08:01 99     /usr/lib/libscipy_openblas64_.so (deleted)\n",
        "7f0000003000-7f0000004000 rw-p 00000000 00:00 0\n",
        "7f0000004000-7f0000005000 r-xp 00000000 08:01 7      /usr/lib/libc.so.6\n",
    ]
    assert blas._openblas_paths(maps) == ["/opt/my env/lib/libopenblas.so.0"]


def test_mapped_files_that_are_not_loadable_openblas_are_skipped(tmp_path):
    """A file named like OpenBLAS but not a library, mapped under a path with a space, and one
    deleted after mapping: the scan must neither crash nor list them."""
    expected = blas._openblas_functions()
    directory = tmp_path / "with space"
    directory.mkdir()
    mappings = []
    for name in ("libopenblas-fake.so", "libopenblas-gone.so"):
        path = directory / name
        path.write_bytes(b"not a library" * 500)
        with open(path, "rb") as file:
            mappings.append(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    (directory / "libopenblas-gone.so").unlink()
    try:
        assert blas._openblas_functions() == expected
    finally:
        for mapping in mappings:
            mapping.close()


def test_keep_freed_memory_reports_whether_it_applied():
    import platform

    from minippo.memory import keep_freed_memory

    applied = keep_freed_memory()
    assert isinstance(applied, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied


def test_the_command_line_freezes_the_objects_alive_after_its_imports(monkeypatch, capsys):
    import gc

    from minippo import cli, memory

    calls = []
    monkeypatch.setattr(gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(len(gc.get_objects())))  # not this test process's
    memory.freeze_imported_objects()
    assert calls[0] == "collect" and calls[1] > 1000  # then the modules' objects, visited by full collections
    del calls[:2]
    monkeypatch.setattr(cli, "freeze_imported_objects", lambda: calls.append("cli"))
    assert cli.main(["mrp"]) == 0
    assert calls == ["cli"]
