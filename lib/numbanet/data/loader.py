"""Datasets held in memory as arrays, and ``DataLoader``: batches, seeded shuffling, transforms.

Every loader in ``numbanet.data`` returns a ``Splits(train, test)`` of ``ArrayDataset``::

    train, test = numbanet.data.load_digits(size=16)
    train.x          # (N, C, H, W) float32 images in [0, 1]
    train.y          # (N,) int64 class indices
    train.classes    # class names, train.classes[train.y[i]]

Reproducible shuffling: the loader's iteration number e (its epoch, counted by the
loader itself) and its ``seed`` give the generator of that epoch,
``default_rng(SeedSequence([seed, e]))``.  It is split into one stream for the
order and one for the transforms, so adding a transform does not change the
order.  ``seed=None`` draws the seed from numbanet's global generator, so
``numbanet.manual_seed`` makes a whole run reproducible.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..random import get_rng


class ArrayDataset:
    """Images ``x`` (N, C, H, W) and labels ``y`` (N,), with the class names.

    ``dataset[i]`` (an int, slice or index array) returns ``(x[i], y[i])`` like
    torch's ``TensorDataset``; ``len(dataset)`` is N.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, classes=None):
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"ArrayDataset: x and y must have the same length, got x of shape {x.shape} "
                             f"and y of shape {y.shape}")
        self.x, self.y = x, y
        self.classes = tuple(classes) if classes is not None else tuple(str(c) for c in np.unique(y))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def head(self, count: int) -> "ArrayDataset":
        """The first ``count`` samples (all of them if there are fewer), same classes."""
        return ArrayDataset(self.x[:count], self.y[:count], self.classes)

    def __repr__(self) -> str:
        return f"ArrayDataset(x={self.x.shape} {self.x.dtype}, y={self.y.shape}, {len(self.classes)} classes)"


class Splits(NamedTuple):
    """The training and test sets of a dataset: ``train, test = load_digits()``."""
    train: ArrayDataset
    test: ArrayDataset


def _as_arrays(dataset) -> tuple[np.ndarray, ...]:
    if isinstance(dataset, ArrayDataset):
        return dataset.x, dataset.y
    if isinstance(dataset, (tuple, list)) and dataset and all(hasattr(a, "shape") for a in dataset):
        arrays = tuple(np.asarray(a) for a in dataset)
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"DataLoader: the arrays must share their first dimension, got shapes "
                             f"{[a.shape for a in arrays]}")
        return arrays
    raise TypeError(f"DataLoader: expected an ArrayDataset or a tuple of arrays (x, y), "
                    f"got {type(dataset).__name__}")


class DataLoader:
    """Iterate over mini-batches ``(x_batch, y_batch)`` of a dataset.

    Args:
        dataset: an ``ArrayDataset`` or a tuple of arrays sharing their first dimension N
            (batches are then tuples of the same length).
        batch_size: samples per batch (the last one is smaller unless ``drop_last``).
        shuffle: a new random order every epoch (seeded, see the module docstring).
        drop_last: skip the last, incomplete batch.
        seed: the loader's seed; None draws one from numbanet's global generator.
        transform: ``transform(x_batch, rng) -> x_batch`` applied to the first array of
            each batch (``numbanet.data.transforms``), with the epoch's transform generator.

    ``len(loader)`` is the number of batches per epoch.  Each ``iter(loader)`` is one
    epoch; ``set_epoch(e)`` makes the next one epoch e.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, transform=None):
        self.arrays = _as_arrays(dataset)
        self.dataset = dataset
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be an integer >= 1, got {batch_size}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable as transform(x, rng), "
                            f"got {type(transform).__name__}")
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.transform = transform
        self.seed = int(get_rng().integers(2**63)) if seed is None else int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        count = len(self.arrays[0])
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order and transform draws)."""
        self.epoch = int(epoch)

    def __iter__(self):
        order_seed, transform_seed = np.random.SeedSequence([self.seed, self.epoch]).spawn(2)
        self.epoch += 1
        count = len(self.arrays[0])
        order = np.random.default_rng(order_seed).permutation(count) if self.shuffle else None
        transform_rng = np.random.default_rng(transform_seed)
        for batch in range(len(self)):
            start = batch * self.batch_size
            # unshuffled batches are slices (views); shuffled ones gather copies
            index = slice(start, start + self.batch_size) if order is None else \
                order[start:start + self.batch_size]
            arrays = [a[index] for a in self.arrays]
            if self.transform is not None:
                arrays[0] = self.transform(arrays[0], transform_rng)
            yield tuple(arrays)

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.arrays[0])} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")
