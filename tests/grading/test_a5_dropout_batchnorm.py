"""nbgrader pipeline for a5_dropout_batchnorm (the checks are in pipeline.py)."""
from .pipeline import Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA5DropoutBatchnorm(PipelineTests):
    assignment = "a5_dropout_batchnorm"
    bug = Bug(cell="running_stats", pattern=r" \* m / \(m - 1\)", replacement="",  # biased running variance
              passes=("test_dropout_statistics", "test_dropout_backward", "test_dropout_exact_hidden",
                      "test_batchnorm_forward", "test_batchnorm_backward", "test_batchnorm_backward_hidden",
                      "test_batchnorm_eval", "test_fold_batchnorm_equal", "test_nwgm"),
              fails=("test_running_stats", "test_running_stats_hidden", "test_batchnorm_eval_trap_hidden"))
    # numbanet's dropout (its mask generator) and BatchNorm in place of the student's
    borrower = Substitute(code={
        "dropout": ("def dropout_forward(x, p, training, seed):\n"
                    "    if not training:\n"
                    "        return x, None\n"
                    "    return F.dropout(x, p, True, rng=np.random.default_rng(seed), return_mask=True)\n"
                    "dropout_backward = lambda dy, mask, p: F.dropout_backward(dy, mask, p)"),
        "batchnorm_train": ("batchnorm_forward_train = lambda x, gamma, beta, eps=1e-5: (F.batch_norm(x, None, None, gamma, "
                            "beta, training=True, eps=eps), x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)))")},
        fails=("test_dropout_statistics", "test_dropout_backward", "test_dropout_exact_hidden",
               "test_batchnorm_forward", "test_batchnorm_forward_hidden"))
