"""Compute kernels, one module per concept for each device, and ``backend(x)`` to choose them.

``kernels.cpu.<concept>`` (Numba ``@njit``) and ``kernels.cuda.<concept>`` (``numba.cuda.jit``)
export the same operation-level functions with the same arguments, on NumPy arrays and on
device arrays.  A layer validates its input, then calls ``backend(x).<concept>.<op>(...)``::

    backend(x).conv.conv2d(x, weight, bias, stride, padding)

The scalar formulas both devices compile are in ``kernels.formulas``.  ``kernels.cuda`` is
imported on the first device array, so ``import numbanet`` never imports ``numba.cuda``.

Every kernel is cached on disk (``cache=True``); ``kernels._cache`` makes a cached kernel
invalid when any file of this package changes, not only its own.
"""
from ..device import is_cuda
from . import _cache

_cache.install()  # before any kernel is decorated

from . import cpu  # noqa: E402


def backend(x):
    """The kernel package for ``x``'s device: ``kernels.cuda`` for a device array, else ``kernels.cpu``."""
    if is_cuda(x):
        from . import cuda
        return cuda
    return cpu
