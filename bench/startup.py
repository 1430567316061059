"""Start-up time: ``import numbanet`` plus the first forward/backward of ResNet-20, cold and warm Numba cache.

    python bench/startup.py [--threads 2] [--batch 8] [--warm-runs 3] [--json bench/out/startup.json]

Each measurement is a fresh Python subprocess (nothing already imported or compiled), timed
from inside: ``import numbanet``, building ``models.resnet20()``, then one forward pass, the
cross-entropy loss and one backward pass on a random batch of 3 x 32 x 32 images.

* cold: ``NUMBA_CACHE_DIR`` is a new, empty directory, so every kernel is compiled by Numba;
* warm: the same directory again, now filled by the cold run, so every kernel is loaded from
  the on-disk cache (``cache=True``); the median of ``--warm-runs`` runs.  Goal: <= 3 s.

The report also counts the compiled kernel signatures the cold run left in the cache (one
``.nbc`` file per signature): fewer signatures, less compile time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="images in the first forward/backward")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # internal: one timed start-up
    return parser.parse_args(argv)


def child(batch: int) -> None:
    """(Subprocess) time import, model construction and the first forward + backward; print JSON."""
    start = time.perf_counter()
    import numpy as np

    import numbanet as nb
    from numbanet import models
    imported = time.perf_counter()
    net = models.resnet20()
    crit = nb.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    built = time.perf_counter()
    crit(net(x), y)
    net.backward(crit.backward())
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "build_s": built - imported,
                      "first_step_s": done - built, "total_s": done - start}))


def run_child(cache_dir: str, args) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, __file__, "--child", "--batch", str(args.batch)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    args = parse_args()
    if args.child:
        child(args.batch)
        return 0
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="numbanet-startup-") as cache_dir:
        cold = run_child(cache_dir, args)
        signatures = sum(1 for _ in Path(cache_dir).rglob("*.nbc"))
        warm_runs = [run_child(cache_dir, args) for _ in range(args.warm_runs)]
    warm = {key: statistics.median(run[key] for run in warm_runs) for key in cold}
    load_after = os.getloadavg()

    print(f"ResNet-20 start-up, batch {args.batch}, {args.threads} threads; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'cache':6s} {'import s':>9s} {'build s':>8s} {'1st fwd+bwd s':>14s} {'total s':>8s}")
    for label, r in (("cold", cold), ("warm", warm)):
        print(f"{label:6s} {r['import_s']:9.2f} {r['build_s']:8.2f} {r['first_step_s']:14.2f} {r['total_s']:8.2f}")
    print(f"warm: median of {args.warm_runs} runs (goal <= 3 s: {'met' if warm['total_s'] <= 3 else 'NOT met'}); "
          f"the cold run compiled {signatures} kernel signatures")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "batch": args.batch, "cold": cold, "warm": warm,
                                         "warm_runs": warm_runs, "compiled_signatures": signatures,
                                         "load_average": {"before": load_before, "after": load_after}},
                                        indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
