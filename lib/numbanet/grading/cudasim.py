"""Watching a CUDA kernel's threads in numba's simulator (a4's hidden tests).

Correct values do not show *how* a kernel got them: a grid-stride loop that strides by
``cuda.blockDim.x`` instead of the whole grid writes every element several times, a kernel whose
thread 0 does all the work is right and serial, a matrix product that reads ``a`` and ``b``
straight from global memory is right and untiled, and one without the second
``cuda.syncthreads()`` is right in the simulator's schedule and races on a GPU.  :func:`watch`
launches a kernel in the simulator with its array arguments wrapped so that every load and store
records the thread that made it, and with every thread's barriers counted:

* :meth:`Launch.writers`: for each element of an argument, the one thread that wrote it (-1: no
  thread; -2: more than one);
* :meth:`Launch.loads`: how often each element was read from global memory;
* :attr:`Launch.barriers`: how many ``cuda.syncthreads()`` each thread passed.

Threads are numbered in the grid's linear order: thread ``(tx, ty, tz)`` of block ``(bx, by, bz)``
is ``((bz·gy + by)·gx + bx)·(bdx·bdy·bdz) + (tz·bdy + ty)·bdx + tx``; in a 1-D launch that is
``cuda.grid(1)``.  The simulator runs the blocks one after another, each thread of a block in its
own Python thread, so the records are exact; they need the simulator (``NUMBA_ENABLE_CUDASIM=1``,
which a4's setup cell sets while grading).
"""
from __future__ import annotations

import threading

__all__ = ["watch", "Launch"]


def watch(kernel, grid, block, *args) -> "Launch":
    """Launch ``kernel[grid, block](*args)`` in the CUDA simulator and record what every thread did.

    ``args``: NumPy arrays (watched; the kernel writes into them, as into device arrays copied back)
    and scalars.  ``grid``, ``block``: ints or tuples of up to 3 ints, as in a launch.
    """
    import numba
    import numpy as np
    if not numba.config.ENABLE_CUDASIM:
        raise RuntimeError("grading.cudasim.watch runs kernels in numba's CUDA simulator: "
                           "set NUMBA_ENABLE_CUDASIM=1 before numba is imported")
    from numba.cuda.simulator import kernel as simulator
    if not isinstance(kernel, simulator.FakeCUDAKernel):
        raise TypeError(f"{getattr(kernel, '__name__', kernel)!r} is not a CUDA kernel: decorate it with @cuda.jit")
    launch = Launch(_dims(grid), _dims(block))
    spies = [launch._spy(position, a) if isinstance(a, np.ndarray) else a for position, a in enumerate(args)]
    syncthreads = simulator.BlockThread.syncthreads

    def counted(thread):
        with launch._lock:
            launch.barriers[launch._thread_id(thread)] += 1
        return syncthreads(thread)

    simulator.BlockThread.syncthreads = counted
    try:
        kernel[launch.grid, launch.block](*spies)
    finally:
        simulator.BlockThread.syncthreads = syncthreads
    return launch


def _dims(value) -> tuple:
    dims = tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise ValueError(f"a launch dimension must be 1 to 3 positive ints, got {value!r}")
    return dims + (1,) * (3 - len(dims))


class Launch:
    """What the threads of one watched launch did (see the module's docstring)."""

    def __init__(self, grid: tuple, block: tuple):
        import numpy as np
        self.grid, self.block = grid, block
        self.threads = int(np.prod(grid)) * int(np.prod(block))
        self.barriers = np.zeros(self.threads, np.int64)
        self._lock = threading.Lock()
        self._records: dict = {}   # argument position -> (writers, loads) of a watched array

    def writers(self, argument: int):
        """The thread that wrote each element of array argument number ``argument`` (from 0; -1: none, -2: several)."""
        return self._records[argument][0]

    def loads(self, argument: int):
        """How many times each element of array argument number ``argument`` (from 0) was read."""
        return self._records[argument][1]

    def _thread_id(self, thread) -> int:
        (gx, gy, _), (bx, by, bz) = self.grid, self.block
        b, t = thread.blockIdx, thread.threadIdx
        return ((b.z * gy + b.y) * gx + b.x) * (bx * by * bz) + (t.z * by + t.y) * bx + t.x

    def _spy(self, position: int, array):
        import numpy as np
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        writers, loads = np.full(array.shape, -1, np.int64), np.zeros(array.shape, np.int64)
        self._records[position] = (writers, loads)
        launch = self

        class Watched(FakeCUDAArray):
            """A device array of the simulator whose element accesses are recorded."""

            def __getitem__(self, index):
                with launch._lock:
                    loads[index] += 1
                return super().__getitem__(index)

            def __setitem__(self, index, value):
                me = launch._thread_id(threading.current_thread())
                with launch._lock:
                    before = writers[index]
                    writers[index] = np.where((before == -1) | (before == me), me, -2)
                return super().__setitem__(index, value)

        return Watched(array)
