"""Keep freed array memory in the process for the next step: glibc ``malloc`` settings (Linux).

A training step allocates its activations and gradients afresh (every layer returns new
arrays, and the caches keep them until backward), hundreds of megabytes per step, then frees
them.  With glibc's defaults, arrays above the dynamic mmap threshold come from ``mmap`` and
go back to the OS when freed, and freed heap memory above the trim threshold is returned too;
the next step then touches every page again, one page fault (and a zero-fill) per 4 KiB.
Measured on this project's 2-core machine, batch 128: the reduced GoogLeNet's step took
1.95-2.10 s with the defaults and 1.25-1.31 s with the settings below; ResNet-20's 304 ms
and 261 ms.

``tune()`` (run at ``import numbanet``) sets M_MMAP_THRESHOLD to glibc's maximum, 32 MiB
(larger arrays still use mmap), and M_TRIM_THRESHOLD to 2 GiB, so the heap keeps what a step
freed: the process's resident memory stays at its peak instead of shrinking between steps.
It does nothing elsewhere than glibc on Linux, when ``NUMBANET_MALLOC=default``, or when the
user set glibc's own variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``GLIBC_TUNABLES``).  It affects every library in the process (PyTorch's CPU tensors too).
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20           # glibc's largest on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = (1 << 31) - 1      # mallopt takes an int
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_state = "default"


def tune() -> str:
    """Apply the settings once; returns and records the state: "tuned" or why it is "default"."""
    global _state
    if _state == "tuned":
        return _state
    if os.environ.get("NUMBANET_MALLOC", "").strip().lower() in ("default", "0", "off"):
        _state = "default (NUMBANET_MALLOC)"
    elif any(name in os.environ for name in _USER_SETTINGS):
        _state = "default (the user's glibc settings)"
    elif not sys.platform.startswith("linux"):
        _state = "default (not Linux)"
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            _state = "default (no glibc mallopt)"
        else:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            _state = "tuned" if ok else "default (mallopt refused)"
    return _state


def malloc_state() -> str:
    """"tuned" when numbanet set glibc's malloc thresholds, else "default (why)"."""
    return _state
