"""Single-threaded BLAS for the duration of a parallel kernel that calls BLAS itself.

The convolution kernels (``numbanet.kernels.cpu.conv``) call BLAS (``np.dot`` inside
``@njit``, which Numba routes to SciPy's BLAS) from every parallel iteration at once;
each call must then use one thread, or 2 iterations x 2 BLAS threads would fight over
2 cores.  threadpoolctl finds every BLAS library loaded in the process (SciPy's and
NumPy's copies of OpenBLAS with pip wheels, one shared library with conda, or MKL) and
sets, then restores, their thread counts: ~10 µs per call.
"""
from __future__ import annotations

from contextlib import contextmanager

import scipy.linalg.cython_blas  # noqa: F401  (loaded before the controller looks: Numba's np.dot uses it)
from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


@contextmanager
def single_threaded():
    """Run the block with every BLAS library in the process limited to one thread."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield
