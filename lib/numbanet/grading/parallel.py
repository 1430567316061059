"""Checks of a3's parallel Numba kernels: is a loop parallel, and can its iterations race?

Numba does not detect a data race (numba#7133): ``out[j] += a[i, j]`` in a ``prange`` loop over
``i`` compiles, and loses updates only when two threads happen to meet, so comparing results
catches it only sometimes.  :func:`prange_conflicts` decides it deterministically instead: it runs
the kernel's Python function (``fn.py_func``) with ``prange`` replaced by a range that, after every
iteration, compares the arrays that existed when the loop started with their state before that
iteration.  An element that two iterations of one ``prange`` loop both change is a race on some
schedule (threads run the iterations in any order, at the same time); a gather, where iteration j
writes only its own outputs, has none.  :func:`thread_count_differences` adds the compiled kernel's
view: the same bits on 1 thread and on all of them.
"""
from __future__ import annotations

import sys
import types

__all__ = ["parallel_loops", "prange_conflicts", "thread_count_differences", "RaceWarning"]


class RaceWarning(UserWarning):
    """Two iterations of one ``prange`` loop wrote the same element."""


def parallel_loops(fn, *args) -> int:
    """How many parallel loops Numba made of ``fn``: 0 unless it is compiled by
    ``@njit(parallel=True)`` and has a ``prange`` loop (or array expressions Numba parallelises).

    Calls ``fn(*args)`` first, so that it is compiled for these arguments; a3 checks with it that
    a "parallel" kernel is one (``range`` instead of ``prange``, or a plain Python function, give 0).
    """
    fn(*args)
    if not getattr(fn, "targetoptions", {}).get("parallel"):
        return 0
    loops = 0
    for signature in getattr(fn, "signatures", ()):
        diagnostics = fn.get_metadata(signature).get("parfor_diagnostics")
        if diagnostics is not None and getattr(diagnostics, "_has_setup", False):
            loops = max(loops, len(diagnostics.initial_parfors))
    return loops


def prange_conflicts(fn, *args) -> int:
    """How many array elements two iterations of the same ``prange`` loop of ``fn`` both wrote
    (0 for a race-free kernel).  Runs ``fn``'s Python function once on copies of ``args``; Numba
    kernels it calls are run the same way.  The first conflict is printed: which loop, which
    iterations, which array and element, as a :class:`RaceWarning` (the feedback shows warnings).

    Watched: the arrays bound to the function's local variables when the loop starts (its inputs,
    the outputs allocated before the loop); arrays made inside an iteration are its own.  A
    write that leaves an element's bytes unchanged is not seen (it cannot lose an update either).
    """
    import numpy as np
    watch = _Watch()
    emulated = _with_watched_prange(fn, watch, {})
    emulated(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    if watch.first:   # shown in the feedback, next to the count
        import warnings
        warnings.warn(f"{watch.first} ({watch.conflicts} element{'s' if watch.conflicts != 1 else ''} in all)",
                      RaceWarning, stacklevel=2)
    return watch.conflicts


def thread_count_differences(fn, *args, repeats: int = 5) -> int:
    """How many of ``repeats`` runs of the compiled ``fn`` on all of Numba's threads give other
    bits than a run on one thread (0 for a race-free kernel; a racing one differs only sometimes)."""
    import numba
    import numpy as np
    before = numba.get_num_threads()

    def run(threads: int) -> bytes:
        numba.set_num_threads(threads)
        result = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
        return np.ascontiguousarray(result).tobytes()

    try:
        alone = run(1)
        return sum(run(numba.config.NUMBA_NUM_THREADS) != alone for _ in range(repeats))
    finally:
        numba.set_num_threads(before)


class _Watch:
    """What the watched ``prange`` loops found: the number of conflicting elements, the first one."""

    def __init__(self):
        self.conflicts = 0
        self.first = ""
        self.depth = 0   # Numba runs a prange inside a prange's iteration sequentially


def _with_watched_prange(fn, watch: _Watch, made: dict):
    """``fn``'s Python function with ``prange`` (also as ``numba.prange``) replaced by a watched
    range, and the Numba kernels it calls replaced the same way (``made``: those done so far)."""
    import numba
    function = getattr(fn, "py_func", fn)
    if not isinstance(function, types.FunctionType):
        raise TypeError(f"{fn!r} is not a Python or Numba function")
    if function in made:
        return made[function]
    namespace = dict(function.__globals__)
    copy = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              function.__closure__)
    made[function] = copy

    def watched(*range_args):
        return _WatchedRange(watch, function.__name__, range(*range_args))

    for name in function.__code__.co_names:
        value = namespace.get(name)
        if value is numba.prange:
            namespace[name] = watched
        elif isinstance(value, types.ModuleType) and getattr(value, "prange", None) is numba.prange:
            namespace[name] = _ModuleWith(value, prange=watched)
        elif hasattr(value, "py_func") and isinstance(value.py_func, types.FunctionType):
            namespace[name] = _with_watched_prange(value, watch, made)
    return copy


class _ModuleWith:
    """A module with some attributes replaced (``numba`` whose ``prange`` is watched)."""

    def __init__(self, module, **replaced):
        self._module, self._replaced = module, replaced

    def __getattr__(self, name):
        return self._replaced[name] if name in self._replaced else getattr(self._module, name)


class _WatchedRange:
    """The iterations of one ``prange`` loop, run in order; after each, the elements it changed in
    the arrays that existed when the loop started are compared with the other iterations' writes."""

    def __init__(self, watch: _Watch, function: str, iterations: range):
        self._watch, self._function, self._iterations = watch, function, iterations

    def __iter__(self):
        frame = sys._getframe(1)   # the function whose for loop asked for the iterator
        if self._watch.depth:
            return iter(self._iterations)
        return self._run(frame)

    def _run(self, frame):
        import numpy as np
        names: dict = {}
        for name, value in frame.f_locals.items():
            if isinstance(value, np.ndarray) and value.size:
                names.setdefault(id(value), (name, value))
        before = {key: value.copy() for key, (_, value) in names.items()}
        writer = {key: np.full(value.shape, -1, np.int64) for key, (_, value) in names.items()}
        clashed = {key: np.zeros(value.shape, bool) for key, (_, value) in names.items()}
        line = frame.f_lineno
        self._watch.depth += 1
        try:
            for index in self._iterations:
                yield index
                for key, (name, value) in names.items():
                    changed = _changed(value, before[key])
                    if not changed.any():
                        continue
                    clash = changed & (writer[key] >= 0)
                    if clash.any() and not self._watch.first:
                        where = tuple(int(i) for i in np.argwhere(clash)[0])
                        self._watch.first = (f"iterations {writer[key][where]} and {index} of the prange loop in "
                                             f"{self._function} (line {line} of its cell) both wrote "
                                             f"{name}[{', '.join(map(str, where))}]")
                    clashed[key] |= clash
                    writer[key][changed] = index
                    before[key][changed] = value[changed]
        finally:
            self._watch.depth -= 1
            self._watch.conflicts += int(sum(c.sum() for c in clashed.values()))


def _changed(now, before):
    """Where the bytes of ``now`` differ from ``before`` (NaNs in an uninitialised np.empty compare equal)."""
    import numpy as np
    if now.shape != before.shape or now.dtype != before.dtype:
        return np.ones(before.shape, bool)
    as_bytes = lambda a: np.ascontiguousarray(a).view(np.uint8).reshape(a.shape + (a.dtype.itemsize,))
    return (as_bytes(now) != as_bytes(before)).any(axis=-1)
