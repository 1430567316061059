"""Datasets, ``DataLoader`` and augmentation (``numbanet.data``).

* ``load_digits`` — scikit-learn's bundled 8x8 digits (no network), optionally resized.
* ``load_mnist``, ``load_fashion_mnist``, ``load_cifar10`` — downloaded once into
  ``~/.cache/numbanet`` (or $NUMBANET_DATA), SHA-256-verified (``download.py``).
* Each returns ``Splits(train, test)`` of ``ArrayDataset``: ``x`` (N, C, H, W) float32
  in [0, 1], ``y`` (N,) int64, ``classes``.
* ``DataLoader`` — batches with a seeded, per-epoch reproducible shuffle.
* ``transforms`` — batch-wise, seeded augmentation: ``RandomCrop``, ``RandomHorizontalFlip``,
  ``ColorJitter``, ``PCAColorAugmentation``, ``Normalize``, ``Compose``, ``resize``,
  ``multi_crop`` (test-time views; ``numbanet.train.predict_tta`` averages over them).
"""
from . import imagenet, transforms
from .datasets import load_cifar10, load_fashion_mnist, load_mnist, read_idx
from .digits import load_digits
from .download import DownloadError, data_dir
from .loader import ArrayDataset, DataLoader, Splits
from .transforms import (ColorJitter, Compose, Normalize, PCAColorAugmentation, RandomCrop,
                         RandomHorizontalFlip, multi_crop, resize)

__all__ = ["ArrayDataset", "ColorJitter", "Compose", "DataLoader", "DownloadError", "Normalize",
           "PCAColorAugmentation", "RandomCrop", "RandomHorizontalFlip", "Splits", "data_dir",
           "load_cifar10", "load_digits", "load_fashion_mnist", "load_mnist", "multi_crop", "read_idx",
           "resize", "transforms"]
