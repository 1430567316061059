r"""ImageNet inference helpers: torchvision's preprocessing, the 1000 class names, top-k decoding.

``preprocess(image)`` is torchvision's ``weights.transforms()`` for the classification models
(``ImageClassification(crop_size=224, resize_size=256)``) applied to a photo:

1. resize so that the shorter side is 256 px, the longer ⌊256·long/short⌋ (aspect kept),
   bilinear with antialiasing;
2. cut the central 224 x 224 window, offsets round((H − 224)/2), round((W − 224)/2);
3. x = pixel / 255, then per channel (x − MEAN_c) / STD_c, in float32, laid out (1, 3, 224, 224).

The resize is the antialiased bilinear filter of Pillow's ``Image.resize(size, BILINEAR)``
(which torchvision calls for PIL images) and of PyTorch's ``interpolate(mode="bilinear",
antialias=True)``, in NumPy so that PIL stays optional.  Per axis, output pixel o of n_out
reads the input pixels around its centre c = (o + ½)·s, s = n_in / n_out, with the triangle
("tent") filter stretched by f = max(s, 1), so that a downscale averages every input pixel
(the antialiasing) instead of sampling two::

    w_o(i) = max(0, 1 − |i + ½ − c| / f)    for i in [⌊c − f + ½⌋, ⌊c + f + ½⌋) ∩ [0, n_in)
    y[o]   = Σ_i w_o(i)·x[i] / Σ_i w_o(i)

along the width, then the height, in float64; the result is rounded to 8 bits once, as torchvision's
pipelines hold uint8 images.  It equals PyTorch's float result before the rounding; Pillow
rounds after each pass in 22-bit fixed point, so a pixel may differ from Pillow's by one
grey level (1/255, about 0.017 after normalisation); the tests check both.

``CLASSES``: the class names in the order of the networks' 1000 outputs (the list of
torchvision / PyTorch Hub, ``imagenet_classes.txt`` beside this module; "crane" and
"maillot" each appear twice, as there).  ``decode_top(logits, k)``: the k most probable
classes after a softmax.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE_SIZE, CROP_SIZE = 256, 224

CLASSES: tuple[str, ...] = tuple(
    resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8").splitlines())

def _resample_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter of one axis as (n_out, taps) input indices and weights w_o(i) / Σ w_o (module
    docstring); rows shorter than ``taps`` are padded with weight 0 on index 0."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    centre = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum((centre - stretch + 0.5).astype(np.int64), 0)
    hi = np.minimum((centre + stretch + 0.5).astype(np.int64), n_in)
    taps = int((hi - lo).max())
    index = lo[:, None] + np.arange(taps)
    weights = np.maximum(0.0, 1.0 - np.abs((index - centre[:, None] + 0.5) / stretch))
    weights[index >= hi[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.where(index < n_in, index, 0), weights


def _resample_axis(image: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """y[o] = Σ_t weights[o, t]·x[index[o, t]] along ``axis``: a few gathers (taps ≈ 2·s + 1),
    not a dense (n_out, n_in) matrix product."""
    if image.shape[axis] == n_out:
        return image
    index, weights = _resample_taps(image.shape[axis], n_out)
    moved = np.moveaxis(image, axis, 0)
    out = np.zeros((n_out, *moved.shape[1:]), np.float64)
    trailing = (1,) * (moved.ndim - 1)
    for t in range(index.shape[1]):
        out += weights[:, t].reshape(-1, *trailing) * moved[index[:, t]]
    return np.moveaxis(out, 0, axis)


def resize_bilinear(image, height: int, width: int) -> np.ndarray:
    """(H, W, C) image -> float64 (height, width, C): antialiased bilinear resize (module docstring),
    PyTorch's ``interpolate(x, (height, width), mode="bilinear", antialias=True)`` on the same values."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"resize_bilinear: expected an (H, W, C) image, got shape {image.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"resize_bilinear: output size must be positive, got ({height}, {width})")
    return _resample_axis(_resample_axis(image.astype(np.float64), width, axis=1), height, axis=0)


def _check_image(owner: str, image) -> np.ndarray:
    """An (H, W, 3) uint8 array from a NumPy array or a PIL image (any mode, converted to RGB)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image; PIL itself is not imported
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"{owner}: expected a uint8 image with values 0-255, got dtype {image.dtype} "
                        f"(for a float image in [0, 1] pass (image * 255).round().astype(np.uint8))")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{owner}: expected an (H, W, 3) RGB image, got shape {image.shape} "
                         f"(drop an alpha channel with image[..., :3]; stack a grey image 3 times)")
    return image


def preprocess(image) -> np.ndarray:
    """A photo -> the (1, 3, 224, 224) float32 input of torchvision's ImageNet classifiers.

    image: (H, W, 3) uint8 RGB array or a PIL image.  Steps in the module docstring: shorter
    side to 256 (antialiased bilinear), centre crop 224, /255, normalise with MEAN, STD.
    """
    image = _check_image("preprocess", image)
    height, width = image.shape[:2]
    short, long = min(height, width), max(height, width)
    new_long = int(RESIZE_SIZE * long / short)
    new_h, new_w = (RESIZE_SIZE, new_long) if height <= width else (new_long, RESIZE_SIZE)
    # round half up to 8 bits, as Pillow does
    image = np.clip(np.floor(resize_bilinear(image, new_h, new_w) + 0.5), 0, 255)
    # torchvision's offsets: Python's round (half to even) of the margin / 2
    top, left = int(round((new_h - CROP_SIZE) / 2.0)), int(round((new_w - CROP_SIZE) / 2.0))
    crop = image[top:top + CROP_SIZE, left:left + CROP_SIZE]
    x = crop.astype(np.float32) / np.float32(255)
    x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def decode_top(logits, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable classes: [(CLASSES[i], p_i)], p = softmax(logits), best first.

    logits: (1000,) or (1, 1000) — one image's output of an ImageNet classifier.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim == 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.shape != (len(CLASSES),):
        raise ValueError(f"decode_top: expected the logits of one image, shape ({len(CLASSES)},) or "
                         f"(1, {len(CLASSES)}), got {logits.shape}")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= len(CLASSES)):
        raise ValueError(f"decode_top: k must be an int in [1, {len(CLASSES)}], got {k!r}")
    exp = np.exp(logits - logits.max())
    probabilities = exp / exp.sum()
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [(CLASSES[i], float(probabilities[i])) for i in best]
