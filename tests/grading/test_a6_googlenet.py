"""nbgrader pipeline for a6_googlenet (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA6GoogLeNet(PipelineTests):
    assignment = "a6_googlenet"
    bug = Bug(cell="inception", pattern=r"start \+= size", replacement="start += size - 1",  # concat backward off by one
              passes=("test_inception_forward", "test_inception_params", "test_googlenet_shapes",
                      "test_googlenet_params", "test_googlenet_loss", "test_googlenet_loss_hidden"),
              fails=("test_inception_backward", "test_googlenet_gradients", "test_inception_hidden",
                     "test_googlenet_hidden"))
    # the model zoo under the assignment's names (10/21 points before issue 18)
    borrower = Substitute(code={"inception": "Inception = nb.models.Inception",
                              "googlenet": "GoogLeNet = nb.models.googlenet",
                              "googlenet_loss": "GoogLeNetLoss = nb.models.GoogLeNetLoss"}, fails="all")
