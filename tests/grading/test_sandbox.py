"""The sandbox of students' kernels (lib/numbanet/grading/sandbox.py) and the outside verdicts
(verdict.py, notebook mode), without nbgrader's pipeline (that is in pipeline.py: the escape student)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader")
from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402
from nbgrader import utils  # noqa: E402

from numbanet.grading.sandbox import Sandbox, SandboxUnavailable, _bwrap_problem  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
needs_bwrap = pytest.mark.skipif(_bwrap_problem("bwrap") is not None, reason="bubblewrap unavailable here")


def test_refuses_to_grade_without_bubblewrap_unless_unsafe(caplog):
    with pytest.raises(SandboxUnavailable, match="refusing to run students' code unsandboxed.*--Sandbox.unsafe=True"):
        Sandbox(bwrap="/nonexistent/bwrap").check()
    assert Sandbox(bwrap="/nonexistent/bwrap", unsafe=True).check() is False
    assert "UNSAFE GRADING" in caplog.text


@needs_bwrap
def test_the_sandbox_shows_only_the_python_environment_and_its_own_folders(tmp_path):
    """A hidden folder (the course) is invisible, the private folder writable, the library read-only,
    /tmp empty and private, no network, the limits set."""
    course, private = tmp_path / "course", tmp_path / "private"
    course.mkdir()
    (course / "gradebook.db").write_text("secret")
    private.mkdir()
    outer_tmp = Path("/tmp") / f"numbanet-sandbox-test-{os.getpid()}"
    outer_tmp.write_text("the grader's /tmp")
    probe = f"""
import json, os, resource, socket, numbanet
found = {{"course": os.path.exists({str(course)!r}), "tmp": os.path.exists({str(outer_tmp)!r}), "uid": os.getuid(),
         "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0], "as": resource.getrlimit(resource.RLIMIT_AS)[0]}}
open("written", "w").write("ok")
try:
    open(numbanet.__file__, "a")
    found["library"] = "writable"
except OSError as error:
    found["library"] = type(error).__name__
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    found["network"] = "up"
except OSError as error:
    found["network"] = error.errno
print(json.dumps(found))
"""
    sandbox = Sandbox(processes=64, memory_limit=2 << 30)
    command = sandbox.command([sys.executable, "-c", probe], (str(private),), str(private), dict(os.environ),
                              hidden=(str(course),))
    sandbox.own(str(private))
    try:
        found = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    finally:
        outer_tmp.unlink()
    assert found["course"] is False and found["tmp"] is False
    assert found["library"] in ("OSError", "PermissionError") and found["network"] == 101  # ENETUNREACH
    assert (found["nproc"], found["as"]) == (64, 2 << 30)
    assert found["uid"] == (sandbox.uid if os.geteuid() == 0 else os.getuid())
    assert (private / "written").read_text() == "ok"


def test_a_python_environment_inside_the_course_folder_is_refused(tmp_path):
    with pytest.raises(SandboxUnavailable, match="contains"):
        Sandbox().command([sys.executable, "-c", "pass"], (str(tmp_path),), str(tmp_path), {},
                          hidden=(sys.prefix,))


@pytest.mark.parametrize("notebook", sorted((REPO / "solutions").glob("*/*.ipynb")), ids=lambda p: p.parent.name)
def test_every_test_cell_can_be_graded_outside_the_kernel(notebook, tmp_path):
    """The verdict process runs each notebook's locked cells with check() recording: every test cell
    records at least one check, without an error (so its verdict never depends on the kernel)."""
    nb = nbformat.read(notebook, as_version=4)
    transform = TransformerManager().transform_cell
    cells = [{"grade_id": c.metadata.nbgrader.grade_id, "source": transform(c.source), "test": utils.is_grade(c)}
             for c in nb.cells if c.cell_type == "code" and utils.is_locked(c)]
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    verdict = REPO / "lib" / "numbanet" / "grading" / "verdict.py"
    subprocess.run([sys.executable, "-I", str(verdict), "notebook", str(tmp_path), str(REPO / "lib")], check=True,
                   env={"PATH": os.environ["PATH"], "NUMBA_DISABLE_JIT": "1", "NBGRADER_EXECUTION": "autograde"},
                   capture_output=True, cwd=tmp_path)
    verdicts = json.loads((tmp_path / "verdicts.json").read_text())
    assert sorted(verdicts) == sorted(c["grade_id"] for c in cells if c["test"])
    for grade_id, verdict in verdicts.items():
        assert verdict["checks"] >= 1, grade_id
        assert not any("grading error" in line for line in verdict["lines"]), (grade_id, verdict["lines"])
        assert not verdict["passed"] and "did not run" in verdict["summary"], grade_id   # no results were given
