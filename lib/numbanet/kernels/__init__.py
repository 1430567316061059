"""Compute kernels, one module per concept for each device, and ``backend(x)`` to choose them.

``kernels.cpu.<concept>`` (Numba ``@njit``) and ``kernels.cuda.<concept>`` (``numba.cuda.jit``)
export the same operation-level functions with the same arguments, on NumPy arrays and on
device arrays.  A layer validates its input, then calls ``backend(x).<concept>.<op>(...)``::

    backend(x).conv.conv2d(x, weight, bias, stride, padding)

The scalar formulas both devices compile are in ``kernels.formulas``.  ``kernels.cuda`` is
imported on the first device array, so ``import numbanet`` never imports ``numba.cuda``.
"""
from ..device import is_cuda
from . import cpu


def backend(x):
    """The kernel package for ``x``'s device: ``kernels.cuda`` for a device array, else ``kernels.cpu``."""
    if is_cuda(x):
        from . import cuda
        return cuda
    return cpu
