"""Parallel kernels give bit-identical results on 1 and 2 threads (no racing scatters)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_probe(threads: int, out: Path) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-m", "tests.thread_probe", str(out)], cwd=ROOT, env=env,
                   check=True, timeout=600)
    with np.load(out) as data:
        return dict(data)


def test_results_identical_on_one_and_two_threads(tmp_path):
    one = run_probe(1, tmp_path / "one.npz")
    two = run_probe(2, tmp_path / "two.npz")
    assert one.keys() == two.keys() and len(one) > 20
    differing = [k for k in one if not np.array_equal(one[k], two[k])]
    assert not differing, f"results depend on the thread count: {differing}"
