"""The library's random number generator (initialisation, dropout masks, shuffling).

``numbanet.manual_seed(s)`` makes every later draw reproducible; functions that
take ``rng=`` use that generator instead of the global one.
"""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator (``np.random.default_rng(seed)``) and return it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def get_rng(rng: np.random.Generator | None = None) -> np.random.Generator:
    """``rng`` if given, else the global generator."""
    return _generator if rng is None else rng
