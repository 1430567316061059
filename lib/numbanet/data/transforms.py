r"""Data augmentation on whole batches of images (N, C, H, W), in NumPy.

A transform is called as ``t(x, rng)``: ``x`` a float32/float64 batch, ``rng`` a
``numpy.random.Generator`` (None: numbanet's global one).  It returns a new
array (the input is never modified) and draws an independent random setting
for every image, so the same generator state gives the same batch.
``DataLoader(..., transform=t)`` passes a generator seeded per epoch.

RandomCrop(size, padding): zero-pad by p on every side, cut a size×size window at
a uniformly drawn offset (oy, ox) ∈ [0, H + 2p − size] × [0, W + 2p − size].

RandomHorizontalFlip(p): with probability p, y[..., j] = x[..., W − 1 − j].

ColorJitter(brightness, contrast), torchvision's float-image formulas, brightness first::

    brightness:  y = clip(b·x, 0, 1),              b ~ U[max(0, 1 − brightness), 1 + brightness]
    contrast:    y = clip(c·x + (1 − c)·m, 0, 1),  c ~ U[max(0, 1 − contrast), 1 + contrast]
                 m = mean over the image of its grey level 0.2989·R + 0.587·G + 0.114·B
                     (the plain mean for images that are not 3-channel)

PCAColorAugmentation (Krizhevsky et al. 2012, "AlexNet"): with λ_k, p_k the
eigenvalues and unit eigenvectors of the C×C covariance of the training set's
pixel colours, add to every pixel of an image the same colour offset::

    δ = Σ_k α_k·λ_k·p_k,     α_k ~ N(0, σ²), σ = 0.1, drawn once per image

so images change along the directions in which natural colours vary (intensity
and illumination), not arbitrarily.

Normalize(mean, std): y[:, c] = (x[:, c] − mean[c]) / std[c].

resize(x, size): bilinear interpolation with half-pixel centres, PyTorch's
``interpolate(mode="bilinear", align_corners=False)`` without antialiasing.  Along
each axis, output index o reads the source position s = max((o + ½)·n_in/n_out − ½, 0)::

    y[o] = (1 − λ)·x[i] + λ·x[min(i + 1, n_in − 1)],   i = ⌊s⌋, λ = s − i

which is a (n_out, n_in) matrix R per axis, so an image is resized as R_h · X · R_wᵀ.

multi_crop(x, size, padding, flip): the fixed test-time views, the centre crop and
the four corner crops of the padded images, and their mirror images (AlexNet's and
ResNet's 10-crop testing); ``numbanet.train.predict_tta`` averages the softmax
outputs over them.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_ndim, pair
from ..random import get_rng

_LAYOUT = "(N, C, H, W)"
_GREY_WEIGHTS = np.array([0.2989, 0.587, 0.114])


def _images(owner: str, x) -> np.ndarray:
    x = as_float_array(owner, x)
    check_ndim(owner, x, 4, _LAYOUT)
    return x


def _per_channel(owner: str, name: str, values, x: np.ndarray) -> np.ndarray:
    """``values`` as a (1, C, 1, 1) array of the input's dtype, checked against its channel count."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size not in (1, x.shape[1]):
        raise ValueError(f"{owner}: {name} has {values.size} entries but the input has {x.shape[1]} "
                         f"channels (shape {x.shape})")
    return np.broadcast_to(values, (x.shape[1],)).reshape(1, -1, 1, 1).astype(x.dtype)


def _factor_range(owner: str, name: str, value) -> tuple[float, float]:
    """torchvision's jitter argument: v -> [max(0, 1 − v), 1 + v], or an explicit (low, high)."""
    if np.ndim(value) == 0:
        if value < 0:
            raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
        return max(0.0, 1.0 - float(value)), 1.0 + float(value)
    low, high = (float(v) for v in value)
    if not 0 <= low <= high:
        raise ValueError(f"{owner}: {name} range must satisfy 0 <= low <= high, got ({low}, {high})")
    return low, high


