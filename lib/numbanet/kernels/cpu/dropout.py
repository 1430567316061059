"""CPU kernel for dropout (layer: ``numbanet.dropout``).

Forward and backward are the same operation, a multiplication by the scaled
keep-mask, so one kernel serves both.  The mask has one entry per *group* of
consecutive elements: a group is one element for ``Dropout`` and one (n, c)
plane for ``Dropout2d``.  Each parallel iteration writes only its own group.
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def apply_mask(x, keep, scale, out):
    """out[g, j] = x[g, j]·scale if keep[g] else 0, for x, out (G, S) and keep (G,) booleans."""
    groups, size = x.shape
    for g in prange(groups):
        src, dst = x[g], out[g]
        if keep[g]:
            for j in range(size):
                dst[j] = src[j] * scale
        else:
            dst[:] = 0
