"""One training step, numbanet vs the same network in plain PyTorch (eager), same process and threads.

    python bench/train_step.py [--threads 2] [--repeats 7] [--batch 128] [--models resnet20 googlenet]
                               [--json bench/out/train_step.json]

A step is forward, cross-entropy loss, backward and an SGD update (lr 0.01, momentum 0.9):

* ``resnet20``: CIFAR ResNet-20 (``numbanet.models.resnet20()``, projection shortcuts) on
  random 3 x 32 x 32 images, 10 classes;
* ``googlenet``: the reduced GoogLeNet of the book's chapter 11 and ``book/checkpoints``
  (``googlenet(num_classes=10, in_channels=1, width=0.25, small_input=True)``, both auxiliary
  heads, loss = CE + 0.3 (CE_aux1 + CE_aux2)) on random 1 x 32 x 32 images.

The PyTorch twins below are written layer for layer from the numbanet models' docstrings
(same shapes, parameter counts checked against numbanet's).  Timing: one warm-up step each,
then ``--repeats`` rounds that alternate numbanet and PyTorch steps (machine noise hits both
alike); the medians and their ratio numbanet / torch (< 1 means numbanet is faster) are reported.

Peak memory: each (framework, model) pair is run again in a fresh subprocess that builds the
model, notes its resident set size (RSS, VmRSS in /proc/self/status), runs three steps and reads
the process's peak RSS (VmHWM; ``getrusage``'s ru_maxrss would include the parent's peak).  The report gives that peak
and the increase over the post-setup RSS: the memory a step needs (activations, gradients,
workspaces, allocator caches), measured the same way for both frameworks.  The numbers go to
stdout and, with ``--json``, to a JSON file (the book reads ``bench/out/train_step.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("resnet20", "googlenet")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per framework (median reported)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--memory-probe", nargs=2, metavar=("FRAMEWORK", "MODEL"), default=None,
                        help=argparse.SUPPRESS)  # internal: one subprocess of the memory measurement
    return parser.parse_args(argv)


ARGS = parse_args()
# Thread counts and passive waits must be set before numba / BLAS / torch start their pools
# (bench/_threads.py says why: spinning idle threads of one library slow the other down).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _threads  # noqa: E402

_threads.pin(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn as tnn  # noqa: E402

import numbanet as nb  # noqa: E402
from numbanet import models  # noqa: E402
from numbanet.models.googlenet import INCEPTION_TABLE  # noqa: E402

torch.set_num_threads(ARGS.threads)


# -- the PyTorch twins -------------------------------------------------------------------------

class TorchBasicBlock(tnn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, + shortcut (identity or 1x1 conv -> BN), -> ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = tnn.Sequential(tnn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                             tnn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def torch_resnet20(num_classes: int = 10) -> tnn.Module:
    """CIFAR ResNet-20 as ``numbanet.models.resnet20()``: 3x3 stem 16, 3 x 3 BasicBlocks of 16/32/64."""
    layers, in_planes = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()], 16
    for planes, stride in ((16, 1), (32, 2), (64, 2)):
        for block in range(3):
            layers.append(TorchBasicBlock(in_planes, planes, stride if block == 0 else 1))
            in_planes = planes
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, num_classes)]
    return tnn.Sequential(*layers)


def _conv_relu(cin: int, cout: int, kernel: int, padding: int = 0) -> tnn.Module:
    return tnn.Sequential(tnn.Conv2d(cin, cout, kernel, 1, padding), tnn.ReLU())


class TorchInception(tnn.Module):
    """The paper's Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | maxpool 3x3/1 -> 1x1, concatenated."""

    def __init__(self, cin, ch1, ch3r, ch3, ch5r, ch5, pool_proj):
        super().__init__()
        self.branches = tnn.ModuleList([
            _conv_relu(cin, ch1, 1),
            tnn.Sequential(_conv_relu(cin, ch3r, 1), _conv_relu(ch3r, ch3, 3, 1)),
            tnn.Sequential(_conv_relu(cin, ch5r, 1), _conv_relu(ch5r, ch5, 5, 2)),
            tnn.Sequential(tnn.MaxPool2d(3, 1, 1), _conv_relu(cin, pool_proj, 1)),
        ])
        self.out_channels = ch1 + ch3 + ch5 + pool_proj

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], 1)


