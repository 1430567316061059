"""Numba CPU kernels.  Each module matches a layer module of the same name in ``numbanet``.

Rules every kernel here follows:

* ``@njit(cache=True)``; heavy loops ``parallel=True`` with ``prange``.
* Parallel loops only *gather*: each iteration writes memory no other iteration
  writes (numba#7133 loses updates from racing ``+=`` scatters), and every sum is
  taken in a fixed order, so results are bit-identical for any thread count.
* Inputs are padded first and indexed from 0: negative or unknown-sign offsets
  stop LLVM from vectorising the inner loop.
* Big buffers come from ``numbanet._workspace`` instead of being allocated inside
  the kernel.
"""
