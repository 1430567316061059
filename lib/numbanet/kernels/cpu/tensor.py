"""Parameter storage on the CPU (layer: ``numbanet.tensor``): NumPy is enough.

``kernels.cuda.tensor`` has the same functions as device kernels.
"""
import numpy as np


def zeros_like(array):
    """A new array of zeros of ``array``'s shape and dtype (a gradient, optimizer state)."""
    return np.zeros_like(array)


def fill(out, value) -> None:
    """out[...] = value, in place."""
    out[...] = value


def accumulate(dst, src) -> None:
    """dst += src in place (``Parameter.add_grad``)."""
    dst += src
