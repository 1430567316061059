"""numbanet.data: load_digits, the real Fashion-MNIST files, resize (against torch), DataLoader and
the augmentation transforms."""
import hashlib
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import numbanet as nb
from numbanet.data import (ArrayDataset, ColorJitter, Compose, DataLoader, Normalize, PCAColorAugmentation,
                           RandomCrop, RandomHorizontalFlip, load_digits, load_fashion_mnist, multi_crop, resize)
from numbanet.data import datasets
from numbanet.data.download import gunzipped_sha256sum
from tests.oracle import assert_close


def _images(rng, shape=(6, 3, 5, 7), dtype=np.float32):
    return rng.random(shape).astype(dtype)


# -- load_digits ---------------------------------------------------------------------------------
def test_load_digits_arrays_split_and_determinism():
    train, test = load_digits()
    assert train.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    assert 0.0 <= train.x.min() and train.x.max() == 1.0
    assert train.classes == tuple("0123456789") and len(train) == 1438
    # stratified: each class loses round(0.2 * its count) images to the test set
    full = np.concatenate([train.y, test.y])
    for digit in range(10):
        assert np.count_nonzero(test.y == digit) == round(0.2 * np.count_nonzero(full == digit))
    # the split is a partition of the 1797 images: no image is in both sets
    keys = {x.tobytes() + bytes([y]) for x, y in zip(np.concatenate([train.x, test.x]), full)}
    assert len(keys) >= 1790  # the bundled set holds a few exact duplicates
    again = load_digits()
    assert np.array_equal(again.train.x, train.x) and np.array_equal(again.test.y, test.y)
    other = load_digits(seed=1)
    assert not np.array_equal(other.test.y, test.y)


@pytest.mark.parametrize("size", [16, 28, 32])
def test_load_digits_resized(size):
    train, test = load_digits(size=size, test_fraction=0.5)
    assert train.x.shape[1:] == (1, size, size) and test.x.shape[1:] == (1, size, size)
    assert train.x.dtype == np.float32 and 0.0 <= train.x.min() and train.x.max() <= 1.0
    assert abs(len(train) - len(test)) <= 10
    assert np.array_equal(train.x, resize(load_digits(test_fraction=0.5).train.x, size))


def test_load_digits_bad_arguments():
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        load_digits(size=0)
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\), got 1.5"):
        load_digits(test_fraction=1.5)


# -- the real Fashion-MNIST, from Debian's package ----------------------------------------------------
DEBIAN_FASHION_MNIST = Path(datasets.FASHION_MNIST_DEBIAN_DIR)
needs_fashion_mnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason=f"{DEBIAN_FASHION_MNIST} is missing: `apt-get install dataset-fashion-mnist` (.ci/run installs it)")

# MD5 of the decompressed IDX files, as torchvision publishes them (datasets/mnist.py, FashionMNIST)
TORCHVISION_RAW_MD5 = {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                       "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                       "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                       "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"}


@needs_fashion_mnist
def test_debian_fashion_mnist_has_the_published_content():
    for remote in datasets.DATASETS["fashion-mnist"].files:
        path = DEBIAN_FASHION_MNIST / remote.name
        assert gunzipped_sha256sum(path) == remote.content_sha256, path
        with gzip.open(path, "rb") as stream:
            assert hashlib.md5(stream.read()).hexdigest() == TORCHVISION_RAW_MD5[remote.name[:-3]], path


