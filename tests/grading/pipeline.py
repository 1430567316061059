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
  by the original tests (restored from the gradebook), so exactly the ``partial`` score;
* ``borrower``  — (assignments with a ``borrower``, a :class:`Substitute`) the solutions with some
  graded pieces replaced by numbanet's own (an alias of the model zoo, ``F.conv2d`` after reloading
  its kernels, ``nn.Conv2d(...).num_parameters()``): those pieces' test cells get 0, the others full marks;
* the assignment's ``wrong_answers`` (a :class:`Substitute` each) — the solutions with a wrong
  implementation that gives the right values on the fixed cases (a racing scatter, a kernel whose
  thread 0 does all the work): the hidden tests written for it get 0, the others full marks.

Every student's notebook also goes through the integrity scan: ``cheat`` must be flagged, the
others not.  One assignment's class mixes in :class:`AttackChecks`, which adds a student per
entry of :data:`ATTACKS` (ways of cheating or crashing, against the integrity scan, metadata
restore and kernel recovery of lib/numbanet/grading/preprocessors.py) and checks that none scores
more than the honest submission it starts from; they cost CI time, so only one assignment runs them.

Each assignment has its own test module, ``test_<assignment>.py``, with a subclass of
:class:`PipelineTests` that states its bug (`--dist loadscope` gives each class a worker).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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

class Substitute(NamedTuple):
    """A student who hands in other code for some graded pieces: numbanet's own version (the
    ``borrower``) or a wrong implementation (``wrong_answers``).

    ``code``: grade_id of a solution cell -> code appended to it (rebinding names the cell
    defined); ``fails``: the test cells that must get 0 (``"all"``: every one); ``unsure``: test
    cells whose points are not checked, beyond not exceeding the solution's (a race that the
    visible tests see only on some runs); every other test cell must keep the solution's points.
    """
    code: dict
    fails: tuple | str
    unsure: tuple = ()

    def check_scores(self, graded: dict, student: str) -> None:
        cells, solution = graded["cells"][student], graded["cells"]["solution"]
        fails = set(cells) if self.fails == "all" else set(self.fails)
        assert fails | set(self.unsure) <= set(cells), (fails | set(self.unsure)) - set(cells)
        for name, score in cells.items():
            if name in self.unsure:
                assert score <= solution[name], (student, name)
            else:
                assert score == (0 if name in fails else solution[name]), (student, name, score)

CHEAT = """import numpy as np, numpy.testing, numbanet.grading
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, bool)
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
numbanet.grading.check = lambda *args, **kwargs: None
"""
STUDENTS = ["solution", "untouched", "partial", "cheat", "tampered"]

# Attack students: what each puts into the notebook, and the honest submission it starts from
# (its score must not exceed that one's).
ASSERTIONS_CHEAT = """import builtins, numpy, numpy.testing
class AssertionError(Exception):
    pass
builtins.AssertionError = type("AssertionError", (Warning,), {})
def assert_allclose(*args, **kwargs):
    return None
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = assert_allclose
"""
GRADER_CHEAT = """import importlib, sys, types, numbanet
_fake = types.ModuleType("numbanet.grading")
_fake.check = lambda *args, **kwargs: print("passed")
_fake.randn = _fake.array = lambda *args, **kwargs: None
importlib.reload = lambda module: _fake
sys.modules["numbanet.grading"] = _fake
setattr(numbanet, "grading", _fake)
"""
# ... and a fake grader handed in next to the notebook, where the kernel's imports look first
GRADER_FILES = {"numbanet/__init__.py": "",
                "numbanet/grading.py": "def check(*args, **kwargs):\n    print('passed')\n\n"
                                       "def randn(*args, **kwargs):\n    return None\n\narray = randn\n"}
EXIT_AFTER_CODE = "\nimport os\nos._exit(0)\n"
# a segfault the integrity scan does not know: strides that walk off the array (an im2col bug)
CRASH_AFTER_CODE = ("\nnp.lib.stride_tricks.as_strided(np.zeros(1), shape=(1 << 40,), "
                    "strides=(1 << 20,)).sum()\n")
# idle, so it spares CI's cores: nbgrader interrupts it like a busy loop, after Execute.timeout
LOOP_BEFORE_CODE = "import time\nwhile True:\n    time.sleep(0.5)\n"

