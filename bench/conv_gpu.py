"""Convolution on the GPU: numbanet's CUDA kernels vs PyTorch/cuDNN, float32.

    python bench/conv_gpu.py [--repeats 20] [--warmup 3] [--dtype float32] [--tf32] [--sgemm 4096]

Needs a CUDA GPU (e.g. a Colab T4); PyTorch with CUDA is optional (without it only
numbanet is timed).  For the five shapes of bench/conv_cpu.py and each of forward /
dX / dW it times both libraries with CUDA events after warm-up runs (which also
JIT-compile numbanet's kernels), reports the median milliseconds, GFLOP/s, the ratio
torch_time / numbanet_time (> 1 means numbanet is faster), the relative difference of
the two results, and the achieved fraction of the device's measured SGEMM rate: a
square matrix product timed with numbanet's own tiled GEMM and, if available,
torch.matmul (cuBLAS).  cuDNN runs with ``benchmark=True`` (its fastest algorithm) and,
unless ``--tf32``, with TF32 tensor cores off, so both sides compute in true float32.
"""
from __future__ import annotations

import argparse
import ast
import os
import pathlib
import sys


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per op (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per op first")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--tf32", action="store_true", help="let cuDNN / cuBLAS use TF32 tensor cores")
    parser.add_argument("--sgemm", type=int, default=4096, help="matrix size for the SGEMM reference rate")
    return parser.parse_args()


def cpu_benchmark_shapes() -> list:
    """SHAPES of bench/conv_cpu.py (read from its source: that script parses its own arguments on import)."""
    source = (pathlib.Path(__file__).with_name("conv_cpu.py")).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SHAPES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("bench/conv_cpu.py defines no SHAPES")


def require_gpu() -> None:
    """Exit with a clear message unless numba sees a real CUDA GPU."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        sys.exit("conv_gpu.py: NUMBA_ENABLE_CUDASIM is set: the simulator runs on the CPU, so timings would "
                 "mean nothing. Unset it and run on a machine with a CUDA GPU.")
    from numba import cuda

    if not cuda.is_available():
        sys.exit("conv_gpu.py: no CUDA GPU found (numba.cuda.is_available() is False). Run it on a machine "
                 "with an NVIDIA GPU, e.g. Colab: Runtime > Change runtime type > GPU, then "
                 "`pip install numba-cuda[cu12]`.")


class Timer:
    """Median milliseconds of a callable, timed with CUDA events of numba or of torch."""

    def __init__(self, repeats: int, warmup: int):
        self.repeats, self.warmup = repeats, warmup

    def numba(self, fn) -> float:
        from numba import cuda

        for _ in range(self.warmup):
            fn()
        cuda.synchronize()
        times = []
        for _ in range(self.repeats):
            start, end = cuda.event(timing=True), cuda.event(timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return median(times)

    def torch(self, fn) -> float:
        import torch

        for _ in range(self.warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(self.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return median(times)


def median(values: list) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else 0.5 * (values[middle - 1] + values[middle])


def torch_with_cuda(allow_tf32: bool):
    """The torch module if it has CUDA, else None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    return torch


def rel_diff(ours, theirs) -> float:
    import numpy as np

    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))


def sgemm_rates(size: int, dtype, timer: Timer, torch) -> dict:
    """GFLOP/s of a size³ matrix product: numbanet's tiled GEMM and, if present, torch.matmul."""
    import numpy as np
    from numba import cuda

    from numbanet.kernels.cuda import _common

    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    a_dev, b_dev = cuda.to_device(a), cuda.to_device(b)
    out = cuda.device_array((size, size), dtype)
    flops = 2.0 * size ** 3
    rates = {"numbanet": flops / timer.numba(lambda: _common.matmul(a_dev, b_dev, out)) / 1e6}
    if torch is not None:
        at, bt = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        rates["torch"] = flops / timer.torch(lambda: torch.matmul(at, bt)) / 1e6
    return rates


