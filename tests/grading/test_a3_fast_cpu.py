"""nbgrader pipeline for a3_fast_cpu (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters

# column sums as the scatter that Task 1 warns about: prange over the rows, every iteration adds into all of out
SCATTER = """@njit(parallel=True)
def column_sum(a):
    m, n = a.shape
    out = np.zeros(n, a.dtype)
    for i in prange(m):
        for j in range(n):
            out[j] += a[i, j]
    return out
"""


class TestA3FastCpu(PipelineTests):
    assignment = "a3_fast_cpu"
    bug = Bug(cell="im2col", pattern=r"\bpadding\b", replacement="0",  # an im2col that ignores the padding
              passes=("test_relu_parallel", "test_row_sum", "test_column_sum", "test_parallel_warmup_hidden",
                      "test_no_race_hidden", "test_im2col_stride1", "test_conv2d_im2col_stride1"),
              fails=("test_im2col_padding", "test_conv2d_im2col_padding", "test_im2col_stride_hidden",
                     "test_im2col_float32_hidden", "test_conv2d_im2col_stride_hidden",
                     "test_conv2d_im2col_float32_hidden"))
    # the racing scatter gives the right sums on most runs: only the race test fails it every time
    wrong_answers = {"scatter": Substitute(code={"parallel_warmup": SCATTER}, fails=("test_no_race_hidden",),
                                           unsure=("test_column_sum", "test_parallel_warmup_hidden"))}
