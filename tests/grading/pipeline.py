"""The nbgrader pipeline of the exercises, end to end (a separate run: `make test-grading`).

For each assignment, in a temporary course directory configured by the repository's
nbgrader_config.py: generate the student release from solutions/ and check that exercises/
is exactly that (no drift); then submit, autograde and generate feedback for several
students through nbgrader's Python API, and read their scores from the gradebook:

* ``solution``  — the source solutions pasted into the release: full marks;
* ``untouched`` — the release as handed out: 0 points, and autograde does not crash;
* ``partial``   — the solutions with one typical bug (the assignment's ``bug``, e.g. a
  convolution that ignores its stride): partial credit, the expected cells pass and fail;
* ``cheat``     — ``partial`` plus a solution cell that makes numpy's comparisons (and the
  grading helper's ``check``) always succeed: no more than ``partial`` scores honestly;
* ``tampered``  — ``partial`` with one failing test cell emptied and another deleted: graded
  by the original tests (restored from the gradebook), so exactly the ``partial`` score.

Each assignment has its own test module, ``test_<assignment>.py``, with a subclass of
:class:`PipelineTests` that states its bug (`--dist loadscope` gives each class a worker).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

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


class Bug(NamedTuple):
    """A typical mistake, put into one solution cell of the ``partial`` submission.

    ``cell``: the grade_id of the solution cell; ``pattern`` / ``replacement``: a regular
    expression substitution applied to the solution region of that cell (the code between
    ``### BEGIN SOLUTION`` and the end of the cell); ``passes`` / ``fails``: test cells
    (grade_ids) that the buggy code passes / fails; the first two of ``fails`` are the ones
    the ``tampered`` student edits and deletes.
    """
    cell: str
    pattern: str
    replacement: str
    passes: tuple[str, ...]
    fails: tuple[str, ...]

    def apply(self, source: str) -> str:
        head, body = source.split("### BEGIN SOLUTION", 1)
        changed = re.sub(self.pattern, self.replacement, body)
        assert changed != body, f"the bug {self.pattern!r} -> {self.replacement!r} changes nothing in {self.cell}"
        return head + "### BEGIN SOLUTION" + changed

CHEAT = """import numpy as np, numpy.testing, numbanet.grading
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, bool)
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
numbanet.grading.check = lambda *args, **kwargs: None
"""
STUDENTS = ["solution", "untouched", "partial", "cheat", "tampered"]
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


def submission(release: nbformat.NotebookNode, solutions: dict, student: str, bug: Bug):
    """The notebook ``student`` hands in: the release (a deep copy) with their solution cells."""
    nb = nbformat.from_dict(release)
    answer_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for position, cell in enumerate(answer_cells if student != "untouched" else []):
        grade_id = cell.metadata.nbgrader.grade_id
        source = solutions[grade_id]
        if student in ("partial", "cheat", "tampered") and grade_id == bug.cell:
            source = bug.apply(source)
        if student == "cheat" and position == 0:  # before every function and test
            source = CHEAT + source
        cell.source = body_only(source)
    if student == "tampered":
        edited, deleted = bug.fails[:2]
        next(c for c in nb.cells if c.get("id") == edited).source = "# all good\npass"
        nb.cells = [c for c in nb.cells if c.get("id") != deleted]
    return nb


def comparable(nb: nbformat.NotebookNode) -> dict:
    """What a release notebook must reproduce exactly: every cell's id, type, source and metadata."""
    return {"nbformat": (nb.nbformat, nb.nbformat_minor),
            "metadata": {k: v for k, v in nb.metadata.items() if k not in VOLATILE_NOTEBOOK_METADATA},
            "cells": [(c.get("id"), c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]}


def run_course(assignment: str, bug: Bug, course: Path) -> dict:
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
        nbformat.write(submission(release, solutions, student, bug), folder / f"{assignment}.ipynb")
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
    """The checks, for one assignment (a subclass per assignment, in its own test module:
    `--dist loadscope` gives each its own worker)."""

    assignment: str
    bug: Bug

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
            return run_course(assignment, cls.bug, course)

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

    def test_typical_bug_gets_partial_credit(self, graded):
        cells = graded["cells"]["partial"]
        assert 0 < graded["scores"]["partial"] < graded["max"]
        for name in self.bug.passes:
            assert cells[name] > 0, name
        for name in self.bug.fails:
            assert cells[name] == 0, name

    def test_patched_comparisons_gain_nothing(self, graded):
        assert graded["scores"]["cheat"] <= graded["scores"]["partial"]
        for name, score in graded["cells"]["cheat"].items():
            assert score <= graded["cells"]["partial"][name], name

    def test_edited_and_deleted_test_cells_are_graded_by_the_originals(self, graded):
        assert graded["cells"]["tampered"] == graded["cells"]["partial"]
        edited, deleted = self.bug.fails[:2]
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