class Transform:
    """Base class: ``t(x, rng=None)`` validates x (N, C, H, W) and calls ``apply(x, rng)``."""

    def __call__(self, x, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.apply(_images(type(self).__name__, x), get_rng(rng))

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define apply")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class Compose(Transform):
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {type(t).__name__}")

    def apply(self, x, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x


def pad(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial dimensions of (N, C, H, W) by ``padding`` on every side."""
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x


def _windows(padded: np.ndarray, size: tuple[int, int], top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Crop image n of ``padded`` at (top[n], left[n]) to ``size`` -> (N, C, h, w)."""
    windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=(2, 3))
    return np.ascontiguousarray(windows[np.arange(len(padded)), :, top, left])


def _check_crop(owner: str, x: np.ndarray, size: tuple[int, int], padding: int) -> None:
    padded = (x.shape[2] + 2 * padding, x.shape[3] + 2 * padding)
    if size[0] > padded[0] or size[1] > padded[1]:
        raise ValueError(f"{owner}: crop size {size} is larger than the padded image {padded} "
                         f"(input shape {x.shape}, padding {padding})")


class RandomCrop(Transform):
    """A random ``size`` crop of each image after zero-padding by ``padding`` -> (N, C, h, w)."""

    def __init__(self, size, padding: int = 0):
        self.size = pair("RandomCrop", "size", size, 1)
        if int(padding) != padding or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an integer >= 0, got {padding}")
        self.padding = int(padding)

    def apply(self, x, rng):
        _check_crop("RandomCrop", x, self.size, self.padding)
        padded = pad(x, self.padding)
        top = rng.integers(0, padded.shape[2] - self.size[0] + 1, size=len(x))
        left = rng.integers(0, padded.shape[3] - self.size[1] + 1, size=len(x))
        return _windows(padded, self.size, top, left)


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = float(p)

    def apply(self, x, rng):
        flip = rng.random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out


class ColorJitter(Transform):
    """Random brightness and contrast per image (formulas in the module docstring); images in [0, 1]."""

    def __init__(self, brightness=0.0, contrast=0.0):
        self.brightness = _factor_range("ColorJitter", "brightness", brightness)
        self.contrast = _factor_range("ColorJitter", "contrast", contrast)

    def apply(self, x, rng):
        shape = (len(x), 1, 1, 1)
        b = rng.uniform(*self.brightness, size=shape)
        c = rng.uniform(*self.contrast, size=shape)
        bright = np.clip(b * x, 0.0, 1.0)
        grey = np.tensordot(bright, _GREY_WEIGHTS, axes=([1], [0])) if x.shape[1] == 3 else bright.mean(axis=1)
        mean = grey.mean(axis=(1, 2)).reshape(shape)
        return np.clip(c * bright + (1 - c) * mean, 0.0, 1.0).astype(x.dtype)


class PCAColorAugmentation(Transform):
    """AlexNet's colour augmentation: add Σ_k α_k·λ_k·p_k to every pixel, α_k ~ N(0, std²) per image.

    ``eigenvalues`` (C,) and ``eigenvectors`` (C, C), column k = p_k, of the pixel-colour
    covariance; ``PCAColorAugmentation.fit(train_images)`` computes them.
    """

    def __init__(self, eigenvalues, eigenvectors, std: float = 0.1):
        self.eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        self.eigenvectors = np.asarray(eigenvectors, dtype=np.float64)
        channels = self.eigenvalues.size
        if self.eigenvalues.shape != (channels,) or self.eigenvectors.shape != (channels, channels):
            raise ValueError(f"PCAColorAugmentation: expected eigenvalues (C,) and eigenvectors (C, C), got "
                             f"{self.eigenvalues.shape} and {self.eigenvectors.shape}")
        self.std = float(std)

    @classmethod
    def fit(cls, images, std: float = 0.1) -> "PCAColorAugmentation":
        """Eigen-decomposition of the C×C covariance of all pixels of ``images`` (N, C, H, W)."""
        images = _images("PCAColorAugmentation.fit", images)
        pixels = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1).astype(np.float64)
        covariance = np.atleast_2d(np.cov(pixels))
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]  # principal component first
        return cls(np.clip(eigenvalues[order], 0.0, None), eigenvectors[:, order], std)

    def offsets(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` colour offsets δ (count, C): rows of (α·λ) Pᵀ."""
        alpha = rng.normal(0.0, self.std, size=(count, self.eigenvalues.size))
        return (alpha * self.eigenvalues) @ self.eigenvectors.T

    def apply(self, x, rng):
        if x.shape[1] != self.eigenvalues.size:
            raise ValueError(f"PCAColorAugmentation: fitted on {self.eigenvalues.size} channels, got input "
                             f"of shape {x.shape}")
        return (x + self.offsets(len(x), rng)[:, :, None, None]).astype(x.dtype)

    def __repr__(self) -> str:
        return f"PCAColorAugmentation(eigenvalues={np.round(self.eigenvalues, 6).tolist()}, std={self.std})"


class Normalize(Transform):
    """y[:, c] = (x[:, c] − mean[c]) / std[c]; deterministic (the generator is unused)."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in np.reshape(mean, -1))
        self.std = tuple(float(s) for s in np.reshape(std, -1))
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"Normalize: expected mean and std of one length and std > 0, "
                             f"got mean={self.mean}, std={self.std}")

    @classmethod
    def fit(cls, images) -> "Normalize":
        """Per-channel mean and (population) standard deviation of ``images`` (N, C, H, W)."""
        images = _images("Normalize.fit", images).astype(np.float64)
        return cls(images.mean(axis=(0, 2, 3)), images.std(axis=(0, 2, 3)))

    def apply(self, x, rng):
        mean = _per_channel("Normalize", "mean", self.mean, x)
        std = _per_channel("Normalize", "std", self.std, x)
        return (x - mean) / std


def _bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix R of 1-D bilinear interpolation, half-pixel centres."""
    source = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    upper = np.minimum(lower + 1, size_in - 1)
    weight = source - lower
    matrix = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, lower), 1.0 - weight)
    np.add.at(matrix, (rows, upper), weight)
    return matrix


def resize(x, size) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) to (N, C, h, w), ``size`` an int or (h, w); dtype kept."""
    x = _images("resize", x)
    height, width = pair("resize", "size", size, 1)
    rows = _bilinear_matrix(x.shape[2], height)
    cols = _bilinear_matrix(x.shape[3], width)
    return np.einsum("oh,nchw,pw->ncop", rows, x, cols, optimize=True).astype(x.dtype)


def multi_crop(x, size=None, padding: int = 0, flip: bool = True) -> list[np.ndarray]:
    """Test-time views of a batch: [centre, top-left, top-right, bottom-left, bottom-right] crops.

    The crops of ``size`` (default: the input's own size) are cut from the images zero-padded
    by ``padding``; when the crop is the whole padded image there is one crop.  ``flip`` appends
    the mirror image of every view (10 views for 5 crops).  Each view is (N, C, h, w).
    """
    x = _images("multi_crop", x)
    size = pair("multi_crop", "size", x.shape[2:] if size is None else size, 1)
    _check_crop("multi_crop", x, size, padding)
    padded = pad(x, padding)
    bottom, right = padded.shape[2] - size[0], padded.shape[3] - size[1]
    corners = [(bottom // 2, right // 2)]
    if bottom or right:
        corners += [(0, 0), (0, right), (bottom, 0), (bottom, right)]
    count = len(x)
    views = [_windows(padded, size, np.full(count, top), np.full(count, left)) for top, left in corners]
    if flip:
        views += [np.ascontiguousarray(view[..., ::-1]) for view in views]
    return views
