"""The grading helpers that judge how a kernel shares its work: numbanet.grading.parallel (a3's prange
loops) and numbanet.grading.cudasim (a4's CUDA kernels, in numba's simulator: a subprocess)."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import njit, prange

from numbanet.grading import parallel


@njit(parallel=True)
def column_sum_gather(a):
    out = np.empty(a.shape[1], a.dtype)
    for j in prange(a.shape[1]):
        total = 0.0
        for i in range(a.shape[0]):
            total += a[i, j]
        out[j] = total
    return out


@njit(parallel=True)
def column_sum_scatter(a):
    out = np.zeros(a.shape[1], a.dtype)
    for i in numba.prange(a.shape[0]):   # the module attribute is watched as well
        for j in range(a.shape[1]):
            out[j] += a[i, j]
    return out


@njit
def _add_row(out, a, i):
    for j in range(a.shape[1]):
        out[j] += a[i, j]


@njit(parallel=True)
def column_sum_scatter_in_helper(a):
    out = np.zeros(a.shape[1], a.dtype)
    for i in prange(a.shape[0]):
        _add_row(out, a, i)
    return out


@njit(parallel=True)
def total_reduction(a):
    """A scalar reduction: Numba combines the threads' partial sums, no element is shared."""
    total = 0.0
    for i in prange(a.shape[0]):
        total += a[i, 0]
    return total


@njit(parallel=True)
def nested_gather(a):
    """prange inside a prange's iteration runs sequentially in that iteration: only the outer loop is watched."""
    out = np.empty(a.shape, a.dtype)
    for i in prange(a.shape[0]):
        for j in prange(a.shape[1]):
            out[i, j] = 2 * a[i, j]
    return out


A = np.random.default_rng(0).standard_normal((12, 3))


@pytest.mark.parametrize("kernel", [column_sum_gather, total_reduction, nested_gather])
def test_race_free_kernels_have_no_conflicts(kernel):
    assert parallel.prange_conflicts(kernel, A) == 0
    assert parallel.thread_count_differences(column_sum_gather, A) == 0


@pytest.mark.parametrize("kernel", [column_sum_scatter, column_sum_scatter_in_helper])
def test_a_scatter_is_found_on_every_run(kernel):
    with pytest.warns(parallel.RaceWarning, match=r"iterations 0 and 1 of the prange loop in \w+ .* both wrote out\[0\]"):
        assert parallel.prange_conflicts(kernel, A) == 3   # every column sum is written by 12 iterations
    np.testing.assert_allclose(kernel(A), A.sum(axis=0))   # ... and the arguments are left alone


def test_parallel_loops_counts_prange_loops_only_in_parallel_kernels():
    assert parallel.parallel_loops(column_sum_gather, A) >= 1
    assert parallel.parallel_loops(_add_row, np.zeros(3), A, 0) == 0
    assert parallel.parallel_loops(column_sum_gather.py_func, A) == 0


SIMULATED = r'''
import numpy as np
from numba import cuda, float32
from numbanet.grading import cudasim

@cuda.jit
def grid_stride(x, out):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        out[i] = x[i]

@cuda.jit
def block_stride(x, out):
    for i in range(cuda.grid(1), x.shape[0], cuda.blockDim.x):
        out[i] = x[i]

@cuda.jit
def tile_sum(a, out):   # a 2-D grid of 2 x 2 blocks, a shared tile per block, two barriers
    tile = cuda.shared.array((2, 2), float32)
    x, y = cuda.grid(2)
    tile[cuda.threadIdx.y, cuda.threadIdx.x] = a[y, x]
    cuda.syncthreads()
    out[y, x] = tile[0, 0] + tile[1, 1]
    cuda.syncthreads()

x = np.arange(10, dtype=np.float32)
out = np.zeros_like(x)
launch = cudasim.watch(grid_stride, 2, 4, x, out)
assert (out == x).all() and (launch.writers(1) == np.arange(10) % 8).all(), launch.writers(1)
assert (launch.loads(0) == 1).all() and (launch.writers(0) == -1).all() and launch.threads == 8
launch = cudasim.watch(block_stride, 2, 4, x, np.zeros_like(x))
assert (launch.writers(1)[4:] == -2).all() and (launch.writers(1)[:4] == np.arange(4)).all(), launch.writers(1)
a, out = np.arange(16, dtype=np.float32).reshape(4, 4), np.zeros((4, 4), np.float32)
launch = cudasim.watch(tile_sum, (2, 2), (2, 2), a, out)
# thread (tx, ty) of block (bx, by) is number (by * 2 + bx) * 4 + ty * 2 + tx, and it writes out[y, x]
y, x = np.indices((4, 4))
expected = ((y // 2) * 2 + x // 2) * 4 + (y % 2) * 2 + x % 2
assert (launch.writers(1) == expected).all(), launch.writers(1)
assert (launch.barriers == 2).all() and (launch.loads(0) == 1).all()
print("OK")
'''


def test_cudasim_watch_records_writers_loads_and_barriers():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-c", SIMULATED], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr[-3000:]


def test_cudasim_watch_needs_the_simulator():
    from numbanet.grading import cudasim
    if numba.config.ENABLE_CUDASIM:
        pytest.skip("the simulator is on in this process")
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1"):
        cudasim.watch(lambda: None, 1, 1)
