"""Autograde a whole class on all cores: ``python -m numbanet.grading.batch ASSIGNMENT`` (``make grade A=...``).

Run from the course root (the folder with ``nbgrader_config.py``).  Each submission in
``submitted/<student>/<ASSIGNMENT>/`` is graded by its own ``nbgrader autograde ASSIGNMENT --student
<student>`` process, ``--jobs`` of them at a time (default: one per core), each kernel with one
compute thread (``NUMBA_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``: the parallelism is across students).
numbanet's kernels are compiled once beforehand (:mod:`numbanet.grading.warmup`), not by every process.

Why separate processes on one SQLite gradebook, and not per-student gradebooks merged afterwards:
nbgrader's own command does the grading, unchanged, and its gradebook stays the one the formgrader
and ``nbgrader export`` read.  Each process holds the gradebook only for short transactions (reading
the source cells, saving the scores); the gradebook is switched to SQLite's write-ahead log
(``PRAGMA journal_mode=WAL``, kept in the file), so readers never wait for a writer, and a
submission whose process still fails with "database is locked" is graded again (``--retries``).
Nothing to merge, and a crash loses one submission's grading, not a merged database.

Prints one line per submission (seconds, attempts) and the total; exit status 1 if any failed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import sqlite3
import subprocess
import sys
import time

_LOCKED = "database is locked"


def grade(assignment: str, students: list, jobs: int, retries: int, extra: list) -> dict:
    """{student: (seconds, attempts, ok)}, grading ``jobs`` students at a time."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    command = os.path.join(os.path.dirname(sys.executable), "nbgrader")

    def one(student: str):
        start = time.perf_counter()
        for attempt in range(1, retries + 2):
            done = subprocess.run([command, "autograde", assignment, "--student", student, *extra],
                                  env=env, capture_output=True, text=True)
            if done.returncode == 0 or _LOCKED not in done.stdout + done.stderr:
                break
            time.sleep(attempt)
        if done.returncode != 0:
            sys.stderr.write(f"--- {student}: autograde failed\n{(done.stdout + done.stderr)[-4000:]}\n")
        return time.perf_counter() - start, attempt, done.returncode == 0

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(students, pool.map(one, students)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numbanet.grading.batch", description=__doc__.split("\n")[0])
    parser.add_argument("assignment")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="submissions graded at once")
    parser.add_argument("--retries", type=int, default=3, help="further attempts when the gradebook was locked")
    parser.add_argument("--student", action="append", help="only these students (repeatable)")
    parser.add_argument("nbgrader_args", nargs=argparse.REMAINDER, help="passed on to nbgrader autograde after --")
    args = parser.parse_args(argv)
    extra = [a for a in args.nbgrader_args if a != "--"]
    students = args.student or sorted(
        name for name in os.listdir("submitted") if os.path.isdir(os.path.join("submitted", name, args.assignment)))
    if not students:
        parser.error(f"no submissions in submitted/*/{args.assignment}")
    if os.path.exists("gradebook.db"):
        with sqlite3.connect("gradebook.db") as db:
            db.execute("PRAGMA journal_mode=WAL")
    start = time.perf_counter()
    # numbanet's kernels compiled once here, not by every submission's process (grading/warmup.py)
    subprocess.run([sys.executable, "-m", "numbanet.grading.warmup"], check=True)
    results = grade(args.assignment, students, args.jobs, args.retries, ["--SandboxedExecute.warm_up=False", *extra])
    wall = time.perf_counter() - start
    for student, (seconds, attempts, ok) in results.items():
        print(f"{student:>24}  {seconds:7.1f} s  {'ok' if ok else 'FAILED'}" + (f"  ({attempts} attempts)" if attempts > 1 else ""))
    failed = [s for s, (_, _, ok) in results.items() if not ok]
    print(f"{len(students)} submissions of {args.assignment} in {wall:.1f} s with {args.jobs} jobs "
          f"({wall / len(students):.2f} s per submission; {sum(r[0] for r in results.values()) / len(students):.1f} s "
          f"each on average){'; FAILED: ' + ' '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
