"""minippo.blas changes the BLAS thread count at run time; minippo.memory tunes the allocator."""
import pytest

from minippo.blas import blas_threads, get_blas_threads


def test_blas_threads_sets_and_restores():
    before = get_blas_threads()
    if before is None:
        pytest.skip("NumPy is not linked against OpenBLAS here")
    with blas_threads(1) as previous:
        assert previous == before
        assert get_blas_threads() == 1
    assert get_blas_threads() == before


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_blas_threads_rejects_bad_counts(count):
    with pytest.raises(ValueError, match="count"):
        with blas_threads(count):
            pass


def test_keep_freed_memory_reports_whether_it_applied():
    import platform

    from minippo.memory import keep_freed_memory

    applied = keep_freed_memory()
    assert isinstance(applied, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied
