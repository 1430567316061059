r"""CUDA kernels for dropout (layer: ``numbanet.dropout``).

Masks are drawn on the device with ``numba.cuda.random``'s xoroshiro128+ generators:
``create_xoroshiro128p_states(S, seed)`` makes S generator states, each 2⁶⁴ steps
apart in one sequence, from a seed drawn from a NumPy generator (numbanet's global
one, or the ``rng`` given), so ``numbanet.manual_seed`` makes device masks
reproducible.  They are not the CPU's masks: the two devices use different
generators (both draw u ~ U[0, 1) in float64 and keep a unit when u ≥ p).

Thread t of the drawing kernel owns state t and draws the mask entries t, t + S,
t + 2S, ... in order: a mask depends only on the seed and S, which depends only on
the mask's size.  The states live on the device and advance with every draw, so a
``RandomStates`` kept by a layer is created (one host initialisation and upload)
only when its generator or the number of states changes; the functional form
creates fresh states per call.  The boolean keep-mask stays on the device for the
backward pass, which applies it with the same kernel as the forward.
"""
from __future__ import annotations

import numpy as np
from numba import cuda
from numba.cuda.random import create_xoroshiro128p_states, xoroshiro128p_uniform_float64

from ._common import empty, flat, launch_1d

# Each generator state draws about this many mask entries; at most MAX_STATES states
# (enough threads to fill a GPU, while the host initialisation, ~10⁵ steps per 1000
# states, stays well under a millisecond).
DRAWS_PER_STATE = 64
MAX_STATES = 8192


def state_count(mask_size: int) -> int:
    """S, the number of generator states that draw a mask of ``mask_size`` entries."""
    return int(min(MAX_STATES, max(1, -(-int(mask_size) // DRAWS_PER_STATE))))


class RandomStates:
    """Device generator states seeded from a NumPy generator; re-created when that generator
    is replaced (e.g. by ``numbanet.manual_seed``) or a different number of states is needed."""

    def __init__(self):
        self.states = None
        self.source = None

    def get(self, count: int, rng: np.random.Generator):
        """``count`` states, advanced by every previous draw from the same ``rng``."""
        if self.states is None or self.source is not rng or self.states.size != count:
            seed = int(rng.integers(0, 2**63))
            self.states = create_xoroshiro128p_states(count, seed=seed)
            self.source = rng
        return self.states


@cuda.jit
def _draw_keep_kernel(states, p, keep):
    """keep[i] = (u ≥ p), u ~ U[0, 1) from state t for i = t, t + S, ... (S = states.size)."""
    t = cuda.grid(1)
    if t < states.size:
        for i in range(t, keep.size, states.size):
            keep[i] = xoroshiro128p_uniform_float64(states, t) >= p


@cuda.jit
def _apply_mask_kernel(x, keep, scale, out):
    """out[i] = x[i]·scale if keep[i // group] else 0, group = x.size / keep.size (1, or a plane)."""
    i = cuda.grid(1)
    if i < out.size:
        group = out.size // keep.size
        out[i] = x[i] * scale if keep[i // group] else 0


def draw_mask(mask_shape, p: float, rng: np.random.Generator, states: RandomStates | None = None):
    """Boolean device keep-mask of ``mask_shape``, True with probability 1 − p.

    ``states``: a layer's ``RandomStates`` (reused across calls); None draws with fresh states.
    """
    keep = empty(mask_shape, np.bool_)
    if keep.size:
        count = state_count(keep.size)
        generators = (states or RandomStates()).get(count, rng)
        _draw_keep_kernel[launch_1d(count)](generators, float(p), flat(keep))
    return keep


def apply_mask(x, keep, scale):
    """x·keep·scale for x (N, ...) and keep of x's shape or (N, C, 1, 1) (one entry per plane);
    ``scale`` = 1/(1 − p) as a scalar of x's dtype, so kept units are exactly x times it."""
    out = empty(x.shape, x.dtype)
    if x.size:
        _apply_mask_kernel[launch_1d(x.size)](flat(x), flat(keep), x.dtype.type(scale), flat(out))
    return out
