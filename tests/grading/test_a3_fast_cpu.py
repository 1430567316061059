"""nbgrader pipeline for a3_fast_cpu (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA3FastCpu(PipelineTests):
    assignment = "a3_fast_cpu"
    bug = Bug(cell="im2col", pattern=r"\bpadding\b", replacement="0",  # an im2col that ignores the padding
              passes=("test_relu_parallel", "test_row_sum", "test_column_sum", "test_parallel_warmup_hidden",
                      "test_im2col_stride1", "test_conv2d_im2col_stride1"),
              fails=("test_im2col_padding", "test_conv2d_im2col_padding", "test_im2col_stride_hidden",
                     "test_im2col_float32_hidden", "test_conv2d_im2col_stride_hidden",
                     "test_conv2d_im2col_float32_hidden"))