class TorchGoogLeNet(tnn.Module):
    """``numbanet.models.googlenet(small_input=True, aux_logits=True)`` in PyTorch (paper variant):
    conv 3x3 -> conv 1x1 -> conv 3x3, Inception 3a 3b, maxpool, 4a..4e, maxpool, 5a 5b, global
    average pool, dropout 0.4, fc; aux heads after 4a and 4d (adaptive avg pool 4x4, 1x1 conv,
    fc, ReLU, dropout 0.7, fc).  Returns (main, aux1, aux2) in training mode."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 0.25):
        super().__init__()

        def c(channels):
            return max(1, int(round(channels * width)))

        c64, c192 = c(64), c(192)
        self.stem = tnn.Sequential(_conv_relu(in_channels, c64, 3, 1), _conv_relu(c64, c64, 1),
                                   _conv_relu(c64, c192, 3, 1))
        self.stages, self.aux, channels = tnn.ModuleList(), tnn.ModuleList(), c192
        stage = []
        for name, row in INCEPTION_TABLE.items():
            module = TorchInception(channels, *(c(v) for v in row))
            stage.append(module)
            channels = module.out_channels
            if name in ("inception3b", "inception4e"):
                stage.append(tnn.MaxPool2d(3, 2, 1))
            if name in ("inception4a", "inception4d"):
                self.stages.append(tnn.Sequential(*stage))
                self.aux.append(tnn.Sequential(
                    tnn.AdaptiveAvgPool2d(4), _conv_relu(channels, c(128), 1), tnn.Flatten(),
                    tnn.Linear(c(128) * 16, c(1024)), tnn.ReLU(), tnn.Dropout(0.7), tnn.Linear(c(1024), num_classes)))
                stage = []
        stage += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Dropout(0.4), tnn.Linear(channels, num_classes)]
        self.stages.append(tnn.Sequential(*stage))

    def forward(self, x):
        x = self.stem(x)
        aux = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < 2:
                aux.append(self.aux[i](x))
        return (x, *aux)


class TorchGoogLeNetLoss(tnn.Module):
    """CE(main) + 0.3 (CE(aux1) + CE(aux2)), as ``numbanet.models.GoogLeNetLoss``."""

    def forward(self, outputs, target):
        main, aux1, aux2 = outputs
        ce = tnn.functional.cross_entropy
        return ce(main, target) + 0.3 * ce(aux1, target) + 0.3 * ce(aux2, target)


# -- one step of each framework ---------------------------------------------------------------

def make_numbanet_step(model_name: str, batch: int):
    """A zero-argument callable running one numbanet training step; also returns the parameter count."""
    nb.manual_seed(0)
    rng = np.random.default_rng(0)
    if model_name == "resnet20":
        net, crit, shape = models.resnet20(), nb.nn.CrossEntropyLoss(), (batch, 3, 32, 32)
    else:
        net = models.googlenet(num_classes=10, in_channels=1, width=0.25, small_input=True, rng=rng)
        crit, shape = models.GoogLeNetLoss(), (batch, 1, 32, 32)
    net.train()
    opt = nb.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        opt.zero_grad()
        crit(net(x), y)
        net.backward(crit.backward())
        opt.step()

    return step, net.num_parameters()


def make_torch_step(model_name: str, batch: int):
    """A zero-argument callable running one PyTorch training step; also returns the parameter count."""
    torch.manual_seed(0)
    if model_name == "resnet20":
        net, crit, shape = torch_resnet20(), tnn.CrossEntropyLoss(), (batch, 3, 32, 32)
    else:
        net, crit, shape = TorchGoogLeNet(), TorchGoogLeNetLoss(), (batch, 1, 32, 32)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(shape)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        crit(net(x), y).backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


MAKERS = {"numbanet": make_numbanet_step, "torch": make_torch_step}


def status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status: VmRSS (now) or VmHWM (peak RSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(framework: str, model_name: str, batch: int) -> None:
    """(Subprocess) print {"setup_rss", "peak_rss"} in bytes as JSON for three steps."""
    step, _ = MAKERS[framework](model_name, batch)
    setup = status_bytes("VmRSS")
    for _ in range(3):
        step()
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the parent's peak across fork + exec
    print(json.dumps({"setup_rss": setup, "peak_rss": status_bytes("VmHWM")}))


def measure_memory(framework: str, model_name: str) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(ARGS.threads), "--batch", str(ARGS.batch),
           "--memory-probe", framework, model_name]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_steps(model_name: str) -> dict:
    """Median seconds per step of both frameworks, interleaved."""
    steps, params = {}, {}
    for framework, make in MAKERS.items():
        steps[framework], params[framework] = make(model_name, ARGS.batch)
    if params["numbanet"] != params["torch"]:
        raise RuntimeError(f"{model_name}: the PyTorch twin has {params['torch']:,} parameters, "
                           f"numbanet's model {params['numbanet']:,}")
    for step in steps.values():
        step()  # warm-up (numbanet: Numba compile or cache load; torch: oneDNN primitive creation)
    samples = {framework: [] for framework in steps}
    for _ in range(ARGS.repeats):
        for framework, step in steps.items():
            start = time.perf_counter()
            step()
            samples[framework].append(time.perf_counter() - start)
    return {"parameters": params["numbanet"], "samples_s": samples,
            "median_s": {f: float(np.median(s)) for f, s in samples.items()}}


def main() -> int:
    if ARGS.memory_probe:
        memory_probe(*ARGS.memory_probe, ARGS.batch)
        return 0
    load_before = os.getloadavg()
    results = {}
    for model_name in ARGS.models:
        results[model_name] = time_steps(model_name)
    for model_name in ARGS.models:
        results[model_name]["memory"] = {f: measure_memory(f, model_name) for f in MAKERS}
    load_after = os.getloadavg()

    print(f"one training step (forward, loss, backward, SGD), batch {ARGS.batch}, {ARGS.threads} threads, "
          f"median of {ARGS.repeats} interleaved steps (numbanet BLAS: {nb.blas_backend()}, malloc {nb.malloc_state()}, for both libraries; torch {torch.__version__}, numpy {np.__version__}); "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    header = (f"{'model':10s} {'params':>8s} {'numbanet ms':>11s} {'torch ms':>9s} {'nb/torch':>9s} "
              f"{'nb peak MiB':>11s} {'(step)':>7s} {'torch peak MiB':>14s} {'(step)':>7s}")
    print(header)
    print("-" * len(header))
    for model_name, r in results.items():
        nb_ms, th_ms = (r["median_s"][f] * 1e3 for f in ("numbanet", "torch"))
        r["ratio_numbanet_over_torch"] = nb_ms / th_ms
        mem = {f: (m["peak_rss"] / 2**20, (m["peak_rss"] - m["setup_rss"]) / 2**20) for f, m in r["memory"].items()}
        print(f"{model_name:10s} {r['parameters']:8,d} {nb_ms:11.1f} {th_ms:9.1f} {nb_ms / th_ms:9.2f} "
              f"{mem['numbanet'][0]:11.0f} {mem['numbanet'][1]:7.0f} {mem['torch'][0]:14.0f} {mem['torch'][1]:7.0f}")
    print("peak MiB: the process's peak RSS over three steps in a fresh subprocess; (step): its increase "
          "over the RSS after building the model")
    if ARGS.json:
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(json.dumps({
            "threads": ARGS.threads, "batch": ARGS.batch, "repeats": ARGS.repeats, "blas": nb.blas_backend(),
            "malloc": nb.malloc_state(),
            "torch": torch.__version__, "numpy": np.__version__,
            "load_average": {"before": load_before, "after": load_after}, "models": results}, indent=1))
        print(f"wrote {ARGS.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
