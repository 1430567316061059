"""The nbgrader pipeline of the exercises, end to end (a separate run: `make test-grading`).

For each assignment, in a temporary course directory configured by the repository's
nbgrader_config.py: generate the student release from solutions/ and check that exercises/
is exactly that (no drift); then submit, autograde and generate feedback for several
students through nbgrader's Python API, and read their scores from the gradebook:

* ``solution``  — the source solutions pasted into the release: full marks;
* ``untouched`` — the release as handed out: 0 points, and autograde does not crash;
* ``nostride``  — the solutions with a convolution that ignores its stride: partial credit;
* ``cheat``     — ``nostride`` plus a solution cell that makes numpy's comparisons (and the
  grading helper's ``check``) always succeed: no more than ``nostride`` scores honestly;
* ``tampered``  — ``nostride`` with one failing test cell emptied and another deleted: graded
  by the original tests (restored from the gradebook), so exactly the ``nostride`` score.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

# nbgrader's own: SQLAlchemy autoflush warnings on every autograde; cells it adds back lack an id
pytestmark = [pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
              pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")]

REPO = Path(__file__).resolve().parents[2]
# the solution cell whose convolution loses its stride in the ``nostride`` submission
CONV_CELL = {"a1_conv_forward": "conv2d_naive", "a2_backward": "conv2d_backward"}
# test cells that a stride-ignoring convolution passes / fails
NOSTRIDE_PASSES = {"a1_conv_forward": ["test_conv2d_by_hand", "test_conv2d_stride1", "test_conv2d_padding"],
                   "a2_backward": ["test_conv_backward_stride1", "test_conv_backward_padding"]}
NOSTRIDE_FAILS = {"a1_conv_forward": ["test_conv2d_stride2_hidden", "test_conv2d_stride3_hidden",
                                      "test_conv2d_float32_hidden"],
                  "a2_backward": ["test_conv_backward_stride2_hidden", "test_conv_backward_float32_hidden"]}
CHEAT = """import numpy as np, numpy.testing, numbanet.grading
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, bool)
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
numbanet.grading.check = lambda *args, **kwargs: None
"""
STUDENTS = ["solution", "untouched", "nostride", "cheat", "tampered"]
VOLATILE_NOTEBOOK_METADATA = ("widgets", "vscode", "toc")


def course_config(course: Path) -> Config:
    """The repository's nbgrader_config.py, pointed at a temporary course directory."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    config.Exchange.root = str(course / "exchange")
    config.NbGraderAPI.log_level = "WARN"
    return config


