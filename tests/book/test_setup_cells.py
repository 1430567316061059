"""Every chapter's Colab setup cell installs the same pinned numbanet as the exercises.

The book and the assignments are used side by side on Colab; if one installed a branch and the
other a tag, a student would read one library and be graded against another.  Both must install
the tag of pyproject.toml's version (``@v<version>``, see solutions/README.md).  Needs only the
notebooks, no built book.
"""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
ASSIGNMENTS = sorted((ROOT / "solutions").glob("*/*.ipynb"))


def numbanet_urls(path: Path) -> list[str]:
    """The git URLs of numbanet on every `pip install` line of the notebook's code cells."""
    nb = nbformat.read(path, as_version=4)
    lines = [line for cell in nb.cells if cell.cell_type == "code" for line in cell.source.splitlines()
             if "pip install" in line and "numbanet" in line]
    return [url for line in lines for url in re.findall(r"git\+https://[^\"' ]+", line)]


def test_there_are_chapters_and_assignments():
    assert len(CHAPTERS) >= 16 and ASSIGNMENTS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_installs_the_pinned_release(chapter):
    urls = numbanet_urls(chapter)
    assert urls, f"{chapter.name}: no Colab install line for numbanet"
    for url in urls:
        assert url.endswith(f"@v{VERSION}"), f"{chapter.name} installs {url}, expected ...@v{VERSION}"


def test_book_and_exercises_install_the_same_numbanet():
    book = {url for chapter in CHAPTERS for url in numbanet_urls(chapter)}
    exercises = {url for assignment in ASSIGNMENTS for url in numbanet_urls(assignment)}
    assert exercises, "no install line in solutions/"
    assert book == exercises, f"book installs {sorted(book)}, exercises install {sorted(exercises)}"
