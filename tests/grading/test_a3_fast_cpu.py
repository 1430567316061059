"""nbgrader pipeline for a3_fast_cpu (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters

# Task 1 three wrong ways that give the right values: the column sums as the scatter that the task warns
# about (prange over the rows, every iteration adds into all of out), a ReLU with range instead of prange,
# row sums without @njit
WRONG_LOOPS = """@njit(parallel=True)
def column_sum(a):
    m, n = a.shape
    out = np.zeros(n, a.dtype)
    for i in prange(m):
        for j in range(n):
            out[j] += a[i, j]
    return out


@njit(parallel=True)
def relu_parallel(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] if x[i, j] > 0 else 0
    return out


def row_sum(a):
    return np.array([sum(row) for row in a], a.dtype)
"""


class TestA3FastCpu(PipelineTests):
    assignment = "a3_fast_cpu"
    bug = Bug(cell="im2col", pattern=r"\bpadding\b", replacement="0",  # an im2col that ignores the padding
              passes=("test_relu_parallel", "test_row_sum", "test_column_sum", "test_parallel_warmup_hidden",
                      "test_no_race_hidden", "test_im2col_stride1", "test_conv2d_im2col_stride1"),
              fails=("test_im2col_padding", "test_conv2d_im2col_padding", "test_im2col_stride_hidden",
                     "test_im2col_float32_hidden", "test_conv2d_im2col_stride_hidden",
                     "test_conv2d_im2col_float32_hidden"))
    # the racing scatter gives the right sums on most runs (test_column_sum may see it): the race test fails it
    # every time; the serial loops fail the hidden test of Numba's parallel diagnostics
    wrong_answers = {"wrong_loops": Substitute(code={"parallel_warmup": WRONG_LOOPS},
                                               fails=("test_parallel_warmup_hidden", "test_no_race_hidden"),
                                               unsure=("test_column_sum",))}
