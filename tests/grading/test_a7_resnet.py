"""nbgrader pipeline for a7_resnet (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA7ResNet(PipelineTests):
    assignment = "a7_resnet"
    bug = Bug(cell="residual_block", pattern=r"return dx \+ d\b", replacement="return dx",  # forgets the identity's gradient
              passes=("test_projection", "test_basic_block_projection_hidden", "test_bottleneck_projection_hidden",
                      "test_resnet_params", "test_resnet_shapes", "test_resnet_params_hidden"),
              fails=("test_basic_block_identity", "test_residual_backward", "test_bottleneck",
                     "test_resnet_values_hidden"))
