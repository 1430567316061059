"""nbgrader configuration for the numbanet exercises (see solutions/README.md, the instructor guide).

The course directory is the repository root:

    solutions/<assignment>/<assignment>.ipynb   nbgrader's "source" step (solutions + hidden tests)
    exercises/<assignment>/<assignment>.ipynb   nbgrader's "release" step (what students get)
    submitted/, autograded/, feedback/, gradebook.db   created by nbgrader when you grade

Run nbgrader from the repository root, e.g. ``nbgrader generate_assignment a1_conv_forward --force``.
"""
import os
from types import SimpleNamespace

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearOutput, DeduplicateIds,
                                    NbGraderPreprocessor, OverwriteCells, OverwriteKernelspec)

c = get_config()  # noqa: F821 - defined by traitlets when it loads this file

c.CourseDirectory.course_id = "numbanet"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# nbgrader's layout is <root>/{nbgrader_step}/{student_id}/{assignment_id}; with student "." for the
# source and release steps, solutions/<assignment> and exercises/<assignment> are those two steps.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# Per cell.  The slowest graded cell (a student's naive loops plus the reference processes) takes
# a few seconds; an infinite loop is interrupted after this (KeyboardInterrupt) and costs its cell.
c.Execute.timeout = 60
c.Execute.startup_timeout = 120

# A deleted test cell is put back from the gradebook and graded.
c.OverwriteCells.add_missing_cells = True

# Hand-ins collected outside JupyterHub (Colab downloads, an LMS): `nbgrader zip_collect <assignment>`
# takes downloaded/<assignment>/archive/<student id>_<assignment>.ipynb (or .zip files of them).
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[A-Za-z0-9]+)_(?P<file_id>a\d+_\w+)\.ipynb$"


class RestoreHiddenTests(NbGraderPreprocessor):
    """Put the hidden tests back into untouched test cells before OverwriteCells checks them.

    The release holds each hidden-test cell without its ``### BEGIN/END HIDDEN TESTS`` region,
    the gradebook holds it with the region, so OverwriteCells warns "checksum has changed"
    for every such cell of every student (jupyter/nbgrader#1961) and a real warning drowns.
    A cell whose source is exactly the released text is restored here, silently; an edited
    test cell is left alone, so OverwriteCells still warns about it and restores it.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self._notebook, self._assignment = info["notebook"], info["assignment"]
        self._clear = ClearHiddenTests(enforce_metadata=False)
        with Gradebook(info["db_url"]) as self._gradebook:
            return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is None:
            return cell, resources
        try:
            source_cell = self._gradebook.find_source_cell(grade_id, self._notebook, self._assignment)
        except MissingEntry:
            return cell, resources
        if source_cell.locked and cell.source != source_cell.source:
            released = SimpleNamespace(source=source_cell.source)
            if self._clear._remove_hidden_test_region(released) and released.source == cell.source:
                cell.source = source_cell.source
        return cell, resources


c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreHiddenTests,
                                      OverwriteCells, CheckCellMetadata]
