"""MNIST, Fashion-MNIST and CIFAR-10: downloaded once into the cache (or read from a verified local
copy), parsed from their original files.

File formats:

* IDX (MNIST, Fashion-MNIST), gzip-compressed: a big-endian header — two zero
  bytes, a type code (0x08 = uint8), the number of dimensions d — then d
  big-endian uint32 sizes, then the values in C order.  Images are
  ``idx3`` (N, 28, 28), labels ``idx1`` (N,).
* CIFAR-10 "python version": a tar.gz holding ``cifar-10-batches-py/`` with
  pickled dicts ``data_batch_1`` ... ``data_batch_5`` (training) and
  ``test_batch``: ``b"data"`` a (10000, 3072) uint8 array, each row the 1024
  red, then green, then blue values of a 32x32 image in row-major order, and
  ``b"labels"`` a list of class indices.  Pickles can run code, so the archive
  is unpickled only after its SHA-256 matched.

Checksums (SHA-256 and size in bytes of the files on the canonical hosts)::

    MNIST:          TensorFlow Datasets, url_checksums/mnist.txt (the same files
                    match torchvision's published MD5s, e.g. f68b3c2dcbeaaa9fbdd348bbdeb94873
                    for train-images-idx3-ubyte.gz)
    Fashion-MNIST:  TensorFlow Datasets, url_checksums/fashion_mnist.txt (the
                    dataset's README publishes the MD5s, e.g. 8d4fb7e6c68d591d4c3dfef9ec88bf0d)
                    and the SHA-256 of each decompressed IDX file, which Debian's
                    copy is checked against (its gzip headers lack the file name, so
                    the .gz files differ).  Those decompressed files have the MD5s
                    torchvision publishes for them (f4a8712d7a061bf5bd6d2ca38dc4d50a
                    for train-images-idx3-ubyte; tests/test_data.py checks all four).
    CIFAR-10:       torchvision's datasets (prototype) SHA-256 of cifar-10-python.tar.gz; its
                    MD5 c58f30108f718f92721af3b95e74349a is the one on the CIFAR page
"""
from __future__ import annotations

import gzip
import os
import pickle
import tarfile

import numpy as np

from .download import RemoteDataset, RemoteFile, fetch
from .loader import ArrayDataset, Splits

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

DATASETS = {
    "mnist": RemoteDataset(
        "mnist",
        # LeCun's page is the canonical host but often refuses downloads; torchvision's copy first
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        (RemoteFile(_IDX_FILES[0], 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
         RemoteFile(_IDX_FILES[1], 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
         RemoteFile(_IDX_FILES[2], 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
         RemoteFile(_IDX_FILES[3], 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"))),
    "fashion-mnist": RemoteDataset(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (RemoteFile(_IDX_FILES[0], 26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
         RemoteFile(_IDX_FILES[1], 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
         RemoteFile(_IDX_FILES[2], 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
         RemoteFile(_IDX_FILES[3], 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
        local_dirs=(FASHION_MNIST_DEBIAN_DIR,)),
    "cifar10": RemoteDataset(
        "cifar10",
        ("https://www.cs.toronto.edu/~kriz/",),
        (RemoteFile("cifar-10-python.tar.gz", 170498071,
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),)),
}

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or not), in its own dtype and shape."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
        content = stream.read()
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (header bytes {content[:4]!r})")
    dtype, ndim = _IDX_TYPES[content[2]], content[3]
    shape = tuple(int(s) for s in np.frombuffer(content, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if len(content) != expected:
        raise ValueError(f"{path}: IDX header announces shape {shape} ({expected} bytes) but the file has "
                         f"{len(content)} bytes")
    return np.frombuffer(content, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_split(paths: dict, prefix: str, classes: tuple[str, ...]) -> ArrayDataset:
    images = read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"])
    labels = read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{prefix} files: expected images (N, H, W) and labels (N,), got {images.shape} "
                         f"and {labels.shape}")
    return ArrayDataset((images[:, None] / np.float32(255)).astype(np.float32), labels.astype(np.int64), classes)


def _load_idx_dataset(name: str, classes, root, mirror, progress) -> Splits:
    paths = fetch(DATASETS[name], root, mirror, progress)
    return Splits(_idx_split(paths, "train", classes), _idx_split(paths, "t10k", classes))


def load_mnist(root=None, mirror: str | None = None, progress: bool = True) -> Splits:
    """MNIST handwritten digits: 60,000 train / 10,000 test images (N, 1, 28, 28) float32 in [0, 1].

    ``root``: the cache root (default $NUMBANET_DATA or ~/.cache/numbanet); ``mirror``: a base
    URL with the layout <mirror>/mnist/<file> (default $NUMBANET_MIRROR, else the canonical
    hosts); ``progress``: show download progress bars.  Labels are int64 digits.
    """
    return _load_idx_dataset("mnist", MNIST_CLASSES, root, mirror, progress)


def load_fashion_mnist(root=None, mirror: str | None = None, progress: bool = True) -> Splits:
    """Fashion-MNIST (Zalando): 60,000 / 10,000 clothing images (N, 1, 28, 28) float32 in [0, 1].

    Arguments as ``load_mnist`` (mirror layout <mirror>/fashion-mnist/<file>).  Offline, install
    Debian's copy (``apt-get install dataset-fashion-mnist``): files missing from the cache are
    read from /usr/share/datasets/fashion-mnist/ after their checksums matched, not downloaded.
    """
    return _load_idx_dataset("fashion-mnist", FASHION_MNIST_CLASSES, root, mirror, progress)


def _unpickle_members(path, names: list[str]) -> dict[str, dict]:
    """{name: unpickled cifar-10-batches-py/<name>}, read in one pass over the compressed archive."""
    wanted = {f"cifar-10-batches-py/{name}": name for name in names}
    found = {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if member.name in wanted:
                found[wanted[member.name]] = pickle.load(archive.extractfile(member), encoding="bytes")
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"{path}: the archive lacks cifar-10-batches-py/{{{', '.join(missing)}}}")
    return found


def _cifar_split(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    return (data.reshape(-1, 3, 32, 32) / np.float32(255)).astype(np.float32), labels


def load_cifar10(root=None, mirror: str | None = None, progress: bool = True) -> Splits:
    """CIFAR-10: 50,000 train / 10,000 test colour images (N, 3, 32, 32) float32 in [0, 1].

    Arguments as ``load_mnist`` (mirror layout <mirror>/cifar10/cifar-10-python.tar.gz).
    Class names come from the archive's ``batches.meta``.
    """
    paths = fetch(DATASETS["cifar10"], root, mirror, progress)
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    members = _unpickle_members(paths["cifar-10-python.tar.gz"], train_names + ["test_batch", "batches.meta"])
    classes = tuple(name.decode() for name in members["batches.meta"][b"label_names"])
    train = _cifar_split([members[name] for name in train_names])
    test = _cifar_split([members["test_batch"]])
    return Splits(ArrayDataset(*train, classes), ArrayDataset(*test, classes))
