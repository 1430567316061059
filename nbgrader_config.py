"""nbgrader configuration for the numbanet exercises (see solutions/README.md, the instructor guide).

The course directory is the repository root:

    solutions/<assignment>/<assignment>.ipynb   nbgrader's "source" step (solutions + hidden tests)
    exercises/<assignment>/<assignment>.ipynb   nbgrader's "release" step (what students get)
    submitted/, autograded/, feedback/, gradebook.db   created by nbgrader when you grade

Run nbgrader from the repository root, e.g. ``nbgrader generate_assignment a1_conv_forward --force``.
"""
import os

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec,
                                    SaveAutoGrades)

from numbanet.grading.preprocessors import IntegrityScan, RestoreCellMetadata, RestoreHiddenTests, SandboxedExecute

c = get_config()  # noqa: F821 - defined by traitlets when it loads this file

c.CourseDirectory.course_id = "numbanet"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# nbgrader's layout is <root>/{nbgrader_step}/{student_id}/{assignment_id}; with student "." for the
# source and release steps, solutions/<assignment> and exercises/<assignment> are those two steps.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# Per cell.  The slowest graded cell (a student's naive loops plus the reference processes) takes
# a few seconds; an infinite loop is interrupted after this (KeyboardInterrupt) and costs its cell
# (one that ignores the interrupt: the kernel is restarted, see ResilientExecute below).
c.Execute.timeout = 60
c.Execute.startup_timeout = 120

# A deleted test cell is put back from the gradebook and graded.
c.OverwriteCells.add_missing_cells = True

# Hand-ins collected outside JupyterHub (Colab downloads, an LMS): `nbgrader zip_collect <assignment>`
# takes downloaded/<assignment>/archive/<student id>_<assignment>.ipynb (or .zip files of them), also
# as browsers and Colab rename them: "<id>_<assignment> (1).ipynb", "<id>_Copy of <assignment>.ipynb".
c.FileNameCollectorPlugin.named_regexp = (r".*/(?:Copy of )?(?P<student_id>[A-Za-z0-9]+)_(?:Copy of )?"
                                          r"(?P<file_id>a\d+_\w*[A-Za-z0-9])(?: ?\(\d+\))?\.ipynb$")


# Autograde, in two passes (lib/numbanet/grading/preprocessors.py; "Security" in solutions/README.md).
# Sanitize, before any student code runs: nbgrader's steps, plus
#   RestoreCellMetadata  test cells handed in as grade: false / solution: true / unlocked / without a
#                        grade_id are graded as the originals (stock nbgrader fails the whole
#                        submission on them);
#   RestoreHiddenTests   no spurious "checksum has changed" warning for hidden-test cells
#                        (jupyter/nbgrader#1961): a checksum warning in the log means tampering;
#   IntegrityScan        statements in students' cells that tamper with grading (np.allclose = ...,
#                        importlib.reload = ..., os._exit, ...) are replaced by `pass`, noted at the
#                        top of the graded notebook (so in the feedback), logged, and listed in
#                        autograded/<student>/<assignment>/integrity.json
#                        (`python -m numbanet.grading.integrity report` lists flagged submissions).
c.Autograde.sanitize_preprocessors = [ClearOutput, RestoreCellMetadata, DeduplicateIds, OverwriteKernelspec,
                                      RestoreHiddenTests, OverwriteCells, IntegrityScan, CheckCellMetadata]
# Execute: nbgrader's list with SandboxedExecute in place of Execute.  The student's kernel runs in a
# bubblewrap sandbox (numbanet/grading/sandbox.py: no course folder, no network, the library read-only,
# private /tmp and home, the limits below); grading.check() there only writes the student's outputs, and
# the verdicts are computed after the run in a process outside the sandbox, from the locked cells as the
# gradebook has them.  A cell that kills or hangs the kernel costs that cell (and what it defined); the
# kernel is restarted, the cells above re-run.  Without bubblewrap autograde refuses to run student code:
# `apt-get install bubblewrap`, or (not recommended) `nbgrader autograde A --Sandbox.unsafe=True`.
c.Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.Sandbox.memory_limit = 4 << 30     # bytes of address space per process: a memory bomb gets MemoryError
c.Sandbox.cpu_time_limit = 1200      # CPU seconds per process
c.Sandbox.processes = 256            # processes and threads: a fork bomb stops there
