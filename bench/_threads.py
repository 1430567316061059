"""Thread settings shared by the benchmarks; call :func:`pin` before numpy, numba or torch load.

Why the wait settings matter.  numpy's OpenBLAS worker threads keep spinning for about 2^28
cycles (~0.1 s) after each matrix product, and OpenMP runtimes (PyTorch's, and Numba's
OpenMP threading layer) spin for a while after each parallel region.  On a 2-core machine,
timing two libraries alternately in one process then times each one against the other's
spinning threads: measured here, before numbanet's convolutions stopped using OpenBLAS's
threads, PyTorch's 3x3 forward went from 24 ms (alone) to 46-49 ms when interleaved with
numbanet.  With idle threads put to sleep at once (OPENBLAS_THREAD_TIMEOUT=4, the minimum,
and OMP_WAIT_POLICY=PASSIVE) each library's interleaved time stays close to its time in a
process of its own (within ~5% on most shapes).  One exception measured with numbanet's
one-region-per-convolution kernels: for the N64 C64 K64 32x32 forward, numbanet took 25 ms
alone and 32 ms interleaved while PyTorch took 28 ms alone and 22 ms interleaved; without
OMP_WAIT_POLICY=PASSIVE both matched their times alone (26 / 25 ms).  Re-check with a
script that times each library alone when a ratio looks surprising.
"""
from __future__ import annotations

import os

THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PASSIVE_WAITS = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}


def environment(threads: int, base: dict | None = None) -> dict:
    """``base`` (default: os.environ) with every pool sized to ``threads`` and passive waits."""
    env = dict(os.environ if base is None else base)
    env.update({var: str(threads) for var in THREAD_VARS})
    for var, value in PASSIVE_WAITS.items():
        env.setdefault(var, value)
    return env


def pin(threads: int) -> None:
    """Apply :func:`environment` to this process (before numpy / numba / torch are imported)."""
    os.environ.update(environment(threads))
