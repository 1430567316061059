"""The CUDA tests: a real GPU, or numba's CUDA simulator on the CPU.

Run them as their own pytest process (the unit run skips this folder without a GPU)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda -n 2 -m "not gpu"   # simulator, tiny shapes
    python -m pytest tests/cuda -m gpu                                       # bigger shapes, real GPU

The simulator must be chosen before numba is first imported.  Without a GPU device
node this conftest turns it on itself; it refuses to run if numba was imported
earlier in the wrong mode.  Tests marked ``gpu`` are skipped in the simulator.
"""
import copy
import os
import sys

import pytest


def _gpu_present() -> bool:
    """A real NVIDIA GPU is visible (checked without importing numba)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _gpu_present():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

if "numba" in sys.modules:
    from numba import config

    if bool(config.ENABLE_CUDASIM) != SIMULATOR:
        pytest.exit("tests/cuda: numba was imported before NUMBA_ENABLE_CUDASIM was set; run "
                    "NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda as its own process", returncode=4)

# The simulator runs one OS thread per CUDA thread and passes every syncthreads() by thread
# switches; CPython's default 5 ms switch interval makes each tiled GEMM slab crawl.
sys.setswitchinterval(1e-4)


def _lock_simulated_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` thread-safe.

    numba-cuda's ``FakeCUDAShared.array`` looks the block's array up by call site and
    creates it on a miss without a lock: two threads of one block that both miss get two
    different "shared" arrays, and the block computes garbage (seen as rare, unreproducible
    25% errors in tiled kernels, more often with the short switch interval above).  This is
    the same logic with the check-and-create under a lock.
    """
    import threading
    import traceback

    import numpy as np
    from numba.core import types
    from numba.np import numpy_support
    from numba.cuda.simulator import kernelapi

    lock = threading.Lock()
    unpatched = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported: no lookup
            return unpatched(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        call_site = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            result = self._allocations.get(call_site)
            if result is None:
                result = self._allocations[call_site] = np.empty(shape, dtype)
        return result

    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    _lock_simulated_shared_arrays()


def pytest_collection_modifyitems(config, items):
    from numba import cuda

    if SIMULATOR or not cuda.is_available():
        reason = "needs a real CUDA GPU (running in the simulator)" if SIMULATOR else "needs a real CUDA GPU"
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def _run_cpu_and_gpu(layer, x, dy):
    """Run ``layer`` on the CPU and a copy of it moved to the GPU; return both sides' results.

    Each side is a dict: "y", "dx" and "d<name>" for every parameter gradient, as NumPy
    arrays (the GPU's copied back after checking that they stayed device arrays).
    """
    from numbanet.device import is_cuda, to_device, to_numpy

    gpu = copy.deepcopy(layer).to("cuda")
    cpu_out = {"y": layer(x), "dx": layer.backward(dy)}
    y_dev = gpu(to_device(x, "cuda"))
    dx_dev = gpu.backward(to_device(dy, "cuda"))
    assert is_cuda(y_dev) and is_cuda(dx_dev), "the GPU layer returned host arrays"
    gpu_out = {"y": to_numpy(y_dev), "dx": to_numpy(dx_dev)}
    for (name, p_cpu), (_, p_gpu) in zip(layer.named_parameters(), gpu.named_parameters()):
        assert is_cuda(p_gpu.data) and is_cuda(p_gpu.grad), f"{name} left the GPU"
        cpu_out["d" + name], gpu_out["d" + name] = p_cpu.grad, to_numpy(p_gpu.grad)
    return cpu_out, gpu_out


@pytest.fixture
def cpu_and_gpu():
    """``cpu_and_gpu(layer, x, dy) -> (cpu, gpu)``: see ``_run_cpu_and_gpu``."""
    return _run_cpu_and_gpu
