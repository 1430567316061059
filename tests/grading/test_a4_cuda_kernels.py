"""nbgrader pipeline for a4_cuda_kernels (the checks are in pipeline.py); graded in numba's CUDA simulator."""
from .pipeline import Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters

# Right values, computed the wrong way: only the hidden tests that watch the threads can tell
BLOCK_STRIDE_RELU = """@cuda.jit
def relu_kernel(x, out):   # strides by one block, not the grid: the blocks repeat each other's elements
    for i in range(cuda.grid(1), x.shape[0], cuda.blockDim.x):
        out[i] = x[i] if x[i] > 0 else 0
"""
THREAD0_RELU = """@cuda.jit
def relu_kernel(x, out):   # thread 0 does all the work
    if cuda.grid(1) == 0:
        for i in range(x.shape[0]):
            out[i] = x[i] if x[i] > 0 else 0
"""
UNTILED_MATMUL = """@cuda.jit
def matmul_tiled_kernel(a, b, c):   # one thread per element of c, every operand read from global memory
    row = cuda.blockIdx.y * TILE + cuda.threadIdx.y
    col = cuda.blockIdx.x * TILE + cuda.threadIdx.x
    if row < c.shape[0] and col < c.shape[1]:
        total = float32(0.0)
        for j in range(a.shape[1]):
            total += a[row, j] * b[j, col]
        c[row, col] = total
"""
THREAD0_CONV = """@cuda.jit
def conv2d_kernel(x, w, b, stride, padding, y):   # thread 0 computes every output
    if cuda.grid(1) != 0:
        return
    for n in range(y.shape[0]):
        for k in range(y.shape[1]):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    total = float32(b[k])
                    for c in range(x.shape[1]):
                        for a in range(w.shape[2]):
                            for d in range(w.shape[3]):
                                row, column = i * stride + a - padding, j * stride + d - padding
                                if 0 <= row < x.shape[2] and 0 <= column < x.shape[3]:
                                    total += w[k, c, a, d] * x[n, c, row, column]
                    y[n, k, i, j] = total
"""


ONE_BARRIER_MATMUL = """@cuda.jit
def matmul_tiled_kernel(a, b, c):   # tiled, but no barrier after the tile is used: a race on a GPU
    tile_a = cuda.shared.array((TILE, TILE), float32)
    tile_b = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row, col = cuda.blockIdx.y * TILE + ty, cuda.blockIdx.x * TILE + tx
    m, k = a.shape
    n = b.shape[1]
    total = float32(0.0)
    for t in range((k + TILE - 1) // TILE):
        tile_a[ty, tx] = a[row, t * TILE + tx] if row < m and t * TILE + tx < k else float32(0.0)
        tile_b[ty, tx] = b[t * TILE + ty, col] if t * TILE + ty < k and col < n else float32(0.0)
        cuda.syncthreads()
        for j in range(TILE):
            total += tile_a[ty, j] * tile_b[j, tx]
    if row < m and col < n:
        c[row, col] = total
"""


class TestA4CudaKernels(PipelineTests):
    assignment = "a4_cuda_kernels"
    # a tiled matrix product that writes c[row, col] without checking row < m and col < n
    bug = Bug(cell="matmul_tiled_kernel", pattern=r"if row < m and col < n:\n\s+c\[row, col\] = total",
              replacement="c[row, col] = total",
              passes=("test_relu", "test_relu_hidden", "test_matmul_whole_tiles", "test_conv2d_kernel",
                      "test_conv2d_kernel_padding", "test_conv2d_kernel_hidden", "test_conv2d_kernel_batch1_hidden",
                      "test_conv2d_one_thread_per_output_hidden"),
              fails=("test_matmul_partial_tiles", "test_matmul_hidden", "test_matmul_tiling_hidden"))
    wrong_answers = {
        "shortcuts": Substitute(code={"relu_kernel": BLOCK_STRIDE_RELU, "matmul_tiled_kernel": UNTILED_MATMUL,
                                      "conv2d_kernel": THREAD0_CONV},
                                fails=("test_relu_hidden", "test_matmul_tiling_hidden",
                                       "test_conv2d_one_thread_per_output_hidden")),
        # the missing barrier may also give wrong products in the simulator's schedule, on some runs
        "one_barrier": Substitute(code={"relu_kernel": THREAD0_RELU,
                                        "matmul_tiled_kernel": ONE_BARRIER_MATMUL},
                                  fails=("test_relu_hidden", "test_matmul_tiling_hidden"),
                                  unsure=("test_matmul_whole_tiles", "test_matmul_partial_tiles", "test_matmul_hidden")),
    }