def main() -> int:
    args = parse_args()
    require_gpu()
    import numpy as np
    from numba import cuda

    from numbanet.kernels.cuda import conv as cuda_conv

    dtype = np.dtype(args.dtype)
    timer = Timer(args.repeats, args.warmup)
    torch = torch_with_cuda(args.tf32)
    device = cuda.get_current_device()
    name = getattr(device, "name", "?")
    print(f"device: {name.decode() if isinstance(name, bytes) else name}, "
          f"compute capability {device.compute_capability}")
    if torch is None:
        print("PyTorch with CUDA not found: timing numbanet only")
    else:
        print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
              f"TF32 {'on' if args.tf32 else 'off'}, cudnn.benchmark on")
    peak = sgemm_rates(args.sgemm, dtype, timer, torch)
    print("measured GEMM rate, " + ", ".join(f"{k}: {v:.0f} GFLOP/s" for k, v in peak.items())
          + f" ({args.sgemm}³ {dtype})")
    reference_peak = max(peak.values())

    rng = np.random.default_rng(0)
    rows, ratios = [], []
    for label, n, c, k, h, w, ks, s, p in cpu_benchmark_shapes():
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = (rng.standard_normal((k, c, ks, ks)) * 0.1).astype(dtype)
        b = rng.standard_normal(k).astype(dtype)
        xd, wd, bd = cuda.to_device(x), cuda.to_device(wt), cuda.to_device(b)
        stride, padding = (s, s), (p, p)
        y = cuda_conv.conv2d(xd, wd, bd, stride, padding)
        dyd = cuda.to_device(rng.standard_normal(y.shape).astype(dtype))
        flops = 2.0 * y.size * c * ks * ks
        ours = {
            "forward": lambda: cuda_conv.conv2d(xd, wd, bd, stride, padding),
            "dX": lambda: cuda_conv.conv2d_backward_input(dyd, wd, x.shape, stride, padding),
            "dW": lambda: cuda_conv.conv2d_backward_weight(dyd, xd, wt.shape, stride, padding),
        }
        theirs = {}
        if torch is not None:
            xt, wtt, bt = (torch.from_numpy(a).cuda() for a in (x, wt, b))
            dyt = torch.from_numpy(dyd.copy_to_host()).cuda()
            conv_backward = torch.ops.aten.convolution_backward
            theirs = {
                "forward": lambda: torch.nn.functional.conv2d(xt, wtt, bt, s, p),
                "dX": lambda: conv_backward(dyt, xt, wtt, None, stride, padding, (1, 1), False, (0, 0), 1,
                                            (True, False, False))[0],
                "dW": lambda: conv_backward(dyt, xt, wtt, [k], stride, padding, (1, 1), False, (0, 0), 1,
                                            (False, True, True))[1],
            }
        for op, fn in ours.items():
            ms = timer.numba(fn)
            result = fn()
            result = (result[0] if isinstance(result, tuple) else result).copy_to_host()
            row = [label, op, ms, None, flops / ms / 1e6, None, None, None, 100 * flops / ms / 1e6 / reference_peak]
            if theirs:
                with torch.no_grad():
                    torch_ms = timer.torch(theirs[op])
                    reference = theirs[op]().cpu().numpy()
                row[3], row[5], row[6] = torch_ms, flops / torch_ms / 1e6, torch_ms / ms
                row[7] = rel_diff(result, reference)
                ratios.append(torch_ms / ms)
            rows.append(row)

    header = (f"{'shape':30s} {'op':8s} {'numbanet ms':>11s} {'torch ms':>9s} {'nb GF/s':>8s} {'th GF/s':>8s} "
              f"{'torch/nb':>9s} {'rel diff':>9s} {'nb %peak':>8s}")
    print(f"\nconv2d {dtype}, median of {args.repeats} runs after {args.warmup} warm-up runs, CUDA events; "
          f"%peak = numbanet GFLOP/s / best measured GEMM rate")
    print(header)
    print("-" * len(header))

    def fmt(value, spec):
        return format(value, spec) if value is not None else format("-", spec.split(".")[0].rstrip("f") + "s")

    for label, op, ms, torch_ms, gf, torch_gf, ratio, diff, pct in rows:
        print(f"{label:30s} {op:8s} {ms:11.3f} {fmt(torch_ms, '9.3f')} {gf:8.0f} {fmt(torch_gf, '8.0f')} "
              f"{fmt(ratio, '9.2f')} {fmt(diff, '9.1e')} {pct:7.1f}%")
    if ratios:
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"geometric mean of torch_time / numbanet_time over {len(ratios)} ratios: {geo:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
