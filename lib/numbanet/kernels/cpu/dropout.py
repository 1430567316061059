"""CPU kernel for dropout (layer: ``numbanet.dropout``).

Forward and backward are the same operation, a multiplication by the scaled
keep-mask, so one kernel serves both.  The mask has one entry per *group* of
consecutive elements: a group is one element for ``Dropout`` and one (n, c)
plane for ``Dropout2d``.  Each parallel iteration writes only its own group.
The public functions are those of ``kernels.cuda.dropout``.
"""
import numpy as np
from numba import njit, prange

from ..._workspace import scratch


def draw_mask(mask_shape, p: float, rng: np.random.Generator, states=None) -> np.ndarray:
    """Boolean keep-mask of ``mask_shape``, True with probability 1 − p, drawn from ``rng``.

    ``states`` is the GPU's generator-state holder; on the CPU ``rng`` carries the state.
    """
    uniform = scratch("dropout.uniform", mask_shape, np.float64)
    rng.random(out=uniform)
    return uniform >= p


def apply_mask(x, keep, scale):
    """x·keep·scale for x (N, ...) and keep of x's shape or (N, C, 1, 1) (one entry per plane);
    ``scale`` = 1/(1 − p) as a scalar of x's dtype, so kept units are exactly x times it."""
    out = np.empty_like(x)
    groups = keep.size
    _apply_mask_kernel(x.reshape(groups, -1), keep.reshape(-1), scale, out.reshape(groups, -1))
    return out


@njit(parallel=True, cache=True)
def _apply_mask_kernel(x, keep, scale, out):
    """out[g, j] = x[g, j]·scale if keep[g] else 0, for x, out (G, S) and keep (G,) booleans."""
    groups, size = x.shape
    for g in prange(groups):
        src, dst = x[g], out[g]
        if keep[g]:
            for j in range(size):
                dst[j] = src[j] * scale
        else:
            dst[:] = 0
