"""nbgrader preprocessors that make autograding hold up against tampering and crashes.

``nbgrader_config.py`` puts them into ``nbgrader autograde``'s two passes:

sanitize (before any student code runs)
    ``RestoreCellMetadata``  nbgrader metadata of every known cell back from the gradebook, so a
                             test cell handed in as ``grade: false`` / ``solution: true`` /
                             unlocked is graded as the original test (stock nbgrader crashes on it
                             with "Inconsistent checksums" and the submission scores 0).
    ``RestoreHiddenTests``   untouched hidden-test cells get their hidden tests back silently
                             (no spurious "checksum has changed" warning, jupyter/nbgrader#1961).
    ``IntegrityScan``        parses the cells students wrote (:mod:`numbanet.grading.integrity`),
                             replaces the statements that tamper with grading by ``pass``, deletes
                             Python files handed in next to the notebook, adds a
                             note to the top of the graded notebook (so to the feedback), logs a
                             warning per statement and writes ``integrity.json`` next to it.
execute
    ``SandboxedExecute``     runs the notebook in a kernel inside the sandbox of
                             :mod:`numbanet.grading.sandbox` (bubblewrap: no course folder, no
                             network, read-only library, resource limits), where ``check()``
                             only writes the student's outputs; the verdicts are computed after the
                             run, in a fresh process outside the sandbox, from the locked cells as
                             the gradebook has them, and become the test cells' outputs (which
                             nbgrader then scores).  Built on
    ``ResilientExecute``     nbgrader's Execute, plus recovery: a cell that kills the kernel (or
                             hangs it past an interrupt) gets an error output (0 points if it is a
                             test cell); the kernel is restarted, the non-test cells above it are
                             re-run, except those that killed or hung it, and grading goes on.

Import this module only where nbgrader is installed (``pip install 'numbanet[course]'``).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace

try:
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbformat.notebooknode import NotebookNode
    from nbgrader import utils
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
    from traitlets import Bool, Integer
except ImportError as missing:  # students' installs have no nbgrader: only instructors import this
    raise ImportError(f"numbanet.grading.preprocessors is instructor tooling and needs nbgrader "
                      f"({missing}): pip install 'numbanet[course]'") from missing

from . import OUTBOX_VARIABLE, STUDENT_VARIABLE
from .integrity import REPORT_NAME, feedback_markdown, neutralise, report_entries, scan_notebook
from .sandbox import Sandbox, SandboxedKernelManager, seed_numba_cache

__all__ = ["RestoreCellMetadata", "RestoreHiddenTests", "IntegrityScan", "ResilientExecute", "SandboxedExecute"]


def _source_cells(resources: dict) -> dict:
    """{grade_id: what the gradebook says about the cell}, read once per notebook."""
    info = resources["nbgrader"]
    with Gradebook(info["db_url"]) as gradebook:
        notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
        grades = {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
        solutions = {cell.name for cell in notebook.solution_cells}
        tasks = {cell.name for cell in notebook.task_cells}
        return {cell.name: SimpleNamespace(name=cell.name, locked=bool(cell.locked), source=cell.source,
                                           grade=cell.name in grades, points=grades.get(cell.name),
                                           solution=cell.name in solutions, task=cell.name in tasks)
                for cell in notebook.source_cells}


class RestoreCellMetadata(NbGraderPreprocessor):
    """Put back ``grade``, ``solution``, ``locked``, ``task`` and ``points`` of every cell whose
    ``grade_id`` the gradebook knows, with nbgrader's own "Attribute ... has changed" warning.

    Runs first (DeduplicateIds fails on a grade cell without a grade_id) and so before
    OverwriteCells, which checks only ``locked``, ``points`` and the checksum; the
    checksum covers ``grade`` and ``solution``, so without this a test cell handed in as
    ``grade: false`` makes OverwriteCells raise "Inconsistent checksums" and the whole
    submission fails.  A cell with nbgrader metadata but no grade_id, or one the gradebook does not
    know (a renamed test cell), becomes a plain cell: stock nbgrader would fail on a grade cell
    without a grade_id; the original test is added back by OverwriteCells (``add_missing_cells``),
    like a deleted one.
    """

    def preprocess(self, nb, resources):
        self._known = _source_cells(resources)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        metadata = cell.metadata.get("nbgrader")
        if not metadata:
            return cell, resources
        known = self._known.get(metadata.get("grade_id"))
        if known is None:
            grade_id = metadata.get("grade_id")
            self.log.warning("%s: graded as a plain cell", f"Cell '{grade_id}' does not exist in the database"
                             if grade_id else f"Cell {index} has nbgrader metadata but no grade_id")
            del cell.metadata["nbgrader"]
            return cell, resources
        wanted = {"grade": known.grade, "solution": known.solution, "locked": known.locked}
        if known.task or metadata.get("task"):
            wanted["task"] = known.task
        if known.grade:
            wanted["points"] = known.points
        for key, value in wanted.items():
            got = metadata.get(key, None if key == "points" else False)
            if got != value:
                self.log.warning("Attribute '%s' for cell %s has changed! (should be: %s, got: %s)",
                                 key, known.name, value, got)
                metadata[key] = value
        if not known.grade:
            metadata.pop("points", None)
        return cell, resources


class RestoreHiddenTests(NbGraderPreprocessor):
    """Put the hidden tests back into untouched test cells before OverwriteCells checks them.

    The release holds each hidden-test cell without its ``### BEGIN/END HIDDEN TESTS`` region,
    the gradebook holds it with the region, so OverwriteCells warns "checksum has changed"
    for every such cell of every student (jupyter/nbgrader#1961) and a real warning drowns.
    A cell whose source is exactly the released text is restored here, silently; an edited
    test cell is left alone, so OverwriteCells still warns about it and restores it.
    """

    def preprocess(self, nb, resources):
        self._known = _source_cells(resources)
        self._clear = ClearHiddenTests(enforce_metadata=False)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        known = self._known.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if known is not None and known.locked and cell.source != known.source:
            released = SimpleNamespace(source=known.source)
            if self._clear._remove_hidden_test_region(released) and released.source == cell.source:
                cell.source = known.source
        return cell, resources


class IntegrityScan(NbGraderPreprocessor):
    """Flag and neutralise statements in students' cells that tamper with grading.

    Scanned: every code cell that is not one of the assignment's locked cells (OverwriteCells,
    which runs first, has put those back to the originals), so students' added cells too.
    Each flagged statement is replaced by ``pass`` before the notebook runs (see
    :func:`numbanet.grading.integrity.neutralise`), and handed-in Python files are deleted: the
    tests grade the student's code as it would be without the tampering.
    """

    neutralise = Bool(True, help="Replace flagged statements by `pass` and delete handed-in Python "
                                 "files (False: only report them).").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        locked = {name for name, known in _source_cells(resources).items() if known.locked}
        flagged = scan_notebook(nb, skip=lambda cell: cell.metadata.get("nbgrader", {}).get("grade_id") in locked)
        if self.neutralise:
            for item in flagged:
                cell = nb.cells[item["index"]]
                cell.source = neutralise(cell.source, item["findings"])
        entries = self._handed_in_modules(info) + report_entries(flagged)
        for entry in entries:
            self.log.warning("Integrity check: student %s, %s, %s, line %d: %s -- %s%s", info["student"],
                             info["notebook"], entry["cell"], entry["line"], entry["code"], entry["reason"],
                             "" if not self.neutralise else " (deleted)" if entry["line"] == 0 else " (replaced by pass)")
        if entries:
            note = nbformat.v4.new_markdown_cell(feedback_markdown(entries))
            note.metadata["numbanet"] = {"integrity": True}
            nb.cells.insert(0, note)
        self._write_report(info, entries)
        return nb, resources

    def _handed_in_modules(self, info: dict) -> list:
        """Python files the student handed in next to the notebook (nbgrader copies them into the
        folder the kernel runs in, which comes first on its ``sys.path``: a ``numbanet/grading.py``
        there would replace the grader).  Files of the assignment's source folder are kept."""
        coursedir = CourseDirectory(config=self.config)
        folder = coursedir.format_path(coursedir.autograded_directory, info["student"], info["assignment"])
        source = coursedir.format_path(coursedir.source_directory, ".", info["assignment"])
        entries = []
        for root, _, files in os.walk(folder):
            for name in sorted(files):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, folder)
                if name.endswith(_IMPORTABLE) and not os.path.exists(os.path.join(source, relative)):
                    entries.append({"cell": f"file {relative}", "line": 0, "end_line": 0, "code": "",
                                    "reason": "a Python file handed in with the notebook: imports would load it "
                                              "(e.g. instead of numbanet or numpy); code belongs in the notebook"})
                    if self.neutralise:
                        os.remove(path)
        return entries

    def _write_report(self, info: dict, entries: list) -> None:
        """autograded/<student>/<assignment>/integrity.json: {"student", "assignment", "flagged",
        "notebooks": {notebook: [{"cell", "line", "end_line", "code", "reason"}, ...]}}."""
        coursedir = CourseDirectory(config=self.config)
        folder = coursedir.format_path(coursedir.autograded_directory, info["student"], info["assignment"])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, REPORT_NAME)
        report = {"student": info["student"], "assignment": info["assignment"], "notebooks": {}}
        if os.path.exists(path):  # several notebooks in one assignment
            with open(path, encoding="utf-8") as f:
                report["notebooks"] = json.load(f).get("notebooks", {})
        report["notebooks"][info["notebook"]] = entries
        report["flagged"] = any(report["notebooks"].values())
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)


