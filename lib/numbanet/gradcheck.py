"""Numerical gradient checking with centred differences in float64."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def numeric_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6,
                     indices: Sequence[tuple] | None = None) -> np.ndarray:
    """Centred difference (f(x+εeᵢ) − f(x−εeᵢ)) / 2ε for each index (all of them if None).

    ``x`` is perturbed in place and restored; ``f`` re-reads it on every call.
    Entries not in ``indices`` are left NaN.
    """
    grad = np.full(x.shape, np.nan)
    for idx in (np.ndindex(x.shape) if indices is None else indices):
        old = x[idx]
        x[idx] = old + eps
        plus = f()
        x[idx] = old - eps
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(f: Callable[..., float], inputs: Sequence[np.ndarray], analytic: Sequence[np.ndarray],
              eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-5,
              max_checks: int | None = 200, seed: int = 0) -> float:
    """Compare analytic gradients with centred differences; return the worst relative error.

    f:         ``f(*inputs) -> float``, the scalar loss. It must read the arrays it is given
               (they are perturbed in place, so pass float64 arrays you own).
    inputs:    float64 arrays whose gradients are checked.
    analytic:  the gradients your backward computed, one per input, same shapes.
    max_checks: per input, check every element when it has at most this many, else a
               seeded random sample of this many (None: always every element).

    Raises ``AssertionError`` when |analytic − numeric| > atol + rtol·|numeric| anywhere,
    naming the input, the worst index (the largest |diff| / (atol + rtol·|numeric|)), its
    analytic and numeric values and how many elements failed.
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    for position, (x, g) in enumerate(zip(inputs, analytic)):
        if not isinstance(x, np.ndarray) or x.dtype != np.float64:
            raise TypeError(f"gradcheck: input {position} must be a float64 numpy array, "
                            f"got {getattr(x, 'dtype', type(x))}")
        g = np.asarray(g, dtype=np.float64)
        if g.shape != x.shape:
            raise ValueError(f"gradcheck: analytic gradient {position} has shape {g.shape}, "
                             f"input has shape {x.shape}")
        if max_checks is None or x.size <= max_checks:
            indices = list(np.ndindex(x.shape))
        else:
            flat = rng.choice(x.size, size=max_checks, replace=False)
            indices = [np.unravel_index(i, x.shape) for i in flat]
        numeric = numeric_gradient(lambda: float(f(*inputs)), x, eps, indices)
        worst_index, worst_excess, failures = None, 1.0, 0
        for idx in indices:
            a, n = g[idx], numeric[idx]
            err = abs(a - n)
            rel = err / max(abs(a), abs(n), 1e-12)
            worst = max(worst, rel if err > atol else 0.0)
            excess = err / (atol + rtol * abs(n))  # > 1: outside the tolerance
            if excess > 1.0:
                failures += 1
                if excess > worst_excess:
                    worst_index, worst_excess = idx, excess
        if worst_index is not None:
            a, n = g[worst_index], numeric[worst_index]
            raise AssertionError(
                f"gradcheck failed for input {position} at index {tuple(int(i) for i in worst_index)} "
                f"(the worst of {failures} elements outside the tolerance): "
                f"analytic {a:.10g} vs numeric {n:.10g} (|diff| {abs(a - n):.3g}); "
                f"shape {x.shape}, {len(indices)} elements checked")
    return worst
