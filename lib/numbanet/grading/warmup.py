"""Compile numbanet's kernels before students' kernels run: ``python -m numbanet.grading.warmup``.

A sandboxed kernel gets a private copy of numbanet's compiled-kernel cache
(:func:`numbanet.grading.sandbox.seed_numba_cache`): it cannot write next to the read-only sources,
and one writable cache shared by all students would let a student's kernel plant code in the next
student's (Numba's cache files are pickles).  So whatever the cache lacks, every sandboxed kernel
compiles again, a minute per capstone notebook on a busy machine, and its cells time out.  This
module fills the cache next to numbanet's sources, outside the sandbox, with trusted code: the
zoo's GoogLeNet (both stems) and ResNets (CIFAR and ImageNet stems), float32 and float64,
training and evaluation, forward, loss, backward and optimizer steps, the kernels the capstones'
models are built from.  On a warm cache it only loads them (a few seconds).
:class:`~numbanet.grading.preprocessors.SandboxedExecute` runs it once per grading process;
``make grade`` runs it once per class.
"""
from __future__ import annotations

import sys


def _workloads():
    import numbanet as nb
    yield "googlenet 224", lambda dtype: nb.models.googlenet(10, width=0.25, dtype=dtype), (1, 3, 224, 224)
    yield "googlenet small", lambda dtype: nb.models.googlenet(10, width=0.25, small_input=True, dtype=dtype), (2, 3, 32, 32)
    yield "resnet20", lambda dtype: nb.models.resnet20(dtype=dtype), (2, 3, 32, 32)
    yield "resnet18", lambda dtype: nb.models.resnet18(num_classes=10, dtype=dtype), (1, 3, 64, 64)


def main() -> int:
    import numpy as np
    import numbanet as nb
    rng = np.random.default_rng(0)
    failed = []
    for name, build, shape in _workloads():
        for dtype in (np.float32, np.float64):
            try:
                model = build(dtype)
                x, target = rng.standard_normal(shape).astype(dtype), rng.integers(0, 10, shape[0])
                model.train()
                out = model(x)
                loss = nb.models.GoogLeNetLoss() if isinstance(out, tuple) else nb.nn.CrossEntropyLoss()
                loss(out, target)
                model.zero_grad()
                model.backward(loss.backward())
                for optimizer in (nb.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
                                  nb.optim.Adam(model.parameters(), lr=1e-3)):
                    optimizer.step()
                model.eval()
                model(x)
            except Exception as error:  # noqa: BLE001 - a missing kernel only costs compile time later
                failed.append(f"{name} {np.dtype(dtype).name}: {type(error).__name__}: {error}")
    for line in failed:
        print("warm-up:", line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