class ResilientExecute(Execute):
    """nbgrader's Execute that survives a dead or hung kernel.

    Stock nbgrader stops at a dead kernel (``os._exit``, a segfault, out of memory) and records
    an error for the whole submission: 0 points, correct tasks included.  Here the cell that
    killed it gets an error output (so 0 points if it is a test cell), the kernel is restarted,
    the code cells above it that are not test cells are run again, without their outputs and
    without the cells that killed or hung the kernel, and execution goes on with the next cell.
    A cell that times out is interrupted by nbgrader (``Execute.timeout``); if the kernel does
    not answer within ``ping_timeout`` s after that (a loop in compiled code ignores the
    interrupt), it is treated like a dead kernel.
    """

    max_restarts = Integer(8, help="Kernel restarts per notebook before the remaining cells are "
                                   "marked not run.").tag(config=True)
    ping_timeout = Integer(10, help="Seconds a kernel has to answer after an interrupted "
                                    "cell.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._lost = set()      # indices of cells that killed, hung or timed out the kernel
        self._restarts = 0
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        self._check_assign_resources(resources)
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, self.resources
        if self._restarts > self.max_restarts:
            cell.outputs = [_error_output("NotRun", "not run: the kernel died or hung too often in the cells above")]
            return cell, self.resources
        status = self._run(cell, index, store_history=True)
        if status == "ok":
            return cell, self.resources
        self._lost.add(index)
        if status == "timeout":
            self.log.warning("Cell %d timed out and was interrupted; the cells after it still run", index)
            return cell, self.resources
        what = ("the kernel died while running this cell (os._exit, a crash, or out of memory)"
                if status == "died" else "this cell did not stop when interrupted after the time limit")
        cell.outputs.append(_error_output(
            "KernelDied" if status == "died" else "KernelHung",
            f"{what}. The grader restarted the kernel, re-ran the cells above (not this one) and went "
            "on: what this cell defined is lost."))
        self._recover(index, what)
        return cell, self.resources

    def _run(self, cell, index: int, store_history: bool) -> str:
        """Execute one cell: "ok", "timeout" (interrupted, kernel fine), "hung" or "died"."""
        timeout_name = (self.error_on_timeout or {}).get("ename", "CellTimeoutError")
        try:
            self.execute_cell(cell, index, store_history=store_history)
        except DeadKernelError:
            return "died"
        except CellTimeoutError:
            # the reply was faked after the interrupt, but the kernel never went idle: nbclient
            # gave up waiting for its output (stock nbgrader fails the submission here)
            cell.outputs.append(_error_output(timeout_name, "No reply from kernel before timeout"))
        if not any(o.output_type == "error" and o.get("ename") == timeout_name for o in cell.get("outputs", [])):
            return "ok"
        return "timeout" if self._responsive() else "hung"

    def _responsive(self) -> bool:
        timeout, self.timeout = self.timeout, self.ping_timeout
        try:
            return self.wait_for_reply(self.kc.kernel_info()) is not None
        except DeadKernelError:
            return False
        finally:
            self.timeout = timeout

    def _recover(self, index: int, what: str) -> None:
        """Restart the kernel and replay the cells above ``index``; again if a replayed cell fails."""
        while self._restarts < self.max_restarts:
            self._restarts += 1
            self.log.warning("Cell %d: %s; restarting the kernel (%d of at most %d) and re-running the cells "
                             "above it", index, what, self._restarts, self.max_restarts)
            self._restart_kernel()
            failed = self._replay(index)
            if failed is None:
                return
            index_failed, status = failed
            self._lost.add(index_failed)
            what = f"cell {index_failed}, re-run, {'killed' if status == 'died' else 'hung'} the kernel"
        self._restarts = self.max_restarts + 1
        self.log.error("Gave up restarting the kernel: the cells after cell %d are not run", index)

    def _replay(self, index: int):
        """Run the non-test code cells before ``index`` (outputs discarded); (cell, status) of a
        cell that killed or hung the kernel, else None."""
        for j, cell in enumerate(self.nb.cells[:index]):
            if (cell.cell_type != "code" or j in self._lost or utils.is_grade(cell)
                    or not cell.source.strip()):
                continue
            scratch = copy.deepcopy(cell)
            try:
                status = self._run(scratch, j, store_history=False)
            finally:
                self.nb.cells[j] = cell   # execute_cell stores its copy there
            if status == "timeout":
                self._lost.add(j)
            elif status != "ok":
                return j, status
        return None

    def _restart_kernel(self) -> None:
        shutdown, self.shutdown_kernel = self.shutdown_kernel, "immediate"
        try:
            self._cleanup_kernel()
        finally:
            self.shutdown_kernel = shutdown
        self.km = self.create_kernel_manager()
        self.start_new_kernel()
        self.start_new_kernel_client()


_IMPORTABLE = (".py", ".pyc", ".pyo", ".pyw", ".pth", ".so", ".pyd")   # what `import` or `site` may load


def _error_output(name: str, message: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=name, evalue=message,
                                  traceback=[f"\x1b[0;31m{name}\x1b[0m: {message}"])



class SandboxedExecute(ResilientExecute):
    """:class:`ResilientExecute` with the kernel in a sandbox and the verdicts computed outside it.

    Before the first cell: a private folder (``numbanet-kernel-*`` in the system's temporary
    folder) with a copy of the submission's folder as the kernel's working directory, an
    ``outbox`` and a copy of numbanet's compiled-kernel cache; the kernel is started in
    :class:`~numbanet.grading.sandbox.Sandbox` (refused if bubblewrap is unavailable, unless
    ``--Sandbox.unsafe=True``) with ``NUMBANET_GRADING_OUTBOX`` set, so each ``check()`` writes the
    student's outputs there instead of judging them.  Around each test cell the outbox is emptied
    and its contents moved out of the kernel's reach.

    After the last cell, ``python -I verdict.py notebook`` (:mod:`numbanet.grading.verdict`) runs the
    notebook's locked cells (as restored from the gradebook) with ``check()`` recording each test,
    and judges the moved results against them.  Each test cell's outputs become that verdict
    (stdout), plus the kernel's errors and stderr output, plus an ``AssertionError`` if the verdict
    failed; the kernel's own stdout and results in a test cell are dropped (it could print a fake
    "passed" or emit a partial-credit number).  A test cell without a ``check()`` call scores 0,
    with an error in the log: write every test as ``grading.check``.
    """

    verdict_timeout = Integer(900, help="Seconds the verdict process may take for one notebook.").tag(config=True)
    warm_up = Bool(True, help="Compile numbanet's kernels into its cache before the first kernel of this "
                              "process starts (numbanet.grading.warmup): sandboxed kernels only read a copy "
                              "of that cache.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        sandbox = Sandbox(parent=self)
        self._sandbox = sandbox if sandbox.check() else None
        _warm_numba_cache(self.warm_up, self.log)
        self._folder = tempfile.mkdtemp(prefix="numbanet-kernel-")
        self._results = tempfile.mkdtemp(prefix="numbanet-results-")
        try:
            submission = (resources or {}).get("metadata", {}).get("path") or os.getcwd()
            # the kernel and the verdict process draw the same per-student random cases (grading.student_seed)
            self._student = str((resources or {}).get("nbgrader", {}).get("student") or "")
            shutil.copytree(submission, os.path.join(self._folder, "work", "cwd"),
                            ignore=shutil.ignore_patterns(REPORT_NAME, "*.ipynb"))
            os.makedirs(os.path.join(self._folder, "outbox"))
            seed_numba_cache(os.path.join(self._folder, "work", "numba-cache"))
            nb, resources = super().preprocess(nb, resources, km)
            self._judge(nb)
            return nb, resources
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)
            shutil.rmtree(self._results, ignore_errors=True)

    def create_kernel_manager(self):
        kernel_name = self.kernel_name or self.nb.metadata.get("kernelspec", {}).get("name") or "python3"
        self.km = SandboxedKernelManager(kernel_name=kernel_name, config=self.config, parent=self,
                                         sandbox=self._sandbox, folder=self._folder, hidden=self._hidden(),
                                         kernel_env={OUTBOX_VARIABLE: os.path.join(self._folder, "outbox"),
                                                     STUDENT_VARIABLE: self._student,
                                                     "NUMBA_CACHE_DIR": os.path.join(self._folder, "work", "numba-cache")})
        return self.km

    def _hidden(self) -> tuple:
        """Folders no bind into the sandbox may contain: the course and nbgrader's exchange."""
        folders = [CourseDirectory(config=self.config).root]
        exchange = self.config.get("Exchange", {}).get("root")
        return tuple(os.path.abspath(f) for f in [*folders, *([exchange] if isinstance(exchange, str) else [])])

    def preprocess_cell(self, cell, resources, index):
        test = cell.cell_type == "code" and utils.is_grade(cell) and cell.source.strip()
        outbox = os.path.join(self._folder, "outbox")
        if test:
            _empty(outbox)
        cell, resources = super().preprocess_cell(cell, resources, index)
        if test:   # out of the kernel's reach, which could rewrite them later
            target = os.path.join(self._results, cell.metadata.nbgrader.grade_id)
            os.makedirs(target, exist_ok=True)
            for name in os.listdir(outbox):
                if name.endswith((".txt", ".npz")) and name.isascii():
                    _take(os.path.join(outbox, name), os.path.join(target, name))
            _empty(outbox)
        return cell, resources

    def _judge(self, nb) -> None:
        """Run the verdict process on the locked cells and the moved results; set the test cells' outputs."""
        from IPython.core.inputtransformer2 import TransformerManager
        transform = TransformerManager().transform_cell
        cells = [{"grade_id": cell.metadata.nbgrader.grade_id, "source": transform(cell.source),
                  "test": utils.is_grade(cell)}
                 for cell in nb.cells if cell.cell_type == "code" and utils.is_locked(cell)]
        with open(os.path.join(self._results, "cells.json"), "w", encoding="utf-8") as f:
            json.dump(cells, f)
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR", "LANG") if key in os.environ}
        env.update(NUMBA_DISABLE_JIT="1", OMP_NUM_THREADS="1", LC_ALL="C.UTF-8", NBGRADER_EXECUTION="autograde")
        env[STUDENT_VARIABLE] = self._student
        done = subprocess.run([sys.executable, "-I", os.path.join(package, "grading", "verdict.py"), "notebook",
                               self._results, os.path.dirname(package)], env=env, cwd=self._results,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=self.verdict_timeout)
        path = os.path.join(self._results, "verdicts.json")
        if done.returncode != 0 or not os.path.exists(path):
            raise RuntimeError("the verdict process failed: " + done.stderr.decode("utf-8", "replace")[-3000:])
        with open(path, encoding="utf-8") as f:
            verdicts = json.load(f)
        for cell in nb.cells:
            verdict = verdicts.get(cell.metadata.get("nbgrader", {}).get("grade_id")) if cell.cell_type == "code" else None
            if verdict is None:
                continue
            if not verdict["checks"]:
                self.log.error("Test cell %s calls no grading.check: 0 points (its outcome in the kernel is "
                               "the student's code's to decide)", cell.metadata.nbgrader.grade_id)
            kept = [o for o in cell.outputs if o.output_type == "error"
                    or (o.output_type == "stream" and o.get("name") == "stderr")]
            outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(verdict["lines"]) + "\n"), *kept]
            if not verdict["passed"]:
                outputs.append(_error_output("AssertionError", verdict["summary"]))
            cell.outputs = outputs


_warmed = False   # numbanet.grading.warmup has run in this process


def _warm_numba_cache(wanted: bool, log) -> None:
    global _warmed
    if wanted and not _warmed:
        done = subprocess.run([sys.executable, "-m", "numbanet.grading.warmup"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=3600)
        for line in (done.stderr or "").splitlines()[-5:]:
            log.warning("%s", line)
        _warmed = True


_MAX_RESULT_FILE = 512 << 20   # bytes: a larger results file from the kernel is not taken (its check fails)


def _take(path: str, target: str) -> None:
    """Copy the regular file ``path`` (written by student code: never follow a symbolic link,
    never block on a pipe) to ``target``."""
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_RESULT_FILE:
            return
        with open(target, "wb") as copy_:
            shutil.copyfileobj(source, copy_)


def _empty(folder: str) -> None:
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
