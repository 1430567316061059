r"""Launch configurations and device routines shared by every CUDA kernel module.

Vocabulary.  A kernel is launched on a *grid* of *blocks* of *threads*:
``kernel[blocks, threads](...)``.  Real hardware allows at most 1024 threads per
block and 48 KiB of static shared memory per block; a warp is 32 threads, so
block sizes here are multiples of 32 (or squares of 8 / 16 for the 2-D GEMM).

* 1-D launches, one thread per output element: ``launch_1d(n)`` gives
  ``(blocks, threads)``; the kernel starts with ``i = cuda.grid(1)`` and
  returns when ``i >= n``.  The block size is chosen from n, so the tiny
  problems of the simulator tests run small blocks (the simulator runs one OS
  thread per CUDA thread) and real problems run 256 threads per block.
* Block reductions: ``reduce_threads(n)`` (a power of two) and the device
  function ``block_sum``, a shared-memory tree.  Each thread first sums its
  strided share of the items in order, then the tree adds the partial sums in
  a fixed pattern: the result is the same on every run (but depends on the
  block size, which is a function of n only).
* ``TiledGemm``: C = A·B with a shared-memory tiled kernel whose operands are
  read and written by small device functions, so one routine serves plain
  matrices (Linear, 1x1 convolution) and *implicit* im2col matrices
  (convolution) alike.  Split-K over the reduction with a fixed-order sum of
  the partial products keeps it deterministic (no atomics anywhere).
* ``accumulate`` (dst += src, for ``Parameter.grad``), ``fill``, ``copy``,
  ``sum_leading`` and a device scratch pool ``scratch``.

Floating point: GEMM tiles and their accumulators use the data's dtype (float64
arithmetic runs at 1/32 of the float32 rate on the T4 GPUs of Colab); the
memory-bound reductions accumulate in float64, as the CPU kernels do.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, from_dtype

WARP = 32
MAX_THREADS_1D = 256
MAX_REDUCE_THREADS = 256
REDUCE_SHARED = 1024  # entries of the shared array handed to block_sum (>= threads per block)


# -- launch configurations -------------------------------------------------------------------------

def threads_1d(n: int, maximum: int = MAX_THREADS_1D) -> int:
    """Threads per block for n independent items: n rounded up to a whole warp, at most ``maximum``."""
    return int(min(maximum, max(WARP, -(-int(n) // WARP) * WARP)))


def launch_1d(n: int, threads: int | None = None) -> tuple[int, int]:
    """(blocks, threads) covering n items with one thread each (blocks·threads >= n, blocks >= 1)."""
    threads = threads_1d(n) if threads is None else int(threads)
    return max(1, -(-int(n) // threads)), threads


def reduce_threads(n: int, maximum: int = MAX_REDUCE_THREADS) -> int:
    """Threads per block for a block reduction over n items: a power of two in [32, maximum]."""
    threads = WARP
    while threads < n and threads < maximum:
        threads *= 2
    return threads


def numba_type(dtype):
    """The Numba scalar type of a NumPy dtype (for shared/local arrays of compile-time dtype)."""
    return from_dtype(np.dtype(dtype))


# -- block reduction -------------------------------------------------------------------------------

@cuda.jit(device=True)
def block_sum(shared, value):
    """Σ of ``value`` over the threads of a 1-D block; every thread receives the total.

    ``shared``: a shared array with at least blockDim.x entries (blockDim.x a power of
    two, see ``reduce_threads``).  The tree adds pairs in a fixed pattern, so the result
    is reproducible.  All threads of the block must call it (it synchronises).
    """
    tid = cuda.threadIdx.x
    shared[tid] = value
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            shared[tid] += shared[tid + step]
        cuda.syncthreads()
        step //= 2
    total = shared[0]
    cuda.syncthreads()  # the caller may write shared again right away
    return total


# -- elementwise helpers -----------------------------------------------------------------------------

@cuda.jit
def _fill_kernel(out, value):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = value


@cuda.jit
def _copy_kernel(src, dst):
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] = src[i]


@cuda.jit
def _accumulate_kernel(dst, src):
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] += src[i]


@cuda.jit
def _sum_leading_kernel(parts, out):
    """out[i] = Σ_s parts[s, i], summed in order of s."""
    i = cuda.grid(1)
    if i < out.size:
        total = 0.0
        for s in range(parts.shape[0]):
            total += parts[s, i]
        out[i] = total


def flat(a):
    """A 1-D view of a C-contiguous device array (no copy)."""
    return a.reshape(a.size)


def fill(out, value) -> None:
    """out[...] = value, in place, for a C-contiguous device array."""
    if out.size:
        _fill_kernel[launch_1d(out.size)](flat(out), out.dtype.type(value))


def copy(src, dst) -> None:
    """dst[...] = src (same number of elements, both C-contiguous device arrays)."""
    if dst.size:
        _copy_kernel[launch_1d(dst.size)](flat(src), flat(dst))


def accumulate(dst, src) -> None:
    """dst += src elementwise, in place (same number of elements; used for ``Parameter.grad``)."""
    if dst.size:
        _accumulate_kernel[launch_1d(dst.size)](flat(dst), flat(src))


def sum_leading(parts, out) -> None:
    """out = Σ_s parts[s] for parts (S, *out.shape); the S partial results are added in order."""
    if out.size:
        _sum_leading_kernel[launch_1d(out.size)](parts.reshape(parts.shape[0], out.size), flat(out))


def empty(shape, dtype):
    """A new uninitialised device array."""
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def zeros(shape, dtype):
    """A new device array of zeros."""
    out = empty(shape, dtype)
    fill(out, 0)
    return out


_scratch: dict[tuple[str, np.dtype], object] = {}


def scratch(name: str, shape, dtype):
    """A device array of ``shape`` from the named pool buffer (contents undefined).

    Every launch goes to the default stream, in order, so a buffer reused by the next call
    is never overwritten while a kernel of this call still reads it.  Two scratch arrays
    alive at the same time must have different names.  A buffer only grows.
    """
    dtype = np.dtype(dtype)
    size = int(math.prod(shape))
    buf = _scratch.get((name, dtype))
    if buf is None or buf.size < size:
        buf = cuda.device_array(max(size, 1), dtype=dtype)
        _scratch[(name, dtype)] = buf
    return buf[:size].reshape(tuple(int(s) for s in shape))


# -- tiled GEMM ------------------------------------------------------------------------------------

def _axis_tile(size: int) -> tuple[int, int]:
    """(threads, registers) along one side of the output tile for a side of ``size`` elements."""
    if size >= 64:
        return 16, 4
    if size >= 32:
        return 16, 2
    if size >= 16:
        return 16, 1
    if size >= 8:
        return 8, 1
    return 4, 1


def gemm_tile(m: int, n: int) -> tuple[int, int, int, int]:
    """(threads_y, threads_x, reg_y, reg_x) for an m x n GEMM output.

    A block of threads_y x threads_x threads computes a (threads_y·reg_y) x (threads_x·reg_x)
    tile of C, each thread reg_y x reg_x outputs.  Each side is chosen from its own size:
    64-wide sides (16 threads x 4 registers) for big outputs, down to 4 threads for a side
    of fewer than 8 rows (a batch of 2, three output channels), so that a skinny product
    wastes little work on padding, and the simulator's tiny test problems run small blocks.
    At most 256 threads and 16 x 16 x 2 slab entries of shared memory per block.
    """
    ty, ry = _axis_tile(m)
    tx, rx = _axis_tile(n)
    return ty, tx, ry, rx


class TiledGemm:
    r"""C[i, j] = Σ_r A(i, r)·B(r, j), i < m, j < n, r < depth, on a tiled shared-memory kernel.

    The operands are not matrices but *accessors*, device functions compiled into the kernel::

        load_a(a, i, r, geom)  -> A(i, r)          load_b(b, r, j, geom) -> B(r, j)
        store_c(c, split, i, j, value, geom)       (value = the sum over this split's r-range)

    ``geom`` is a tuple of ints (strides, kernel sizes, ...) the accessors need.  So the
    same routine multiplies a plain matrix, a transposed one (swap the indices in the
    accessor; no transpose copy) or an im2col matrix that is never built (implicit GEMM).

    Algorithm (tile = (TY, TX, RY, RX), see ``gemm_tile``): a block of TY x TX threads owns a
    (TY·RY) x (TX·RX) tile of C.  For each slab of TK = max(TY, TX) reduction indices the
    block copies A's (TY·RY) x TK and B's TK x (TX·RX) slabs into shared memory, synchronises,
    and every thread accumulates its RY x RX outputs (rows ty + u·TY, columns tx + v·TX:
    neighbouring threads read neighbouring shared-memory words and store neighbouring
    columns of C) from RY + RX register values per r.  Each output is one thread's sum in
    increasing r: deterministic, no atomics.

    ``a_depth_contiguous`` / ``b_depth_contiguous``: whether consecutive r are adjacent in
    memory for that operand; the slab loads then walk r fastest so a warp reads
    consecutive addresses (coalesced).  Otherwise they walk i (for A) or j (for B) fastest.

    Split-K (``splits`` > 1, grid z): split s sums r in [s·L, (s+1)·L) and ``store_c``
    receives s; the caller adds the partial results with ``sum_leading`` (a fixed order).
    """

    def __init__(self, load_a, load_b, store_c, a_depth_contiguous: bool, b_depth_contiguous: bool):
        self.load_a, self.load_b, self.store_c = load_a, load_b, store_c
        self.a_depth_contiguous, self.b_depth_contiguous = a_depth_contiguous, b_depth_contiguous

    def kernel(self, dtype, tile: tuple[int, int, int, int]):
        """The compiled kernel for this dtype and tile (compiled once, then cached)."""
        return _gemm_kernel(self.load_a, self.load_b, self.store_c, self.a_depth_contiguous,
                            self.b_depth_contiguous, numba_type(dtype), *(int(t) for t in tile))

    def __call__(self, a, b, c, m: int, n: int, depth: int, geom=(0,), *, dtype=None,
                 splits: int = 1, tile: tuple[int, int, int, int] | None = None) -> None:
        """Launch C = A·B.  ``dtype`` (default a.dtype) sets the shared tiles' and accumulators' type;
        ``tile`` overrides ``gemm_tile(m, n)``; ``splits`` splits the reduction (store_c gets the split)."""
        if m == 0 or n == 0:
            return
        ty, tx, ry, rx = gemm_tile(m, n) if tile is None else tile
        splits = max(1, int(splits))
        split_len = -(-max(depth, 1) // splits)
        grid = (-(-n // (tx * rx)), -(-m // (ty * ry)), splits)
        kernel = self.kernel(a.dtype if dtype is None else dtype, (ty, tx, ry, rx))
        kernel[grid, (tx, ty)](a, b, c, int(m), int(n), int(depth), int(split_len),
                               tuple(int(g) for g in geom))


def split_k(m: int, n: int, depth: int, tile: tuple[int, int, int, int] | None = None) -> int:
    """How many reduction splits keep the GPU busy when the output is small and the reduction long.

    A deep, narrow product (a convolution's dW sums over N·Ho·Wo) has too few output tiles to
    fill the multiprocessors; splitting the sum into chunks of >= 1024 terms gives about 128
    blocks.  Depends on the shape only, so results are reproducible.
    """
    ty, tx, ry, rx = gemm_tile(m, n) if tile is None else tile
    blocks = -(-m // (ty * ry)) * -(-n // (tx * rx))
    if blocks >= 128 or depth < 2048:
        return 1
    return int(max(1, min(-(-128 // blocks), depth // 1024, 64)))


@functools.lru_cache(maxsize=None)
def _gemm_kernel(load_a, load_b, store_c, a_depth_contiguous, b_depth_contiguous, dtype, TY, TX, RY, RX):
    """Build the tiled kernel for one accessor triple, dtype and tile; see TiledGemm."""
    ROWS = TY * RY          # rows of C per block
    COLS = TX * RX          # columns of C per block
    TK = max(TY, TX)        # reduction indices per shared-memory slab
    BLOCK = TY * TX
    PITCH_A = ROWS + 1      # odd row pitches: the slab stores of a warp hit distinct banks
    PITCH_B = COLS + 1      # (shared-array shapes must be constants of the closure, not expressions)
    zero = dtype(0)

    @cuda.jit
    def kernel(a, b, c, m, n, depth, split_len, geom):
        slab_a = cuda.shared.array((TK, PITCH_A), dtype)  # slab_a[r, i] = A(row0 + i, r0 + r)
        slab_b = cuda.shared.array((TK, PITCH_B), dtype)  # slab_b[r, j] = B(r0 + r, col0 + j)
        acc = cuda.local.array((RY, RX), dtype)
        a_frag = cuda.local.array(RY, dtype)
        b_frag = cuda.local.array(RX, dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TX + tx
        row0 = cuda.blockIdx.y * ROWS
        col0 = cuda.blockIdx.x * COLS
        split = cuda.blockIdx.z
        r_begin = split * split_len
        r_end = min(depth, r_begin + split_len)
        for u in range(RY):
            for v in range(RX):
                acc[u, v] = zero
        for r0 in range(r_begin, r_end, TK):
            for e in range(tid, TK * ROWS, BLOCK):
                if a_depth_contiguous:
                    i = e // TK
                    r = e - i * TK
                else:
                    r = e // ROWS
                    i = e - r * ROWS
                value = zero
                if row0 + i < m and r0 + r < r_end:
                    value = load_a(a, row0 + i, r0 + r, geom)
                slab_a[r, i] = value
            for e in range(tid, TK * COLS, BLOCK):
                if b_depth_contiguous:
                    j = e // TK
                    r = e - j * TK
                else:
                    r = e // COLS
                    j = e - r * COLS
                value = zero
                if col0 + j < n and r0 + r < r_end:
                    value = load_b(b, r0 + r, col0 + j, geom)
                slab_b[r, j] = value
            cuda.syncthreads()
            for r in range(TK):
                for u in range(RY):
                    a_frag[u] = slab_a[r, ty + u * TY]
                for v in range(RX):
                    b_frag[v] = slab_b[r, tx + v * TX]
                for u in range(RY):
                    for v in range(RX):
                        acc[u, v] += a_frag[u] * b_frag[v]
            cuda.syncthreads()
        for u in range(RY):
            i = row0 + ty + u * TY
            for v in range(RX):
                j = col0 + tx + v * TX
                if i < m and j < n:
                    store_c(c, split, i, j, acc[u, v], geom)

    return kernel


# -- plain row-major matrices ----------------------------------------------------------------------

@cuda.jit(device=True)
def load_rows(a, i, r, geom):
    """A(i, r) = a[i, r]: a row-major (m, depth) matrix."""
    return a[i, r]


@cuda.jit(device=True)
def load_cols(a, i, r, geom):
    """A(i, r) = a[r, i]: the transpose of a row-major (depth, m) matrix, read in place."""
    return a[r, i]


@cuda.jit(device=True)
def store_rows(c, split, i, j, value, geom):
    """C[i, j] -> c[i, j] (one split)."""
    c[i, j] = value


@cuda.jit(device=True)
def store_split_rows(c, split, i, j, value, geom):
    """Partial C[i, j] of split s -> c[s, i, j]; add the splits with ``sum_leading``."""
    c[split, i, j] = value


# Matrix products of row-major 2-D device arrays (B read as b[r, j], or b[j, r] for "nt").
_MATMUL = {
    ("n", "n"): TiledGemm(load_rows, load_rows, store_rows, True, False),
    ("n", "t"): TiledGemm(load_rows, load_cols, store_rows, True, True),
    ("t", "n"): TiledGemm(load_cols, load_rows, store_rows, False, False),
}
_MATMUL_SPLIT = {
    ("n", "n"): TiledGemm(load_rows, load_rows, store_split_rows, True, False),
    ("n", "t"): TiledGemm(load_rows, load_cols, store_split_rows, True, True),
    ("t", "n"): TiledGemm(load_cols, load_rows, store_split_rows, False, False),
}


def matmul(a, b, out=None, *, trans_a: bool = False, trans_b: bool = False, splits: int | None = None,
           tile: tuple[int, int, int, int] | None = None):
    """out = op(a)·op(b) for row-major 2-D device arrays, op = transpose when trans_* is set.

    op(a): (m, depth), op(b): (depth, n) -> out (m, n), a new array unless given.  Transposes
    are read in place.  ``splits`` (default ``split_k``) splits long reductions; the partial
    products are added in a fixed order, so the result does not vary between runs.
    """
    m, depth = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != depth:
        raise ValueError(f"matmul: inner dimensions differ: op(a) {(m, depth)}, op(b) "
                         f"{(b.shape[1], b.shape[0]) if trans_b else b.shape}")
    if out is None:
        out = empty((m, n), a.dtype)
    key = ("t" if trans_a else "n", "t" if trans_b else "n")
    splits = split_k(m, n, depth, tile) if splits is None else int(splits)
    if depth == 0:
        fill(out, 0)
    elif splits == 1:
        _MATMUL[key](a, b, out, m, n, depth, tile=tile)
    else:
        parts = scratch("matmul.splits", (splits, m, n), a.dtype)
        _MATMUL_SPLIT[key](a, b, parts, m, n, depth, splits=splits, tile=tile)
        sum_leading(parts, out)
    return out


# -- more block reductions (used by the losses) ------------------------------------------------------

@cuda.jit(device=True)
def block_max(shared, value):
    """max of ``value`` over the threads of a 1-D block; every thread receives it.

    Same contract as ``block_sum`` (shared array of >= blockDim.x entries, blockDim.x a
    power of two, called by every thread); threads with nothing to contribute pass −inf.
    """
    tid = cuda.threadIdx.x
    shared[tid] = value
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            shared[tid] = max(shared[tid], shared[tid + step])
        cuda.syncthreads()
        step //= 2
    peak = shared[0]
    cuda.syncthreads()
    return peak


@cuda.jit
def _sum_all_kernel(values, out):
    """out[0] = Σ values (1-D), by one block: strided per-thread sums in order, then the tree."""
    shared = cuda.shared.array(REDUCE_SHARED, np.float64)
    total = 0.0
    for k in range(cuda.threadIdx.x, values.size, cuda.blockDim.x):
        total += values[k]
    total = block_sum(shared, total)
    if cuda.threadIdx.x == 0:
        out[0] = total


def sum_all(values):
    """Σ of a device array as a (1,) float64 device array (a fixed-order reduction in one block)."""
    out = empty((1,), np.float64)
    _sum_all_kernel[1, reduce_threads(values.size)](flat(values), out)
    return out
