"""Convolution on the CPU: numbanet vs PyTorch, same process, same thread count.

    python bench/conv_cpu.py [--threads 2] [--repeats 9] [--dtype float32] [--json FILE]

For each of five shapes and each of forward / dX / dW it times numbanet and
PyTorch alternately (interleaved, so machine noise hits both alike), reports the
median milliseconds, GFLOP/s and the ratio torch_time / numbanet_time (> 1 means
numbanet is faster), and the geometric mean of the 15 ratios.  The column
"min ratio" is the same ratio of the fastest runs: when it and the median ratio
disagree much, the machine was busy.

The column "GEMM ms" is the time of numbanet's matrix products alone: the same
per-task BLAS calls (shapes and task split of ``numbanet.kernels.cpu.conv``'s lowering, one
BLAS thread per parallel slot) on stand-in matrices, with no lowering, no shifts and
no layout changes.  "ceiling" = torch ms / GEMM ms is then the best ratio any
lowering onto this BLAS could reach; it separates the overhead numbanet can still
remove from the GEMM speed it cannot.  The load average before and after is printed
(another process on the same cores inflates both timings, but not alike).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per op (median reported)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", default=None, help="also write the rows and the geometric mean to this file")
    return parser.parse_args()


ARGS = parse_args()
# Thread counts and passive waits must be set before numba / BLAS / torch start their pools
# (bench/_threads.py says why: spinning idle threads of one library slow the other down).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _threads  # noqa: E402

_threads.pin(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from numba import njit, prange  # noqa: E402

import numbanet  # noqa: E402
from numbanet.conv import conv2d, conv2d_backward_input, conv2d_backward_weight  # noqa: E402
from numbanet.kernels.cpu.conv import _per_task, _per_tap  # noqa: E402
from numbanet.kernels.cpu import blas  # noqa: E402

torch.set_num_threads(ARGS.threads)

# (label, N, C, K, H, W, kernel, stride, padding)
SHAPES = [
    ("N64 C64 K64 32x32 3x3 p1", 64, 64, 64, 32, 32, 3, 1, 1),
    ("N64 C128 K128 16x16 3x3 p1", 64, 128, 128, 16, 16, 3, 1, 1),
    ("N8 C64 K64 56x56 3x3 p1", 8, 64, 64, 56, 56, 3, 1, 1),
    ("N64 C256 K64 14x14 1x1", 64, 256, 64, 14, 14, 1, 1, 0),
    ("N64 C64 K128 32x32 3x3 s2 p1", 64, 64, 128, 32, 32, 3, 2, 1),
]


@njit(parallel=True, cache=True)
def _task_gemms(a, b, c, tasks):
    """c[slot] = a @ b[slot] for tasks slot, slot + slots, ...: the conv kernels' BLAS calls alone."""
    slots = b.shape[0]
    for slot in prange(slots):
        for _ in range(slot, tasks, slots):
            blas.gemm(a, b[slot], c[slot])


