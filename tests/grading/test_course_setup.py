"""A course's plumbing around autograde: Colab hand-ins through `nbgrader zip_collect`, and the
numbanet version the students' Colab setup cells install."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from .pipeline import REPO, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters

ASSIGNMENT = "a1_conv_forward"
# what students upload, and where nbgrader must put it
HAND_INS = {
    f"s101_{ASSIGNMENT}.ipynb": "s101",
    f"s102_{ASSIGNMENT} (1).ipynb": "s102",          # a second download of the same file
    f"s103_Copy of {ASSIGNMENT}.ipynb": "s103",      # Colab's "Save a copy in Drive"
    f"Copy of s104_{ASSIGNMENT}(2).ipynb": "s104",
}


def test_zip_collect_accepts_colab_file_names(tmp_path):
    """Colab and browsers rename downloads ("a1 (1).ipynb", "Copy of ..."): each lands in
    submitted/<student id>/<assignment>/<assignment>.ipynb."""
    course = tmp_path / "course"
    shutil.copytree(REPO / "exercises" / ASSIGNMENT, course / "exercises" / ASSIGNMENT)
    shutil.copy(REPO / "nbgrader_config.py", course)   # its course root is the folder it is in
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    for name in HAND_INS:
        shutil.copy(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", archive / name)
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "zip_collect", ASSIGNMENT],
                          cwd=course, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, student in HAND_INS.items():
        assert (course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file(), (name, done.stderr)


@pytest.mark.parametrize("assignment", sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()))
def test_colab_setup_installs_the_pinned_release(assignment):
    """Students on Colab and the grader must run the same numbanet: the setup cell installs the
    tag of pyproject.toml's version (v<version>), never an unpinned branch."""
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    installs = [line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()
                if "pip install" in line and "numbanet" in line]
    assert installs, f"{assignment}: no Colab install line"
    for line in installs:
        urls = re.findall(r"git\+https://[^\"' ]+", line)
        assert urls and all(url.endswith(f"@v{version}") for url in urls), line
