"""nbgrader pipeline for a7_resnet (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA7ResNet(PipelineTests):
    assignment = "a7_resnet"
    bug = Bug(cell="residual_block", pattern=r"return dx \+ d\b", replacement="return dx",  # forgets the identity's gradient
              passes=("test_projection", "test_basic_block_projection_hidden", "test_bottleneck_projection_hidden",
                      "test_resnet_params", "test_resnet_shapes", "test_resnet_params_hidden"),
              fails=("test_basic_block_identity", "test_residual_backward", "test_bottleneck",
                     "test_resnet_values_hidden"))
    # the model zoo under the assignment's names (9/22 points before issue 18), and zoo models built in a
    # solution cell, handed out by the student's own functions (own_model finds them in the model)
    borrower = Substitute(code={
        "residual_block": "projection = nb.models.projection\nBasicBlock = nb.models.BasicBlock",
        "bottleneck": "Bottleneck = nb.models.Bottleneck",
        "resnet": ("resnet = nb.models.ResNet\nresnet34, resnet50 = nb.models.resnet34, nb.models.resnet50\n"
                   "_built = {'resnet18': nb.models.resnet18(), 'resnet20': nb.models.resnet20()}\n"
                   "def resnet18(num_classes=1000, in_channels=3, rng=None):\n    return _built['resnet18']\n"
                   "def resnet20(num_classes=10, in_channels=3, rng=None):\n    return _built['resnet20']")},
        fails="all")
