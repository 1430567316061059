"""nbgrader pipeline for a2_backward (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA2Backward(PipelineTests):
    assignment = "a2_backward"
    bug = Bug(cell="conv2d_backward", pattern=r"\bstride\b", replacement="1",  # a backward that ignores the stride
              passes=("test_conv_backward_stride1", "test_conv_backward_padding"),
              fails=("test_conv_backward_stride2_hidden", "test_conv_backward_float32_hidden"))
