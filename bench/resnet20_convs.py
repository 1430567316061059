"""ResNet-20's convolutions: numbanet vs PyTorch, layer by layer, same process, same thread count.

    python bench/resnet20_convs.py [--threads 1] [--batch 128] [--repeats 7]

The bound behind the ResNet-20 training-step ratio (``bench/train_step.py``): the convolutions
are about 70% of numbanet's step, so the step cannot beat PyTorch's by much more than its
convolutions do.  For each distinct convolution of CIFAR ResNet-20 (projection shortcuts,
32 x 32 input), times forward, dX and dW of numbanet and PyTorch alternately (medians), the
ratio torch_time / numbanet_time, and the sum over the net's 21 convolutions weighted by how
often each shape occurs.  One thread by default: the ratio of the arithmetic alone, without
the two libraries' different ways of splitting work across cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per op (median reported)")
    return parser.parse_args()


ARGS = parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _threads  # noqa: E402

_threads.pin(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import numbanet  # noqa: E402
from numbanet.conv import conv2d, conv2d_backward_input, conv2d_backward_weight  # noqa: E402

torch.set_num_threads(ARGS.threads)

# (label, C, K, H, kernel, stride, padding, how many times ResNet-20 has it)
SHAPES = [("stem 3->16, 32x32", 3, 16, 32, 3, 1, 1, 1),
          ("16->16, 32x32", 16, 16, 32, 3, 1, 1, 6),
          ("16->32 stride 2", 16, 32, 32, 3, 2, 1, 1),
          ("1x1 16->32 stride 2", 16, 32, 32, 1, 2, 0, 1),
          ("32->32, 16x16", 32, 32, 16, 3, 1, 1, 5),
          ("32->64 stride 2", 32, 64, 16, 3, 2, 1, 1),
          ("1x1 32->64 stride 2", 32, 64, 16, 1, 2, 0, 1),
          ("64->64, 8x8", 64, 64, 8, 3, 1, 1, 5)]


def interleaved(ours, theirs, repeats: int) -> tuple[float, float]:
    """Median ms of ``ours`` and ``theirs``, run alternately after one warm-up each."""
    ours(), theirs()
    a, b = [], []
    for _ in range(repeats):
        t = time.perf_counter(); ours(); a.append(time.perf_counter() - t)
        t = time.perf_counter(); theirs(); b.append(time.perf_counter() - t)
    return float(np.median(a)) * 1e3, float(np.median(b)) * 1e3


def torch_backward(dy, x, w, stride, padding, which):
    return torch.ops.aten.convolution_backward(dy, x, w, None, (stride, stride), (padding, padding), (1, 1), False,
                                               (0, 0), 1, which)


def main() -> None:
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    print(f"ResNet-20 convolutions, batch {ARGS.batch}, {ARGS.threads} thread(s), medians of {ARGS.repeats} "
          f"interleaved runs (numbanet BLAS: {numbanet.blas_backend()}, malloc {numbanet.malloc_state()}; "
          f"torch {torch.__version__}); load average {load_before[0]:.1f} before")
    print(f"{'layer':22s} {'x':>2s} {'fwd nb/torch ms':>16s} {'dX nb/torch ms':>16s} {'dW nb/torch ms':>16s}  ratios")
    total_ours = total_theirs = 0.0
    for label, c, k, h, size, stride, padding, count in SHAPES:
        x = rng.standard_normal((ARGS.batch, c, h, h)).astype(np.float32)
        w = rng.standard_normal((k, c, size, size)).astype(np.float32)
        dy = rng.standard_normal(conv2d(x, w, None, stride, padding).shape).astype(np.float32)
        xt, wt, dyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
        with torch.no_grad():
            pairs = [interleaved(lambda: conv2d(x, w, None, stride, padding),
                                 lambda: torch.nn.functional.conv2d(xt, wt, None, stride, padding), ARGS.repeats),
                     interleaved(lambda: conv2d_backward_input(dy, w, x.shape, stride, padding),
                                 lambda: torch_backward(dyt, xt, wt, stride, padding, (True, False, False)),
                                 ARGS.repeats),
                     interleaved(lambda: conv2d_backward_weight(dy, x, w.shape, stride, padding, bias=False),
                                 lambda: torch_backward(dyt, xt, wt, stride, padding, (False, True, False)),
                                 ARGS.repeats)]
        total_ours += count * sum(p[0] for p in pairs)
        total_theirs += count * sum(p[1] for p in pairs)
        cells = " ".join(f"{a:7.1f}/{b:<7.1f}" for a, b in pairs)
        print(f"{label:22s} {count:2d} {cells}  " + " ".join(f"{b / a:4.2f}" for a, b in pairs))
    print(f"all 21 convolutions, forward + dX + dW: numbanet {total_ours:.0f} ms, torch {total_theirs:.0f} ms, "
          f"torch/numbanet {total_theirs / total_ours:.2f}; load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