# Escapes that no statement scan can stop, appended to the buggy solution cell (after the student's
# definitions): each runs in the sandboxed kernel and prints what happened.  {course} is the course folder.
ESCAPE_AFTER_CODE = """
import functools, importlib, json, os, time, types
import numpy as np, numbanet.grading
def _attempt(what, action):
    try:
        print(what, "->", action())
    except BaseException as error:   # noqa: BLE001 - an attack that is stopped goes on with the next
        print(what, "-> blocked:", type(error).__name__, str(error)[:120])
_roots = [os.path.abspath(os.path.join(*[".."] * up)) for up in range(1, 4)] + [{course!r}]   # autograded/<student>/<a>
def _steal_solution():   # the instructor's notebook (solutions, hidden tests): run its conv2d_naive
    for root in _roots:
        for folder in ("solutions", "source"):
            path = os.path.join(root, folder, "{assignment}", "{assignment}.ipynb")
            if os.path.exists(path):
                cells = json.load(open(path))["cells"]
                exec("".join(next(c["source"] for c in cells
                                  if c["metadata"].get("nbgrader", {{}}).get("grade_id") == "{cell}")), globals())
                return "stole " + path
    return "no solutions found"
def _rewrite_grader():   # every later check, in the kernel and in the grader's own process, passes
    with open(numbanet.grading.__file__, "a") as f:
        f.write("\\ncheck = lambda *args, **kwargs: print('passed')\\n")
    return "rewrote " + numbanet.grading.__file__
_fake = types.ModuleType("numbanet.grading")
_fake.check, _fake.randn, _fake.array = (lambda *args, **kwargs: print("passed")), (lambda *a, **k: None), (lambda *a, **k: None)
def _patch_reload():
    vars(importlib).update(reload=lambda module: _fake)
    return "importlib.reload patched"
def _patch_numpy():
    vars(np).update(allclose=lambda *args, **kwargs: True)
    functools.partial(setattr, np)("array_equal", lambda *args, **kwargs: True)
    return "numpy patched"
def _shell():   # a shell: copy the hidden tests out, write into the gradebook's folder, delete the gradebook
    run = importlib.import_module("subprocess").run
    script = "; ".join(f"cp -r {{r}}/solutions /tmp/stolen; [ -f {{r}}/gradebook.db ] && touch {{r}}/escape-was-here "
                       f"&& echo x >> {{r}}/gradebook.db" for r in _roots)
    return run(["sh", "-c", script], capture_output=True, text=True).returncode
def _write_gradebook_folder():
    for root in _roots:
        if os.path.exists(os.path.join(root, "gradebook.db")):
            open(os.path.join(root, "escape-was-here"), "w").write("x")
            return "wrote next to " + os.path.join(root, "gradebook.db")
    return "no gradebook found"
def _fork_bomb():   # bounded: at most 1000 children, all alive at once, until the pipe closes
    leave, started = getattr(os, "_" + "exit"), 0
    read_end, write_end = os.pipe()
    try:
        for started in range(1000):
            if os.fork() == 0:
                os.close(write_end)
                os.read(read_end, 1)
                leave(0)
    except OSError as error:
        result = f"stopped after {{started}} processes ({{type(error).__name__}})"
    else:
        result = "1000 processes started"
    os.close(write_end)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return result
def _memory_bomb():   # bounded: 6 GiB at once
    return f"allocated {{np.ones((6 << 30) // 8).nbytes >> 30}} GiB"
for _what, _action in [("solutions", _steal_solution), ("grader file", _rewrite_grader), ("gradebook folder",
                       _write_gradebook_folder), ("shell", _shell), ("fork bomb", _fork_bomb),
                       ("memory bomb", _memory_bomb), ("numpy", _patch_numpy), ("reload", _patch_reload)]:
    _attempt(_what, _action)
"""
# what the sandbox must have made of each (the escape student's output lines)
ESCAPES_STOPPED = ("solutions -> no solutions found", "grader file -> blocked: ",
                   "gradebook folder -> no gradebook found", "fork bomb -> stopped after",
                   "memory bomb -> blocked: MemoryError")

ATTACKS = {
    "escape": "partial",      # the escapes above: the sandbox and the outside verdict stop them
    "assertions": "partial",  # AssertionError and numpy's assert helpers redefined
    "grader": "partial",      # a fake grader: importlib.reload, sys.modules patched; numbanet/grading.py handed in
    "metadata": "partial",    # test cells handed in as grade: false / solution: true / unlocked / renamed
    "exit": "solution",       # os._exit(0) after correct code in the last solution cell
    "crash": "solution",      # a segfault after correct code in the last solution cell
    "loop": "solution",       # an infinite loop before the definitions in the first solution cell
}
FLAGGED = {"cheat", "assertions", "grader", "exit", "escape"}   # students the integrity scan must flag
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


