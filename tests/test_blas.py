"""kernels.cpu.blas.single_threaded: every BLAS library limited to one thread, and restored."""
import threadpoolctl

from numbanet.kernels.cpu import blas


def _blas_threads() -> dict:
    return {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"}


def test_single_threaded_limits_and_restores_blas_threads():
    before = _blas_threads()
    assert before, "no BLAS library loaded"
    with blas.single_threaded():
        assert set(_blas_threads().values()) == {1}
    assert _blas_threads() == before
