"""nbgrader pipeline for a1_conv_forward (the checks are in pipeline.py); it also runs the attack students."""
from .pipeline import AttackChecks, Bug, PipelineTests, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA1ConvForward(AttackChecks, PipelineTests):
    assignment = "a1_conv_forward"
    bug = Bug(cell="conv2d_naive", pattern=r"\bstride\b", replacement="1",  # a convolution that ignores its stride
              passes=("test_conv2d_by_hand", "test_conv2d_stride1", "test_conv2d_padding"),
              fails=("test_conv2d_stride2_hidden", "test_conv2d_stride3_hidden", "test_conv2d_float32_hidden"))
