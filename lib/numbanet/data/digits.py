"""scikit-learn's bundled handwritten digits: the dataset that needs no network.

1,797 grey images of 8x8 pixels with values 0..16 (the UCI "optdigits" test
set), 10 classes.  ``load_digits`` scales them to [0, 1], optionally resizes them
bilinearly (``numbanet.data.transforms.resize``; e.g. 28 px for LeNet-5, 32 px for
the CIFAR ResNets) and splits them with a fixed seed, stratified: each class
contributes round(test_fraction · its count) images to the test set, so both
sets keep the class balance.
"""
from __future__ import annotations

import numpy as np

from .loader import ArrayDataset, Splits
from .transforms import resize

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), each sorted, drawing round(fraction · count) per class."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"stratified_split: test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[:int(round(test_fraction * len(members)))])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load_digits(size: int = 8, test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """The 8x8 digits as ``Splits(train, test)`` of ``ArrayDataset``.

    Args:
        size: image side in pixels; 8 keeps the originals, any other (16, 28, 32, ...)
            resizes bilinearly.
        test_fraction: share of each class held out for the test set (default 0.2:
            1,438 train / 359 test images).
        seed: the split's seed; the same seed gives the same split on every machine.

    Returns:
        ``train.x``, ``test.x``: (N, 1, size, size) float32 in [0, 1];
        ``train.y``, ``test.y``: (N,) int64 digits 0..9; ``classes``: ("0", ..., "9").
    """
    from sklearn.datasets import load_digits as sklearn_digits  # imported here: slow to import

    if int(size) != size or size < 1:
        raise ValueError(f"load_digits: size must be a positive integer, got {size}")
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    if size != 8:
        images = resize(images, int(size))  # convex weights: stays in [0, 1]
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    return Splits(ArrayDataset(images[train], labels[train], DIGIT_CLASSES),
                  ArrayDataset(images[test], labels[test], DIGIT_CLASSES))
