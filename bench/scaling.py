"""How convolution time grows with the batch size and with 1 vs 2 threads, numbanet vs PyTorch.

    python bench/scaling.py [--batches 8 16 32 64 128 256] [--repeats 5] [--out bench/out]

One layer shape, a 3x3 convolution with padding 1 and C = K = 32 channels on 32 x 32 inputs
(a ResNet stage), float32.  For each thread count (1 and 2, each in a fresh subprocess, since
the thread pools are sized at start-up) and each batch size it times, interleaved, numbanet's
forward pass and its backward pass (dX and dW) and PyTorch's (oneDNN, eager), median of
``--repeats``.  Writes ``scaling.json`` (all medians, seconds) and two plots to ``--out``:

* ``scaling_batch.png``: time per image vs batch size (forward, backward), both libraries,
  1 and 2 threads; flat lines mean time grows linearly with the batch;
* ``scaling_threads.png``: speed-up of 2 threads over 1 vs batch size, per library.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _threads  # noqa: E402

SHAPE = dict(channels=32, out_channels=32, size=32, kernel=3, stride=1, padding=1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # internal: thread count
    return parser.parse_args(argv)


def child(threads: int, batches, repeats: int) -> None:
    """(Subprocess started with the thread variables set) print JSON medians per batch size."""
    import numpy as np
    import torch

    from numbanet.conv import conv2d, conv2d_backward_input, conv2d_backward_weight
    torch.set_num_threads(threads)
    c, k, size, ks, s, p = (SHAPE[key] for key in ("channels", "out_channels", "size", "kernel", "stride", "padding"))
    rng = np.random.default_rng(0)
    results = {}
    for n in batches:
        x = rng.standard_normal((n, c, size, size)).astype(np.float32)
        w = (rng.standard_normal((k, c, ks, ks)) * 0.1).astype(np.float32)
        b = np.zeros(k, np.float32)
        dy = rng.standard_normal(conv2d(x, w, b, s, p).shape).astype(np.float32)
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))

        def torch_backward():
            torch.ops.aten.convolution_backward(dyt, xt, wt, [k], (s, s), (p, p), (1, 1), False, (0, 0), 1,
                                                (True, True, True))

        def numbanet_backward():
            conv2d_backward_input(dy, w, x.shape, s, p)
            conv2d_backward_weight(dy, x, w.shape, s, p)

        fns = {("numbanet", "forward"): lambda: conv2d(x, w, b, s, p),
               ("torch", "forward"): lambda: torch.nn.functional.conv2d(xt, wt, bt, s, p),
               ("numbanet", "backward"): numbanet_backward,
               ("torch", "backward"): torch_backward}
        with torch.no_grad():
            for fn in fns.values():
                fn()
            samples = {key: [] for key in fns}
            for _ in range(repeats):
                for key, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    samples[key].append(time.perf_counter() - start)
        results[str(n)] = {f"{lib}.{op}": float(np.median(v)) for (lib, op), v in samples.items()}
    print(json.dumps(results))


def run_child(threads: int, args) -> dict:
    env = _threads.environment(threads)   # pools sized, idle threads sleep (bench/_threads.py)
    cmd = [sys.executable, __file__, "--child", str(threads), "--repeats", str(args.repeats),
           "--batches", *map(str, args.batches)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=3600).stdout
    return json.loads(out.strip().splitlines()[-1])


def plot(data: dict, out: Path) -> list[Path]:
    """The two figures described in the module docstring; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = data["batches"]
    styles = {"numbanet": "tab:blue", "torch": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, op in zip(axes, ("forward", "backward")):
        for threads in data["threads"]:
            for lib, color in styles.items():
                ms_per_image = [data["results"][str(threads)][str(n)][f"{lib}.{op}"] * 1e3 / n for n in batches]
                ax.plot(batches, ms_per_image, color=color, marker="o", linestyle="-" if threads == 2 else "--",
                        label=f"{lib}, {threads} thread{'s' if threads > 1 else ''}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(n) for n in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms per image")
        ax.set_ylim(bottom=0)
        ax.set_title(f"conv 3x3, 32→32 channels, 32x32: {op}" + (" (dX + dW)" if op == "backward" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    batch_png = out / "scaling_batch.png"
    fig.savefig(batch_png, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    if {1, 2} <= set(data["threads"]):
        for lib, color in styles.items():
            for op, marker in (("forward", "o"), ("backward", "s")):
                speedup = [data["results"]["1"][str(n)][f"{lib}.{op}"] / data["results"]["2"][str(n)][f"{lib}.{op}"]
                           for n in batches]
                ax.plot(batches, speedup, color=color, marker=marker, label=f"{lib} {op}")
    ax.axhline(2.0, color="gray", linestyle=":", label="ideal (2x)")
    ax.axhline(1.0, color="gray", linestyle="-", linewidth=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(n) for n in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("time on 1 thread / time on 2 threads")
    ax.set_title("speed-up from the second core")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    threads_png = out / "scaling_threads.png"
    fig.savefig(threads_png, dpi=110)
    plt.close(fig)
    return [batch_png, threads_png]


def main() -> int:
    args = parse_args()
    if args.child is not None:
        child(args.child, args.batches, args.repeats)
        return 0
    load_before = os.getloadavg()
    results = {str(threads): run_child(threads, args) for threads in args.threads}
    data = {"shape": SHAPE, "batches": args.batches, "threads": args.threads, "repeats": args.repeats,
            "results": results, "load_average": {"before": load_before, "after": os.getloadavg()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(data, indent=1))
    print(f"conv 3x3 {SHAPE['channels']}->{SHAPE['out_channels']} channels, {SHAPE['size']}x{SHAPE['size']}, "
          f"median of {args.repeats}; load average {load_before[0]:.1f} before, {data['load_average']['after'][0]:.1f} after")
    print(f"{'threads':>7s} {'batch':>5s} {'nb fwd ms':>9s} {'th fwd ms':>9s} {'nb bwd ms':>9s} {'th bwd ms':>9s}")
    for threads in args.threads:
        for n in args.batches:
            r = results[str(threads)][str(n)]
            print(f"{threads:7d} {n:5d} {r['numbanet.forward'] * 1e3:9.2f} {r['torch.forward'] * 1e3:9.2f} "
                  f"{r['numbanet.backward'] * 1e3:9.2f} {r['torch.backward'] * 1e3:9.2f}")
    for path in plot(data, args.out):
        print(f"wrote {path}")
    print(f"wrote {args.out / 'scaling.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