@needs_fashion_mnist
def test_load_fashion_mnist_reads_the_debian_copy_without_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBANET_MIRROR", "http://127.0.0.1:9")  # a download attempt would fail
    train, test = load_fashion_mnist(root=tmp_path, progress=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    assert np.array_equal(np.bincount(train.y), np.full(10, 6000))
    assert np.array_equal(np.bincount(test.y), np.full(10, 1000))
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert list((tmp_path / "fashion-mnist").iterdir()) == []  # read in place, nothing copied


# -- resize: torch's bilinear interpolation, align_corners=False, no antialiasing -------------------
@given(dtype=st.sampled_from([np.float64, np.float32]), n=st.integers(1, 2), c=st.integers(1, 3),
       h=st.integers(1, 9), w=st.integers(1, 9), out_h=st.integers(1, 12), out_w=st.integers(1, 12),
       transposed=st.booleans())
def test_resize_matches_torch_interpolate(dtype, n, c, h, w, out_h, out_w, transposed):
    rng = np.random.default_rng(n * 1000 + h * 10 + w)
    x = rng.standard_normal((n, c, w, h) if transposed else (n, c, h, w)).astype(dtype)
    if transposed:  # a non-contiguous view
        x = x.transpose(0, 1, 3, 2)
    ours = resize(x, (out_h, out_w))
    reference = torch.nn.functional.interpolate(torch.tensor(np.array(x)), size=(out_h, out_w),
                                                mode="bilinear", align_corners=False, antialias=False)
    assert ours.dtype == dtype and ours.shape == (n, c, out_h, out_w)
    assert_close(ours, reference, dtype, "resize")


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError, match=r"resize: expected a 4-D input of shape \(N, C, H, W\), got shape \(8, 8\)"):
        resize(np.zeros((8, 8), np.float32), 16)
    with pytest.raises(TypeError, match="resize: expected input of dtype float32 or float64, got uint8"):
        resize(np.zeros((1, 1, 8, 8), np.uint8), 16)


# -- DataLoader ------------------------------------------------------------------------------------
def _toy(count=23):
    x = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    return x, np.arange(count, dtype=np.int64)


def test_loader_batches_cover_every_sample_once():
    x, y = _toy()
    loader = DataLoader((x, y), batch_size=5)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    dropped = DataLoader(ArrayDataset(x, y), batch_size=5, drop_last=True)
    assert len(dropped) == 4 and [len(b[1]) for b in dropped] == [5] * 4


