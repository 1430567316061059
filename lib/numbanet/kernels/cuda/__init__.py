"""Numba CUDA kernels.  Each module matches a layer module of the same name in ``numbanet``
and a CPU module in ``numbanet.kernels.cpu``; ``numbanet.kernels.backend(x)`` picks one.

Every module exports the operation-level functions of its ``kernels.cpu`` twin (same
names and arguments: ``conv2d``, ``max_pool2d_backward``, ...), taking and returning
numba device arrays; the raw ``@cuda.jit`` kernels are private.  ``kernels.backend``
imports this package on the first device array, so ``import numbanet`` never imports
``numba.cuda``.  Shared launch helpers and the tiled GEMM: ``_common``; scalar
formulas shared with the CPU: ``kernels.formulas``.

Rules every kernel here follows (they are what a real GPU, not only the simulator,
needs):

* no array expressions on local arrays, no globals read at run time (closure
  constants are compile-time), ``cuda.local.array`` / ``cuda.shared.array`` with
  constant shapes, <= 1024 threads per block, <= 48 KiB static shared memory;
* one thread per output element, which *gathers* its inputs in a fixed order: no
  atomics, so every result is bit-identical from run to run.
"""
from . import activation, container, conv, dropout, linear, loss, norm, optim, pooling, tensor  # noqa: F401
