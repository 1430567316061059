"""nbgrader pipeline for a4_cuda_kernels (the checks are in pipeline.py); graded in numba's CUDA simulator."""
from .pipeline import Bug, PipelineTests, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA4CudaKernels(PipelineTests):
    assignment = "a4_cuda_kernels"
    # a tiled matrix product that writes c[row, col] without checking row < m and col < n
    bug = Bug(cell="matmul_tiled_kernel", pattern=r"if row < m and col < n:\n\s+c\[row, col\] = total",
              replacement="c[row, col] = total",
              passes=("test_relu", "test_relu_hidden", "test_matmul_whole_tiles", "test_conv2d_kernel",
                      "test_conv2d_kernel_padding", "test_conv2d_kernel_hidden", "test_conv2d_kernel_batch1_hidden"),
              fails=("test_matmul_partial_tiles", "test_matmul_hidden"))
