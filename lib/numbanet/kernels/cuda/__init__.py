"""Numba CUDA kernels.  Each module matches a layer module of the same name in ``numbanet``
and a CPU module in ``numbanet.kernels.cpu``; ``numbanet.kernels.backend(x)`` picks one.

Every module exports public functions with the names and signatures of the layer
module's functional API (``conv2d``, ``max_pool2d_backward``, ...), taking and
returning numba device arrays; the raw ``@cuda.jit`` kernels are private.  The
layers import these modules lazily, so ``import numbanet`` never imports
``numba.cuda``.  Shared launch helpers and the tiled GEMM: ``_common``.

Rules every kernel here follows (they are what a real GPU, not only the simulator,
needs):

* no array expressions on local arrays, no globals read at run time (closure
  constants are compile-time), ``cuda.local.array`` / ``cuda.shared.array`` with
  constant shapes, <= 1024 threads per block, <= 48 KiB static shared memory;
* one thread per output element, which *gathers* its inputs in a fixed order: no
  atomics, so every result is bit-identical from run to run.
"""
from . import activation, container, conv, dropout, linear, loss, norm, optim, pooling, tensor  # noqa: F401,E402
