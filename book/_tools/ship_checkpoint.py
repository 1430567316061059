"""Copy a ``python -m numbanet train`` run into book/checkpoints/, small: parameters and buffers only.

    python book/_tools/ship_checkpoint.py runs/resnet20-fashion-mnist resnet20-fashion-mnist

writes book/checkpoints/<stem>.npz (the model's state without the optimizer's, the run's metadata plus
the number of training and test images), <stem>.history.json and <stem>.history.png.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

import numbanet as nb
from numbanet import models
from numbanet.__main__ import load_data

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def ship(run: Path, stem: str) -> Path:
    header = json.loads(str(np.load(run / "model.npz")["__numbanet__"]))["metadata"]
    model = models.get_model(header["model"], **header["model_kwargs"])
    nb.load(model, run / "model.npz")
    # the image counts the run really used (its --limit, if any, applied to the data set)
    train, test = load_data(argparse.Namespace(**header["command"]), header["size"])
    target = CHECKPOINTS / f"{stem}.npz"
    nb.save(model, target, **header, train_images=len(train), test_images=len(test))
    for suffix in ("json", "png"):
        shutil.copyfile(run / f"history.{suffix}", CHECKPOINTS / f"{stem}.history.{suffix}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the --out directory of a training run")
    parser.add_argument("stem", help="file name stem in book/checkpoints/, e.g. resnet20-fashion-mnist")
    args = parser.parse_args()
    target = ship(args.run, args.stem)
    print(f"wrote {target} ({target.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