def lowering_gemms(op, n, c, k, h, w, ks, s, p, itemsize):
    """(M, K, N columns per task, tasks) of the BLAS calls numbanet.conv makes for this op."""
    ho, wo = (h + 2 * p - ks) // s + 1, (w + 2 * p - ks) // s + 1
    if ks == 1 and s == 1 and p == 0:  # pointwise: one product per sample
        return {"forward": (k, c, h * w, n), "dX": (c, k, h * w, n), "dW": (k, h * w, c, n)}[op]
    if s == 1:  # row-shift: per-sample GEMMs per vertical tap, or one stacked GEMM per task
        if op == "dX":  # a forward pass of dy (k channels) with the flipped kernel (c outputs), padding ks-1-p
            k, c, h, wo = c, k, ho, w
            p = ks - 1 - p
        block = (h + 2 * p) * wo
        if _per_tap(k):
            return (k, c * ks, ho * wo, n * ks) if op != "dW" else (k, ho * wo, c * ks, n * ks)
        per = _per_task(n, (c * ks + ks * k) * block * itemsize)
        if op == "dW":
            return ks * k, per * block, c * ks, -(-n // per)
        return ks * k, c * ks, per * block, -(-n // per)
    per = _per_task(n, (c * ks * ks + k) * ho * wo * itemsize)  # im2col
    columns = per * ho * wo
    return {"forward": (k, c * ks * ks, columns), "dX": (c * ks * ks, k, columns),
            "dW": (k, columns, c * ks * ks)}[op] + (-(-n // per),)


def gemm_only(op, shape, dtype, rng):
    """A callable that runs just the op's task GEMMs (see the module docstring)."""
    m, inner, cols, tasks = lowering_gemms(op, *shape, dtype.itemsize)
    slots = min(2 if ARGS.threads >= 2 else 1, tasks)
    a = rng.standard_normal((m, inner)).astype(dtype)
    b = rng.standard_normal((slots, inner, cols)).astype(dtype)
    out = np.empty((slots, m, cols), dtype)

    def run():
        with blas.single_threaded():
            _task_gemms(a, b, out, tasks)
    return run


def median_times(fns: dict, repeats: int) -> dict:
    """Run each callable once to warm up, then ``repeats`` interleaved rounds; {name: (median, min)} seconds."""
    for fn in fns.values():
        fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: (float(np.median(s)), float(np.min(s))) for name, s in samples.items()}


def main() -> int:
    dtype = np.dtype(ARGS.dtype)
    rng = np.random.default_rng(0)
    rows, ratios, ceilings = [], [], []
    load_before = os.getloadavg()
    for label, n, c, k, h, w, ks, s, p in SHAPES:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = (rng.standard_normal((k, c, ks, ks)) * 0.1).astype(dtype)
        b = rng.standard_normal(k).astype(dtype)
        y = conv2d(x, wt, b, s, p)
        dy = rng.standard_normal(y.shape).astype(dtype)
        xt, wtt, bt, dyt = (torch.from_numpy(a) for a in (x, wt, b, dy))
        flops = 2.0 * y.size * c * ks * ks
        ops = {
            "forward": (lambda: conv2d(x, wt, b, s, p),
                        lambda: torch.nn.functional.conv2d(xt, wtt, bt, s, p)),
            "dX": (lambda: conv2d_backward_input(dy, wt, x.shape, s, p),
                   lambda: torch.ops.aten.convolution_backward(
                       dyt, xt, wtt, None, (s, s), (p, p), (1, 1), False, (0, 0), 1, (True, False, False))),
            "dW": (lambda: conv2d_backward_weight(dy, x, wt.shape, s, p),
                   lambda: torch.ops.aten.convolution_backward(
                       dyt, xt, wtt, [k], (s, s), (p, p), (1, 1), False, (0, 0), 1, (False, True, True))),
        }
        with torch.no_grad():
            for op, (ours, theirs) in ops.items():
                gemms = gemm_only(op, (n, c, k, h, w, ks, s, p), dtype, rng)
                times = median_times({"numbanet": ours, "torch": theirs, "gemm": gemms}, ARGS.repeats)
                (nb_med, nb_min), (th_med, th_min) = times["numbanet"], times["torch"]
                gemm_med = times["gemm"][0]
                ratio = th_med / nb_med
                ratios.append(ratio)
                ceilings.append(th_med / gemm_med)
                rows.append((label, op, nb_med * 1e3, th_med * 1e3, flops / nb_med / 1e9, flops / th_med / 1e9,
                             ratio, th_min / nb_min, gemm_med * 1e3, th_med / gemm_med))
    load_after = os.getloadavg()
    print(f"conv2d {dtype}, {ARGS.threads} threads, median of {ARGS.repeats} interleaved runs "
          f"(numbanet BLAS: {blas.blas_backend()}, malloc {numbanet.malloc_state()}; torch {torch.__version__}, numpy {np.__version__}); load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after (on {os.cpu_count()} CPUs)")
    header = (f"{'shape':30s} {'op':8s} {'numbanet ms':>11s} {'torch ms':>9s} {'nb GF/s':>8s} {'th GF/s':>8s} "
              f"{'torch/nb':>9s} {'min ratio':>9s} {'GEMM ms':>8s} {'ceiling':>8s}")
    print(header)
    print("-" * len(header))
    for label, op, ours, theirs, gf_ours, gf_theirs, ratio, min_ratio, gemm, ceiling in rows:
        print(f"{label:30s} {op:8s} {ours:11.2f} {theirs:9.2f} {gf_ours:8.1f} {gf_theirs:8.1f} {ratio:9.2f} "
              f"{min_ratio:9.2f} {gemm:8.2f} {ceiling:8.2f}")
    geo = float(np.exp(np.mean(np.log(ratios))))
    geo_min = float(np.exp(np.mean(np.log([row[7] for row in rows]))))
    geo_ceiling = float(np.exp(np.mean(np.log(ceilings))))
    print(f"geometric mean of torch_time / numbanet_time over {len(ratios)} ratios: {geo:.2f} "
          f"(of the fastest runs: {geo_min:.2f}); with the GEMMs alone (ceiling): {geo_ceiling:.2f}")
    if ARGS.json:
        keys = ("shape", "op", "numbanet_ms", "torch_ms", "numbanet_gflops", "torch_gflops", "ratio", "min_ratio",
                "gemm_ms", "ceiling")
        with open(ARGS.json, "w") as f:
            json.dump({"threads": ARGS.threads, "repeats": ARGS.repeats, "dtype": str(dtype),
                       "blas": blas.blas_backend(),
                       "malloc": numbanet.malloc_state(),
                       "load_average": {"before": load_before, "after": load_after},
                       "rows": [dict(zip(keys, row)) for row in rows], "geometric_mean": geo,
                       "geometric_mean_of_min": geo_min, "geometric_mean_ceiling": geo_ceiling}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
