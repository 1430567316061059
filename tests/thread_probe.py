"""Run forward and backward of every parallel layer and save the results (used by test_threads.py).

    NUMBA_NUM_THREADS=k python -m tests.thread_probe OUT.npz
"""
import sys

import numpy as np

from numbanet import nn

# Layer constructors and input shapes; big enough that every prange loop has
# several iterations per thread.
CASES = {
    "conv3x3": (lambda: nn.Conv2d(6, 5, 3, padding=1), (4, 6, 9, 7)),
    "conv_strided": (lambda: nn.Conv2d(6, 5, (3, 2), stride=2, padding=1), (4, 6, 9, 7)),
    "conv1x1": (lambda: nn.Conv2d(6, 5, 1), (4, 6, 9, 7)),
    # batches split into many conv tasks (about 1 MiB of lowered matrices each)
    "conv3x3_tasks": (lambda: nn.Conv2d(16, 16, 3, padding=1), (40, 16, 32, 32)),
    "conv_strided_tasks": (lambda: nn.Conv2d(16, 32, 3, stride=2, padding=1), (40, 16, 32, 32)),
    "maxpool": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (4, 6, 9, 7)),
    "avgpool": (lambda: nn.AvgPool2d(3, stride=1, padding=1), (4, 6, 9, 7)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(6), (4, 6, 9, 7)),
    "groupnorm": (lambda: nn.GroupNorm(3, 6), (4, 6, 9, 7)),
    "layernorm": (lambda: nn.LayerNorm((6, 9, 7)), (4, 6, 9, 7)),
    "lrn": (lambda: nn.LocalResponseNorm(3), (4, 6, 9, 7)),
    "gelu": (lambda: nn.GELU(), (4, 6, 9, 7)),
    "linear": (lambda: nn.Linear(63, 17), (40, 63)),
}


def main(path: str) -> None:
    results = {}
    for name, (make, shape) in CASES.items():
        rng = np.random.default_rng(0)
        layer = make().to(np.float32)
        for i, p in enumerate(layer.parameters()):
            p.data[...] = rng.standard_normal(p.shape)
        x = rng.standard_normal(shape).astype(np.float32)
        y = layer(x)
        results[f"{name}.y"] = y
        results[f"{name}.dx"] = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
        for pname, p in layer.named_parameters():
            results[f"{name}.d{pname}"] = p.grad
    np.savez(path, **results)


if __name__ == "__main__":
    main(sys.argv[1])
