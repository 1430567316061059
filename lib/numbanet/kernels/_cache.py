"""Numba's on-disk cache for numbanet's kernels, made to notice edits to the files a kernel calls into.

Numba keys each cached kernel on the content of the kernel's own source file only.  numbanet's
kernels also compile code from other files (``formulas.py`` into both devices' kernels,
``cpu/blas.py`` into every convolution), so after an edit there a kernel would load its stale
machine code and silently compute the old formula.  The locators below keep Numba's cache
folders (``NUMBA_CACHE_DIR``, the in-tree ``__pycache__``, the user-wide cache) but add a digest
of every ``.py`` file of ``numbanet/kernels`` to the stamp of each kernel from that package: any
edit in the package recompiles all of its kernels (about 20 s), never a stale one.

The hook is Numba's list of locator classes (``numba.core.caching.CacheImpl._locator_classes``;
the classes lost their leading underscore in Numba 0.61); it must run before the kernels are
decorated, so ``numbanet.kernels`` imports this module first.
"""
from __future__ import annotations

import functools
import hashlib
import os

from numba.core import caching

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def package_digest() -> str:
    """SHA-256 of the relative path and content of every ``.py`` file under ``numbanet/kernels``
    (read once per process, as Numba reads each kernel's own file)."""
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(_PACKAGE):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, _PACKAGE).encode())
            with open(path, "rb") as source:
                digest.update(source.read())
    return digest.hexdigest()


class _PackageStamp:
    """Locator mixin: only for kernels defined under ``numbanet/kernels``; stamp = (Numba's own
    stamp of the kernel's file, ``package_digest()``)."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return super().get_source_stamp(), package_digest()


def _numba(name: str):
    """Numba's class ``name``, or the older ``_name``."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


class _UserProvided(_PackageStamp, _numba("UserProvidedCacheLocator")):
    """``NUMBA_CACHE_DIR``."""


class _InTree(_PackageStamp, _numba("InTreeCacheLocator")):
    """``numbanet/kernels/**/__pycache__``, where writable."""


class _UserWide(_PackageStamp, _numba("UserWideCacheLocator")):
    """The user-wide cache folder, for a read-only installation."""


LOCATORS = (_UserProvided, _InTree, _UserWide)


def install() -> None:
    """Put the locators ahead of Numba's own (idempotent)."""
    classes = _numba("CacheImpl")._locator_classes
    if classes[:len(LOCATORS)] != list(LOCATORS):
        classes[:0] = LOCATORS