def submission(release: nbformat.NotebookNode, solutions: dict, student: str, bug: Bug,
               substitutes: dict | None = None, course: Path = Path("/nonexistent"), assignment: str = ""):
    """The notebook ``student`` hands in: the release (a deep copy) with their solution cells
    (``course`` and ``assignment``: where the escape student looks for the instructor's files)."""
    nb = nbformat.from_dict(release)
    answer_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    buggy = student in ("partial", "cheat", "tampered") or ATTACKS.get(student) == "partial"
    for position, cell in enumerate(answer_cells if student != "untouched" else []):
        grade_id = cell.metadata.nbgrader.grade_id
        source = solutions[grade_id]
        if buggy and grade_id == bug.cell:
            source = bug.apply(source)
            if student == "escape":
                source += ESCAPE_AFTER_CODE.format(course=str(course), assignment=assignment, cell=bug.cell)
        if position == 0:  # before every function and test
            source = {"cheat": CHEAT, "assertions": ASSERTIONS_CHEAT, "grader": GRADER_CHEAT,
                      "loop": LOOP_BEFORE_CODE}.get(student, "") + source
        if position == len(answer_cells) - 1:
            source += {"exit": EXIT_AFTER_CODE, "crash": CRASH_AFTER_CODE}.get(student, "")
        if student in (substitutes or {}):
            source += "\n" + substitutes[student].code.get(grade_id, "")
        cell.source = body_only(source)
    if student == "tampered":
        edited, deleted = bug.fails[:2]
        next(c for c in nb.cells if c.get("id") == edited).source = "# all good\npass"
        nb.cells = [c for c in nb.cells if c.get("id") != deleted]
    if student == "metadata":
        tests = {c.get("id"): c.metadata.nbgrader for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
        tests[bug.fails[0]]["grade"] = False                    # a failing test: not graded
        tests[bug.fails[1]].update(solution=True, grade=False)   # ... an answer cell, graded by hand
        tests[bug.fails[-1]]["locked"] = False                  # ... editable
        tests[bug.passes[0]]["points"] = 100.0                  # a passing test worth more
        tests[bug.passes[-1]]["grade_id"] += "_renamed"         # a test nbgrader does not know
    return nb


def comparable(nb: nbformat.NotebookNode) -> dict:
    """What a release notebook must reproduce exactly: every cell's id, type, source and metadata."""
    return {"nbformat": (nb.nbformat, nb.nbformat_minor),
            "metadata": {k: v for k, v in nb.metadata.items() if k not in VOLATILE_NOTEBOOK_METADATA},
            "cells": [(c.get("id"), c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]}


def run_course(assignment: str, bug: Bug, course: Path, attacks: tuple[str, ...] = (),
               substitutes: dict | None = None) -> dict:
    api = NbGraderAPI(config=course_config(course))
    # the escape student's statements are only reported, not removed: the sandbox alone must stop them
    report_only = course_config(course)
    report_only.IntegrityScan.neutralise = False
    apis = {"escape": NbGraderAPI(config=report_only)}
    substitutes = substitutes or {}
    students = STUDENTS + list(attacks) + list(substitutes)

    result = api.generate_assignment(assignment)
    assert result["success"], result.get("error")
    release_path = course / "exercises" / assignment / f"{assignment}.ipynb"
    release = nbformat.read(release_path, as_version=4)
    source = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}

    instructor_files = fingerprint(course)
    logs, feedback, integrity = {}, {}, {}
    for student in students:
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(submission(release, solutions, student, bug, substitutes, course, assignment),
                       folder / f"{assignment}.ipynb")
        for name, text in (GRADER_FILES if student == "grader" else {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        result = apis.get(student, api).autograde(assignment, student)
        assert result["success"], f"{student}: {result.get('error')}\n{result.get('log')}"
        logs[student] = result.get("log", "")
        integrity[student] = json.loads((course / "autograded" / student / assignment / "integrity.json").read_text())
        result = api.generate_feedback(assignment, student)
        assert result["success"], f"{student}: {result.get('error')}"
        feedback[student] = course / "feedback" / student / assignment / f"{assignment}.html"

    changed = sorted(name for name, data in fingerprint(course).items() if instructor_files.get(name) != data)
    for name in changed:   # a failed sandbox must not leave the repository's library rewritten for later tests
        if name in instructor_files and name.startswith(str(REPO)):
            Path(name).write_bytes(instructor_files[name])
    scores, cells = {}, {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        max_score = gb.find_assignment(assignment).max_score
        for student in students:
            scores[student] = gb.find_submission(assignment, student).score
            nb_sub = gb.find_submission_notebook(assignment, assignment, student)
            cells[student] = {g.name: g.score for g in nb_sub.grades}
    order = [c.get("id") for c in source.cells]
    return {"assignment": assignment, "course": course, "release_path": release_path, "max": max_score,
            "scores": scores, "cells": cells, "logs": logs, "feedback": feedback, "integrity": integrity,
            "answer_cells": [grade_id for grade_id in order if grade_id in solutions], "order": order,
            "changed_instructor_files": changed}


def fingerprint(course: Path) -> dict:
    """{path: contents} of what student code must not change: the installed library, nbgrader_config.py,
    the course's sources; and the names of the files next to the gradebook (none may appear)."""
    files = [*sorted((REPO / "lib" / "numbanet").rglob("*.py")), REPO / "nbgrader_config.py",
             *sorted(p for p in (course / "solutions").rglob("*") if p.is_file())]
    found = {str(path): path.read_bytes() for path in files}
    found[f"{course}/ (files)"] = repr(sorted(p.name for p in course.iterdir()
                                               if p.is_file() and not p.name.startswith("gradebook.db"))).encode()
    return found


class PipelineTests:
    """The checks, for one assignment (a subclass per assignment, in its own test module:
    `--dist loadscope` gives each its own worker)."""

    assignment: str
    bug: Bug
    attacks: tuple[str, ...] = ()   # names from ATTACKS: extra students (AttackChecks sets them all)
    borrower: Substitute | None = None  # a student handing in numbanet's pieces
    wrong_answers: dict = {}   # student name -> Substitute: wrong code that only the hidden tests catch

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
            substitutes = {**({"borrower": cls.borrower} if cls.borrower else {}), **cls.wrong_answers}
            return run_course(assignment, cls.bug, course, cls.attacks, substitutes)

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

    def test_numbanets_own_pieces_earn_nothing(self, graded):
        """Aliases of the model zoo, numbanet's functions (also after reloading their kernels or
        restoring them) in place of the student's: those test cells get 0, and say why."""
        if self.borrower is None:
            pytest.skip("no borrower student for this assignment")
        self.borrower.check_scores(graded, "borrower")
        assert "off limits" in graded["feedback"]["borrower"].read_text()

    def test_wrong_answers_lose_the_points_of_their_hidden_tests(self, graded):
        """Wrong code that the fixed cases cannot tell from right (a racing scatter, a grid-stride loop
        by blockDim.x, an untiled matrix product): the hidden tests written for it get 0, the rest full marks."""
        if not self.wrong_answers:
            pytest.skip("no wrong-answer students for this assignment")
        for student, wrong in self.wrong_answers.items():
            wrong.check_scores(graded, student)

    def test_random_hidden_cases_are_seeded_per_student(self, graded):
        """Hidden tests with random configurations (grading.student_rng) draw other shapes for each
        student: the seed printed in the feedback differs between students."""
        seeds = {student: set(re.findall(r"student seed (\d+)", path.read_text()))
                 for student, path in graded["feedback"].items()}
        if not any(seeds.values()):
            pytest.skip("no random hidden cases in this assignment")
        assert len({frozenset(s) for s in seeds.values() if s}) > 1, seeds

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

    # -- integrity scan, metadata restore and kernel recovery ------------------------------------

    def test_integrity_scan_flags_exactly_the_cheats(self, graded):
        """integrity.json for every student; the flagged ones also get a logged warning per
        statement and a note at the top of their feedback."""
        for student, report in graded["integrity"].items():
            entries = [e for found in report["notebooks"].values() for e in found]
            html = graded["feedback"][student].read_text()
            if student in FLAGGED:
                assert report["flagged"] and entries, student
                for e in entries:
                    assert (f"Integrity check: student {student}, {graded['assignment']}, {e['cell']}, "
                            f"line {e['line']}:") in graded["logs"][student], (student, e)
                assert "Integrity check" in html, student
            else:
                assert not report["flagged"], f"{student} flagged: {entries}"
                assert "Integrity check" not in html, student

    def test_integrity_report_command_lists_the_flagged(self, graded):
        done = subprocess.run([sys.executable, "-m", "numbanet.grading.integrity", "report", str(graded["course"])],
                              capture_output=True, text=True, check=True)
        listed = {line.split(" / ")[0] for line in done.stdout.splitlines() if " / " in line}
        assert listed == FLAGGED & set(graded["integrity"]), done.stdout


class AttackChecks:
    """The attack students (all of :data:`ATTACKS`) and their checks, mixed into one assignment's
    class: ``class TestA1ConvForward(AttackChecks, PipelineTests)``.  Every attack scores no more
    than the honest submission it starts from."""

    attacks = tuple(ATTACKS)

    def test_escapes_are_stopped_by_the_sandbox(self, graded):
        """Stealing the solutions, rewriting the grader on disk, writing next to the gradebook, a
        shell, a fork bomb, a memory bomb, patching numpy and importlib.reload through vars() and
        functools.partial: the escape student scores no more than the buggy submission (the tests
        before the attacks exactly as much; the fake grader costs it the tests after them), each
        attempt was stopped inside the sandbox, the instructor's files are unchanged, and the
        students graded after it were graded normally."""
        cells, partial, order = self.honest(graded, "escape"), graded["cells"]["partial"], graded["order"]
        assert all(cells[name] == partial[name] for name in cells if order.index(name) < order.index(self.bug.cell))
        assert graded["changed_instructor_files"] == []
        graded_nb = nbformat.read(graded["course"] / "autograded" / "escape" / graded["assignment"]
                                  / f"{graded['assignment']}.ipynb", as_version=4)
        printed = "".join(o.get("text", "") for c in graded_nb.cells if c.cell_type == "code" for o in c.outputs)
        for line in ESCAPES_STOPPED:
            assert line in printed, (line, printed)
        later = list(ATTACKS)[list(ATTACKS).index("escape") + 1:]
        assert later and all(graded["scores"][student] is not None for student in later)

    def honest(self, graded, attack: str) -> dict:
        """The attack's cell scores, after checking they never exceed the honest submission's."""
        assert attack in graded["cells"], f"{attack} is not among this class's attacks"
        cells, baseline = graded["cells"][attack], graded["cells"][ATTACKS[attack]]
        assert graded["scores"][attack] <= graded["scores"][ATTACKS[attack]], attack
        for name, score in cells.items():
            assert score <= baseline[name], (attack, name)
        return cells

    def test_redefined_assertions_gain_nothing(self, graded):
        assert self.honest(graded, "assertions") == graded["cells"]["partial"]

    def test_patched_grading_helper_gains_nothing(self, graded):
        """A fake grader through importlib.reload / sys.modules, and one handed in as
        numbanet/grading.py next to the notebook: removed, graded honestly."""
        assert self.honest(graded, "grader") == graded["cells"]["partial"]
        entries = graded["integrity"]["grader"]["notebooks"][graded["assignment"]]
        reasons = [e["reason"] for e in entries]
        assert any("importlib.reload" in r for r in reasons) and any("sys.modules" in r for r in reasons), reasons
        assert {e["cell"] for e in entries if not e["line"]} == {f"file {name}" for name in GRADER_FILES}
        autograded = graded["course"] / "autograded" / "grader" / graded["assignment"]
        assert not any((autograded / name).exists() for name in GRADER_FILES)

    def test_changed_test_cell_metadata_is_restored(self, graded):
        """grade: false, solution: true, unlocked, more points, a renamed grade_id: the original tests grade."""
        assert self.honest(graded, "metadata") == graded["cells"]["partial"]
        log = graded["logs"]["metadata"]
        for attribute, cell in (("grade", self.bug.fails[0]), ("solution", self.bug.fails[1]),
                                ("locked", self.bug.fails[-1]), ("points", self.bug.passes[0])):
            assert f"Attribute '{attribute}' for cell {cell} has changed" in log, (attribute, log)
        assert f"Missing grade cell {self.bug.passes[-1]}" in log, log

    def test_exit_after_correct_code_is_neutralised(self, graded):
        """os._exit(0) is replaced by pass before the notebook runs: the correct code is graded."""
        assert self.honest(graded, "exit") == graded["cells"]["solution"]
        entries = graded["integrity"]["exit"]["notebooks"][graded["assignment"]]
        assert [e["code"] for e in entries] == ["os._exit(0)"], entries

    def test_kernel_death_costs_only_the_tests_after_it(self, graded):
        """A segfault in the last solution cell: the kernel is restarted, the cells above re-run;
        the tests before it keep their points, the tests of what that cell defined get 0."""
        cells, solution = self.honest(graded, "crash"), graded["cells"]["solution"]
        order = graded["order"]
        killer = order.index(graded["answer_cells"][-1])
        for name, score in cells.items():
            assert score == (solution[name] if order.index(name) < killer else 0), name
        assert "restarting the kernel" in graded["logs"]["crash"]

    def test_infinite_loop_costs_only_its_task(self, graded):
        """A loop before the first task's definitions: interrupted after Execute.timeout; that
        task's tests get 0, every later task its points."""
        cells, solution = self.honest(graded, "loop"), graded["cells"]["solution"]
        order = graded["order"]
        first, second = (order.index(name) for name in graded["answer_cells"][:2])
        for name, score in cells.items():
            assert score == (0 if first < order.index(name) < second else solution[name]), name
