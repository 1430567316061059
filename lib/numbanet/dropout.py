r"""Dropout: randomly zero units in training, with inverted scaling so eval needs no change.

``p`` is the probability of DROPPING a unit (PyTorch's convention; the lectures'
ξ ~ Bernoulli(p) uses p for keeping).  In training, with m ~ Bernoulli(1 − p)
drawn independently per unit::

    y = m · x / (1 − p)            ∂L/∂x = m · dy / (1 − p)     (the same mask)

so E[y] = x and at evaluation the layer is the identity (y = x, ∂L/∂x = dy).
The scale is the number 1/(1 − p) rounded to the input's dtype, and kept units are
exactly x times it.  p = 1 drops everything (y = 0, no division by zero); p = 0 keeps
everything.  ``Dropout2d`` draws one m per (n, c) channel plane and zeroes whole
feature maps, for convolutional features whose neighbours are strongly correlated.

The mask is drawn from ``numbanet.random`` (``numbanet.manual_seed`` makes it
reproducible) or from the generator passed as ``rng``: m = [u ≥ p], u ~ U[0, 1)
in float64, so the same seed gives the same mask in float32 and float64.
On the GPU the mask is drawn on the device by xoroshiro128+ generators seeded
from that generator (reproducible too, but not the CPU's masks) and stays there
for the backward pass.

Kernels: ``numbanet.kernels.cpu.dropout``, ``numbanet.kernels.cuda.dropout``.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_grad, check_ndim, check_nonempty
from .device import device_of, is_cuda
from .kernels import backend
from .module import Module
from .random import get_rng


def _check_p(name: str, p) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def _scale(p: float, dtype) -> np.floating:
    """1/(1 − p) in ``dtype``; p = 1 keeps nothing, so any finite value would do: 0."""
    return np.dtype(dtype).type(0.0 if p == 1.0 else 1.0 / (1.0 - p))


def _apply_mask(x: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """x · keep / (1 − p), keep broadcasting over trailing axes of x (per element or per plane)."""
    return backend(x).dropout.apply_mask(x, keep, _scale(p, x.dtype))


def _dropout(name: str, x, p, training: bool, rng, per_plane: bool, device_states=None):
    """(y, keep-mask or None).  The mask is x's shape, or (N, C, 1, 1) when ``per_plane``.

    On the GPU the mask is drawn on the device, by ``device_states`` (a layer's generator states,
    kept between calls) or by fresh states seeded from ``rng``; it stays there.
    """
    p = _check_p(name, p)
    checked = as_float_array(name, x)
    check_nonempty(name, checked.shape, "(N, C, H, W)" if per_plane else "(N, *)")
    if per_plane:
        check_ndim(name, checked, 4, "(N, C, H, W)")
    if not training:
        # The identity hands back the caller's own array, as PyTorch does.
        return (x if isinstance(x, np.ndarray) else checked), None
    mask_shape = (*checked.shape[:2], 1, 1) if per_plane else checked.shape
    keep = backend(checked).dropout.draw_mask(mask_shape, p, get_rng(rng), device_states)
    return _apply_mask(checked, keep, p), keep


def dropout(x, p: float = 0.5, training: bool = True, rng=None, return_mask: bool = False, *,
            name: str = "dropout"):
    """y = x·m/(1 − p), m ~ Bernoulli(1 − p) per element; identity (x itself) when not ``training``.

    x: any shape -> y: same shape.  With ``return_mask`` also the boolean keep-mask
    (x's shape; None when not training) for ``dropout_backward``.
    """
    y, keep = _dropout(name, x, p, training, rng, per_plane=False)
    return (y, keep) if return_mask else y


def dropout2d(x, p: float = 0.5, training: bool = True, rng=None, return_mask: bool = False, *,
              name: str = "dropout2d"):
    """Channel dropout: x (N, C, H, W), one m per (n, c) plane; the mask has shape (N, C, 1, 1)."""
    y, keep = _dropout(name, x, p, training, rng, per_plane=True)
    return (y, keep) if return_mask else y


def dropout_backward(dy, mask, p: float) -> np.ndarray:
    """dx = dy·m/(1 − p) with the forward's keep-mask (x's shape, or (N, C, 1, 1) for dropout2d);
    mask None (eval) passes dy through."""
    dy = as_float_array("dropout_backward", dy, "dy")
    if mask is None:
        return dy
    if not is_cuda(mask):
        mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.shape not in (dy.shape, (*dy.shape[:2], 1, 1)):
        raise ValueError(f"dropout_backward: expected a mask of shape {dy.shape} (dropout) or "
                         f"{(*dy.shape[:2], 1, 1)} (dropout2d), got {mask.shape}")
    if device_of(mask) != device_of(dy) or mask.dtype != np.bool_:
        raise TypeError(f"dropout_backward: expected a boolean mask on dy's device ({device_of(dy)}), "
                        f"got {mask.dtype} on {device_of(mask)}")
    return _apply_mask(dy, mask, _check_p("dropout_backward", p))


class Dropout(Module):
    """Inverted dropout; ``p`` = probability of zeroing a unit.  Identity in eval mode.

    ``rng``: a ``np.random.Generator`` for the masks (default: numbanet's global one).
    """

    per_plane = False

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = _check_p(f"{type(self).__name__}(p={p})", p)
        self.rng = rng
        self._device_states = None  # the GPU's generator states, made on the first forward there

    def forward(self, x: np.ndarray) -> np.ndarray:
        if is_cuda(x) and self._device_states is None:
            self._device_states = backend(x).dropout.RandomStates()
        y, mask = _dropout(self.describe(), x, self.p, self.training, self.rng, self.per_plane,
                           self._device_states)
        self._save_for_backward(y.shape, y.dtype, device_of(y), mask)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, dtype, device, mask = self._saved()
        dout = check_grad(self.describe(), dout, shape, dtype, like=device)
        return dropout_backward(dout, mask, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Drops whole channels of x (N, C, H, W): each (n, c) plane is kept with probability 1 − p."""

    per_plane = True
