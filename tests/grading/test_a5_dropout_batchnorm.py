"""nbgrader pipeline for a5_dropout_batchnorm (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA5DropoutBatchnorm(PipelineTests):
    assignment = "a5_dropout_batchnorm"
    bug = Bug(cell="running_stats", pattern=r" \* m / \(m - 1\)", replacement="",  # biased running variance
              passes=("test_dropout_statistics", "test_dropout_backward", "test_dropout_exact_hidden",
                      "test_batchnorm_forward", "test_batchnorm_backward", "test_batchnorm_backward_hidden",
                      "test_batchnorm_eval", "test_fold_batchnorm_equal", "test_nwgm"),
              fails=("test_running_stats", "test_running_stats_hidden", "test_batchnorm_eval_trap_hidden"))
