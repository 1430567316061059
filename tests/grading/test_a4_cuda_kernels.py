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


# The solution's kernels and the wrong ones above, compiled for a real GPU (sm_75) by NVVM: the solution's
# product stages its tiles in shared memory, the untiled one has no shared memory, the one-barrier one half
# the solution's barriers (NVVM unrolls the tile loop, so the counts are multiples of the source's).
PTX_KERNELS = r'''
import json, re
import nbformat
from numba import float32
cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nbformat.read(sys.argv[1], as_version=4).cells}
wrong = json.loads(sys.argv[2])
A1, A2, A4 = (types.Array(types.float32, ndim, "C") for ndim in (1, 2, 4))
signatures = {"relu_kernel": (A1, A1), "matmul_tiled_kernel": (A2, A2, A2),
              "conv2d_kernel": (A4, A4, A1, types.int64, types.int64, A4)}
found = {}
for label, sources in [("solution", {}), *wrong.items()]:
    namespace = {"cuda": cuda, "float32": float32, "np": np}
    exec(cells["tile"], namespace)
    for name, signature in signatures.items():
        exec(sources.get(name, cells[name]), namespace)
        ptx, _ = cuda.compile_ptx(namespace[name].py_func, signature, cc=(7, 5))
        found[f"{label} {name}"] = {"shared": len(re.findall(r"(?:ld|st)\.shared", ptx)), "barriers": ptx.count("bar.sync")}
print(json.dumps(found))
'''


def test_kernels_compile_to_ptx_with_the_tiles_and_barriers_the_simulator_counts():
    import ast
    import json
    import os
    import subprocess
    import sys

    import pytest
    from .pipeline import REPO
    device_tests = (REPO / "tests" / "cuda" / "test_device_cuda.py").read_text()
    script = next(ast.literal_eval(node.value) for node in ast.parse(device_tests).body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_PTX_SCRIPT")
    setup = script[:script.index("from numbanet.kernels.cuda import")]   # NVVM without a GPU, or SKIP
    wrong = {"untiled": {"matmul_tiled_kernel": UNTILED_MATMUL}, "one_barrier": {"matmul_tiled_kernel": ONE_BARRIER_MATMUL},
             "shortcuts": {"relu_kernel": BLOCK_STRIDE_RELU, "conv2d_kernel": THREAD0_CONV}}
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.setdefault("CUDA_HOME", "/usr/local/cuda")
    notebook = REPO / "solutions" / "a4_cuda_kernels" / "a4_cuda_kernels.ipynb"
    done = subprocess.run([sys.executable, "-c", setup + PTX_KERNELS, str(notebook), json.dumps(wrong)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if done.stdout.startswith("SKIP"):
        pytest.skip(done.stdout.strip())
    found = json.loads(done.stdout.strip().splitlines()[-1])
    solution = found["solution matmul_tiled_kernel"]
    assert solution["shared"] > 0 and solution["barriers"] >= 2, found
    assert found["untiled matmul_tiled_kernel"] == {"shared": 0, "barriers": 0}, found
    assert 2 * found["one_barrier matmul_tiled_kernel"]["barriers"] == solution["barriers"], found
    assert all(found[f"{label} {name}"] == {"shared": 0, "barriers": 0} for label in ("solution", "shortcuts")
               for name in ("relu_kernel", "conv2d_kernel")), found