def test_loader_shuffle_is_seeded_and_changes_every_epoch():
    x, y = _toy()
    first = DataLoader((x, y), batch_size=4, shuffle=True, seed=7)
    second = DataLoader((x, y), batch_size=4, shuffle=True, seed=7)
    orders = [np.concatenate([b[1] for b in first]) for _ in range(3)]
    assert all(np.array_equal(np.sort(order), y) for order in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    for order in orders:  # another loader with the same seed replays the same epochs
        assert np.array_equal(np.concatenate([b[1] for b in second]), order)
    second.set_epoch(1)
    assert np.array_equal(np.concatenate([b[1] for b in second]), orders[1])
    for batch_x, batch_y in DataLoader((x, y), batch_size=4, shuffle=True, seed=7):
        assert np.array_equal(batch_x[:, 0, 0, 0], batch_y)  # x and y stay paired


def test_loader_seed_none_follows_manual_seed():
    x, y = _toy()
    nb.manual_seed(3)
    a = np.concatenate([b[1] for b in DataLoader((x, y), batch_size=4, shuffle=True)])
    nb.manual_seed(3)
    b = np.concatenate([b[1] for b in DataLoader((x, y), batch_size=4, shuffle=True)])
    assert np.array_equal(a, b)


def test_loader_transform_gets_the_epoch_generator_and_keeps_the_order():
    x, y = _toy()
    seen = []

    def transform(batch, rng):
        seen.append(rng.random())
        return batch + 100

    plain = [b[1] for b in DataLoader((x, y), batch_size=4, shuffle=True, seed=1)]
    loader = DataLoader((x, y), batch_size=4, shuffle=True, seed=1, transform=transform)
    batches = list(loader)
    assert all(np.array_equal(a, b[1]) for a, b in zip(plain, batches))
    assert np.array_equal(batches[0][0][:, 0, 0, 0], batches[0][1] + 100)
    replay = DataLoader((x, y), batch_size=4, shuffle=True, seed=1, transform=transform)
    draws = seen[:]
    list(replay)
    assert seen[len(draws):] == draws


def test_loader_rejects_bad_arguments():
    x, y = _toy()
    with pytest.raises(ValueError, match="must share their first dimension"):
        DataLoader((x, y[:-1]))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        DataLoader((x, y), batch_size=0)
    with pytest.raises(TypeError, match="expected an ArrayDataset or a tuple of arrays"):
        DataLoader(x)
    with pytest.raises(ValueError, match="x and y must have the same length"):
        ArrayDataset(x, y[:3])


# -- transforms ------------------------------------------------------------------------------------
def test_random_crop_cuts_windows_of_the_padded_images(rng):
    x = _images(rng)
    crop = RandomCrop((4, 6), padding=2)
    out = crop(x, np.random.default_rng(0))
    assert out.shape == (6, 3, 4, 6) and out.dtype == np.float32
    assert np.array_equal(out, crop(x, np.random.default_rng(0)))
    assert not np.array_equal(out, crop(x, np.random.default_rng(1)))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for image, result in zip(padded, out):
        matches = [(i, j) for i in range(padded.shape[2] - 3) for j in range(padded.shape[3] - 5)
                   if np.array_equal(image[:, i:i + 4, j:j + 6], result)]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 1  # each image draws its own offset
    assert np.array_equal(RandomCrop((5, 7))(x, rng), x)  # full-size crop without padding is the identity
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(10, 10\) is larger than the padded image \(7, 9\)"):
        RandomCrop(10, padding=1)(x, rng)


def test_horizontal_flip_really_flips(rng):
    x = _images(rng, (200, 2, 3, 4))
    out = RandomHorizontalFlip()(x, np.random.default_rng(0))
    flipped = np.array([np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped ^ kept)
    assert 70 < flipped.sum() < 130
    assert np.array_equal(out, RandomHorizontalFlip()(x, np.random.default_rng(0)))
    assert np.array_equal(RandomHorizontalFlip(p=1.0)(x, rng), x[..., ::-1])
    assert np.array_equal(RandomHorizontalFlip(p=0.0)(x, rng), x)
    assert not np.shares_memory(out, x)


def test_color_jitter_brightness_and_contrast(rng):
    x = (0.25 + 0.5 * _images(rng, (50, 3, 4, 4), np.float64))
    bright = ColorJitter(brightness=0.3)(x, np.random.default_rng(0))
    ratio = bright / x  # one factor per image, within [0.7, 1.3], no clipping at these values
    per_image = ratio.reshape(50, -1)
    assert np.allclose(per_image, per_image[:, :1]) and 0.7 <= per_image.min() and per_image.max() <= 1.3
    assert per_image[:, 0].std() > 0.05
    contrast = ColorJitter(contrast=0.4)(x, np.random.default_rng(0))
    grey = lambda images: np.tensordot(images, [0.2989, 0.587, 0.114], axes=([1], [0])).mean(axis=(1, 2))
    assert np.allclose(grey(contrast), grey(x), atol=1e-4)  # blending with the grey mean keeps it (weights sum to 0.9999)
    spread = contrast.reshape(50, -1).std(axis=1) / x.reshape(50, -1).std(axis=1)
    assert 0.6 - 1e-12 <= spread.min() and spread.max() <= 1.4 + 1e-12 and spread.std() > 0.05
    both = ColorJitter(brightness=0.9, contrast=0.9)(x.astype(np.float32), np.random.default_rng(2))
    assert both.dtype == np.float32 and both.min() >= 0 and both.max() <= 1
    assert np.array_equal(both, ColorJitter(0.9, 0.9)(x.astype(np.float32), np.random.default_rng(2)))
    gray = ColorJitter(contrast=(0.0, 0.0))(x[:, :1], rng)  # factor 0: every pixel becomes the mean
    assert np.allclose(gray, x[:, :1].mean(axis=(1, 2, 3), keepdims=True))
    with pytest.raises(ValueError, match="ColorJitter: brightness must be >= 0, got -1"):
        ColorJitter(brightness=-1)


def test_pca_color_augmentation_moves_colours_along_the_principal_components(rng):
    # colours vary mostly along v = (1, 2, 2)/3 and a little along w ⟂ v
    v, w = np.array([1.0, 2.0, 2.0]) / 3, np.array([2.0, 1.0, -2.0]) / 3
    strength = rng.standard_normal((400, 1, 4, 4))
    small = 0.1 * rng.standard_normal((400, 1, 4, 4))
    images = 0.5 + strength * v.reshape(1, 3, 1, 1) + small * w.reshape(1, 3, 1, 1)
    pca = PCAColorAugmentation.fit(images)
    assert abs(abs(pca.eigenvectors[:, 0] @ v) - 1) < 1e-3 and abs(abs(pca.eigenvectors[:, 1] @ w) - 1) < 1e-2
    covariance = np.cov(images.transpose(1, 0, 2, 3).reshape(3, -1))
    assert np.allclose(pca.eigenvalues, np.linalg.eigvalsh(covariance)[::-1], atol=1e-12)
    assert pca.eigenvalues[0] > 50 * pca.eigenvalues[1] and pca.eigenvalues[2] < 1e-10
    out = pca(images, np.random.default_rng(0))
    offsets = (out - images)
    assert np.allclose(offsets, offsets[:, :, :1, :1])  # one colour offset for every pixel of an image
    delta = offsets[:, :, 0, 0]
    coefficients = delta @ pca.eigenvectors  # α_k λ_k along each principal component
    alpha = coefficients[:, :2] / pca.eigenvalues[:2]
    assert 0.085 < alpha.std(axis=0).min() and alpha.std(axis=0).max() < 0.115  # α ~ N(0, 0.1²)
    along_v = np.abs(delta @ v) / np.linalg.norm(delta, axis=1)
    assert np.median(along_v) > 0.99  # offsets point along the principal component
    assert np.array_equal(out, pca(images, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="fitted on 3 channels, got input of shape"):
        pca(images[:, :1], rng)


def test_normalize_statistics(rng):
    x = 3.0 + 2.0 * _images(rng, (64, 3, 5, 5), np.float64) * np.array([1, 2, 3]).reshape(1, 3, 1, 1)
    normalize = Normalize.fit(x)
    out = normalize(x)
    assert np.allclose(out.mean(axis=(0, 2, 3)), 0) and np.allclose(out.std(axis=(0, 2, 3)), 1)
    fixed = Normalize((0.5, 0.25, 0.0), (0.5, 2.0, 1.0))(x.astype(np.float32))
    assert fixed.dtype == np.float32
    assert np.allclose(fixed[:, 1], (x[:, 1] - 0.25) / 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="Normalize: mean has 3 entries but the input has 1 channels"):
        Normalize((0.5, 0.25, 0.0), (1, 1, 1))(x[:, :1])
    with pytest.raises(ValueError, match="std > 0"):
        Normalize(0.0, 0.0)


def test_compose_applies_in_order_with_one_generator(rng):
    x = _images(rng, (8, 3, 6, 6))
    chain = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip(), Normalize(0.5, 0.5)])
    out = chain(x, np.random.default_rng(5))
    step_rng = np.random.default_rng(5)
    expected = Normalize(0.5, 0.5)(RandomHorizontalFlip()(RandomCrop(4, padding=1)(x, step_rng), step_rng))
    assert np.array_equal(out, expected) and out.shape == (8, 3, 4, 4)
    assert "RandomCrop" in repr(chain)


def test_multi_crop_views(rng):
    x = _images(rng, (2, 3, 6, 6))
    views = multi_crop(x, padding=2)
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    assert np.array_equal(views[0], x)  # the centre crop of the padded image is the image
    assert np.array_equal(views[1], padded[:, :, :6, :6]) and np.array_equal(views[4], padded[:, :, 4:, 4:])
    assert all(np.array_equal(views[5 + i], views[i][..., ::-1]) for i in range(5))
    plain = multi_crop(x)
    assert len(plain) == 2 and np.array_equal(plain[0], x) and np.array_equal(plain[1], x[..., ::-1])
    assert len(multi_crop(x, size=4, flip=False)) == 5
    assert np.array_equal(multi_crop(x, size=4, flip=False)[0], x[:, :, 1:5, 1:5])
