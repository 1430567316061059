"""ResilientExecute (lib/numbanet/grading/preprocessors.py): a dead or hung kernel costs its cell, not the notebook."""
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytest.importorskip("nbgrader")
from numbanet.grading.preprocessors import ResilientExecute  # noqa: E402 - needs nbgrader

DEFINE = ["x = 1", "def f():\n    return x + 1"]
DIE = "import os\nos._exit(0)"
# SIGINT ignored: nbgrader's interrupt at the time-out does nothing (like a loop in compiled code)
HANG = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)"
LOOP = "import time\nwhile True:\n    time.sleep(0.1)"


def use(label):
    return f"print({label!r}, f())"


def execute(sources, tmp_path, **options):
    nb = new_notebook(cells=[new_code_cell(source) for source in sources])
    executor = ResilientExecute(timeout=5, ping_timeout=3, **options)
    nb, _ = executor.preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    return [[(o.output_type, o.get("ename"), o.get("text", "").strip()) for o in c.outputs] for c in nb.cells]


def test_death_hang_and_loop_each_cost_only_their_cell(tmp_path):
    outputs = execute([*DEFINE, DIE, use("after death"), HANG, use("after hang"), LOOP, use("after loop")], tmp_path)
    assert outputs[2] == [("error", "KernelDied", "")]
    assert outputs[3] == [("stream", None, "after death 2")]      # the kernel was restarted and f re-defined
    assert [name for _, name, _ in outputs[4]] == ["CellTimeoutError", "KernelHung"]
    assert outputs[5] == [("stream", None, "after hang 2")]
    assert ("error", "CellTimeoutError", "") in outputs[6]          # interrupted: no restart needed
    assert outputs[7] == [("stream", None, "after loop 2")]


def test_replay_skips_cells_that_killed_the_kernel_and_gives_up_after_max_restarts(tmp_path):
    outputs = execute([*DEFINE, DIE, DIE, use("after two deaths"), DIE, use("never")], tmp_path, max_restarts=2)
    assert outputs[2] == outputs[3] == [("error", "KernelDied", "")]
    assert outputs[4] == [("stream", None, "after two deaths 2")]
    assert outputs[5] == [("error", "KernelDied", "")]
    assert outputs[6] == [("error", "NotRun", "")]
