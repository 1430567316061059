"""Autograde throughput: synthetic submissions of one assignment graded by ``make grade``'s batch runner.

    python bench/grading.py a1_conv_forward [--submissions 100] [--jobs 2] [--json bench/out/grading_a1.json]

In a temporary course (the repository's ``nbgrader_config.py`` and ``solutions/<assignment>``):
``nbgrader generate_assignment``, then ``--submissions`` students, in turn the solutions (full
marks), the solutions with the assignment's typical bug (its pipeline test's ``Bug``: partial
credit) and the untouched release (0 points), built like the pipeline test's students; then
``python -m numbanet.grading.batch`` grades them all, ``--jobs`` at a time, each in its own sandboxed
kernel.  Reports the wall time, seconds per submission (wall / submissions: the class's cost), the
mean time one submission's ``nbgrader autograde`` took, the retries, and checks every score
against what its kind must get.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.grading.pipeline import PipelineTests, submission  # noqa: E402 - the pipeline test's students

KINDS = ("solution", "partial", "untouched")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    a = args.assignment
    module = importlib.import_module(f"tests.grading.test_{a}")
    bug = next(c.bug for c in vars(module).values() if isinstance(c, type) and issubclass(c, PipelineTests)
               and c is not PipelineTests)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="numbanet-bench-grading-") as tmp:
        course = Path(tmp)
        shutil.copy(REPO / "nbgrader_config.py", course)
        shutil.copytree(REPO / "solutions" / a, course / "solutions" / a)
        subprocess.run([f"{bin_dir}/nbgrader", "generate_assignment", a, "--log-level=ERROR"], cwd=course, env=env,
                       check=True)
        release = nbformat.read(course / "exercises" / a / f"{a}.ipynb", as_version=4)
        source = nbformat.read(course / "solutions" / a / f"{a}.ipynb", as_version=4)
        solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                     if c.metadata.get("nbgrader", {}).get("solution")}
        kinds = {}
        for i in range(args.submissions):
            student, kinds[f"s{i:03d}"] = f"s{i:03d}", KINDS[i % len(KINDS)]
            folder = course / "submitted" / student / a
            folder.mkdir(parents=True)
            nbformat.write(submission(release, solutions, kinds[student], bug), folder / f"{a}.ipynb")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "numbanet.grading.batch", a, "--jobs", str(args.jobs)],
                              cwd=course, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        sys.stdout.write(done.stdout[-3000:])
        if done.returncode != 0:
            sys.exit(f"batch grading failed:\n{done.stderr[-6000:]}")
        each = [float(m.group(1)) for m in re.finditer(r"^\s*s\d+\s+([\d.]+) s", done.stdout, re.M)]
        retries = len(re.findall(r"\((\d+) attempts\)", done.stdout))
        export = subprocess.run([f"{bin_dir}/nbgrader", "export", "--to", str(course / "grades.csv"),
                                 "--log-level=ERROR"], cwd=course, env=env, capture_output=True, text=True)
        scores = _scores(course / "grades.csv") if export.returncode == 0 else {}
    by_kind = {kind: sorted({scores.get(s) for s, k in kinds.items() if k == kind}) for kind in KINDS}
    report = {"assignment": a, "submissions": args.submissions, "jobs": args.jobs, "cores": os.cpu_count(),
              "wall_s": round(wall, 1), "s_per_submission": round(wall / args.submissions, 2),
              "mean_autograde_s": round(sum(each) / len(each), 1), "resubmitted_after_lock": retries,
              "scores_by_kind": by_kind}
    print(json.dumps(report, indent=1))
    assert len(by_kind["solution"]) == 1 and len(by_kind["partial"]) == 1 and by_kind["untouched"] == [0.0], by_kind
    assert by_kind["untouched"][0] < by_kind["partial"][0] < by_kind["solution"][0], by_kind
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def _scores(path: Path) -> dict:
    import csv
    with open(path, newline="") as f:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}


if __name__ == "__main__":
    main()