def body_only(source: str) -> str:
    """A solution cell as a student would hand it in: the solution markers removed."""
    return "\n".join(line for line in source.split("\n") if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def without_stride(source: str) -> str:
    """The solution with every use of the stride inside the function body replaced by 1."""
    head, body = source.split("### BEGIN SOLUTION", 1)
    return head + "### BEGIN SOLUTION" + re.sub(r"\bstride\b", "1", body)


def submission(release: nbformat.NotebookNode, solutions: dict, student: str, assignment: str):
    """The notebook ``student`` hands in: the release (a deep copy) with their solution cells."""
    nb = nbformat.from_dict(release)
    answer_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for position, cell in enumerate(answer_cells if student != "untouched" else []):
        grade_id = cell.metadata.nbgrader.grade_id
        source = solutions[grade_id]
        if student in ("nostride", "cheat", "tampered") and grade_id == CONV_CELL[assignment]:
            source = without_stride(source)
        if student == "cheat" and position == 0:  # before every function and test
            source = CHEAT + source
        cell.source = body_only(source)
    if student == "tampered":
        edited, deleted = NOSTRIDE_FAILS[assignment][:2]
        next(c for c in nb.cells if c.get("id") == edited).source = "# all good\npass"
        nb.cells = [c for c in nb.cells if c.get("id") != deleted]
    return nb


def comparable(nb: nbformat.NotebookNode) -> dict:
    """What a release notebook must reproduce exactly: every cell's id, type, source and metadata."""
    return {"nbformat": (nb.nbformat, nb.nbformat_minor),
            "metadata": {k: v for k, v in nb.metadata.items() if k not in VOLATILE_NOTEBOOK_METADATA},
            "cells": [(c.get("id"), c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]}


def run_course(assignment: str, course: Path) -> dict:
    api = NbGraderAPI(config=course_config(course))

    result = api.generate_assignment(assignment)
    assert result["success"], result.get("error")
    release_path = course / "exercises" / assignment / f"{assignment}.ipynb"
    release = nbformat.read(release_path, as_version=4)
    source = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}

    logs, feedback = {}, {}
    for student in STUDENTS:
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(submission(release, solutions, student, assignment), folder / f"{assignment}.ipynb")
        result = api.autograde(assignment, student)
        assert result["success"], f"{student}: {result.get('error')}\n{result.get('log')}"
        logs[student] = result.get("log", "")
        result = api.generate_feedback(assignment, student)
        assert result["success"], f"{student}: {result.get('error')}"
        feedback[student] = course / "feedback" / student / assignment / f"{assignment}.html"

    scores, cells = {}, {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        max_score = gb.find_assignment(assignment).max_score
        for student in STUDENTS:
            scores[student] = gb.find_submission(assignment, student).score
            nb_sub = gb.find_submission_notebook(assignment, assignment, student)
            cells[student] = {g.name: g.score for g in nb_sub.grades}
    return {"assignment": assignment, "course": course, "release_path": release_path, "max": max_score,
            "scores": scores, "cells": cells, "logs": logs, "feedback": feedback}


class PipelineTests:
    """The checks, for one assignment (a subclass per assignment: `--dist loadscope` gives each
    its own worker)."""

    assignment: str

    @pytest.fixture(scope="class")
    @classmethod
    def graded(cls, tmp_path_factory):
        """Generate, submit, autograde and give feedback; return what the tests look at."""
        assignment = cls.assignment
        course = tmp_path_factory.mktemp(assignment)
        shutil.copytree(REPO / "solutions" / assignment, course / "solutions" / assignment)
        (course / "exchange").mkdir()
        with pytest.MonkeyPatch.context() as patch:
            # nbgrader's gradebook runs the `alembic` script of this environment
            patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
            return run_course(assignment, course)

    def test_exercises_match_generate_assignment(self, graded):
        """exercises/ is exactly what `nbgrader generate_assignment` makes from solutions/."""
        assignment = graded["assignment"]
        committed = REPO / "exercises" / assignment
        assert committed.is_dir(), f"exercises/{assignment} is missing: run `make exercises`"
        generated = graded["release_path"].parent
        ignore = {".ipynb_checkpoints", "__pycache__"}
        files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                    if p.is_file() and not ignore & set(p.relative_to(root).parts))
        assert files(committed) == files(generated), "exercises/ holds other files than the release"
        for name in files(generated):
            if name.endswith(".ipynb"):
                assert comparable(nbformat.read(committed / name, as_version=4)) == comparable(
                    nbformat.read(generated / name, as_version=4)), (
                    f"exercises/{assignment}/{name} differs from the release generated from solutions/: "
                    "run `make exercises`")
            else:
                assert (committed / name).read_bytes() == (generated / name).read_bytes(), name

    def test_release_has_no_solutions_or_hidden_tests(self, graded):
        text = graded["release_path"].read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text

    def test_solution_gets_full_marks(self, graded):
        assert graded["max"] > 0
        failed = [name for name, score in graded["cells"]["solution"].items() if not score]
        assert graded["scores"]["solution"] == graded["max"], f"test cells without points: {failed}"

    def test_untouched_release_scores_zero(self, graded):
        assert graded["scores"]["untouched"] == 0

    def test_convolution_ignoring_stride_gets_partial_credit(self, graded):
        a, cells = graded["assignment"], graded["cells"]["nostride"]
        assert 0 < graded["scores"]["nostride"] < graded["max"]
        for name in NOSTRIDE_PASSES[a]:
            assert cells[name] > 0, name
        for name in NOSTRIDE_FAILS[a]:
            assert cells[name] == 0, name

    def test_patched_comparisons_gain_nothing(self, graded):
        assert graded["scores"]["cheat"] <= graded["scores"]["nostride"]
        for name, score in graded["cells"]["cheat"].items():
            assert score <= graded["cells"]["nostride"][name], name

    def test_edited_and_deleted_test_cells_are_graded_by_the_originals(self, graded):
        assert graded["cells"]["tampered"] == graded["cells"]["nostride"]
        edited, deleted = NOSTRIDE_FAILS[graded["assignment"]][:2]
        log = graded["logs"]["tampered"]
        assert f"Attribute 'checksum' for cell {edited} has changed" in log, log
        assert f"Missing grade cell {deleted}" in log, log

    def test_no_spurious_checksum_warnings(self, graded):
        """Untouched hidden-test cells are restored silently (nbgrader#1961), so a warning means tampering."""
        for student, log in graded["logs"].items():
            if student != "tampered":
                assert "checksum" not in log, f"{student}: {log}"

    def test_feedback_is_html(self, graded):
        for student, path in graded["feedback"].items():
            assert path.is_file(), student
            html = path.read_text()
            assert "<html" in html.lower() and "Score" in html, student


class TestA1ConvForward(PipelineTests):
    assignment = "a1_conv_forward"


class TestA2Backward(PipelineTests):
    assignment = "a2_backward"


def test_every_assignment_has_pipeline_tests():
    in_solutions = sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())
    tested = sorted(cls.assignment for cls in PipelineTests.__subclasses__())
    assert in_solutions == tested
