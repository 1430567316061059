"""Numba CPU kernels.  Each module matches a layer module of the same name in ``numbanet``
and a CUDA module in ``numbanet.kernels.cuda`` with the same public functions.

Rules every kernel here follows:

* ``@njit(cache=True)``; heavy loops ``parallel=True`` with ``prange``.
* Parallel loops only *gather*: each iteration writes memory no other iteration
  writes (numba#7133 loses updates from racing ``+=`` scatters), and every sum is
  taken in a fixed order, so results are bit-identical for any thread count.
* Inner loops index zero-based views (``dst[a:b]``, then ``dst[t]``) with
  offsets outside the index: offsets inside it stopped LLVM from vectorising.
* Big buffers come from ``numbanet._workspace`` instead of being allocated inside
  the kernel.
"""
from . import activation, blas, container, conv, dropout, linear, loss, norm, optim, pooling, tensor  # noqa: F401
