r"""What forward keeps for backward: one stack of caches per module, forward passes, ``no_grad``.

numbanet has no autograd graph; each layer's forward saves what its backward needs with
``Module._save_for_backward(...)`` and backward takes it back with ``Module._saved()``.
The rules, PyTorch's wherever they can be had without a graph:

* **A stack per module.**  A module called k times in one forward pass (one ReLU instance
  used twice in a Sequential) saves k caches; its backward is called k times, in reverse
  order (the containers do that), and each call pops the most recent cache.
* **Passes.**  The outermost forward call running on a thread (``model(x)``, or a layer
  called on its own) starts a *pass*; everything called inside it belongs to it.  When a
  module saves in a new pass, the caches it still holds from an earlier pass are dropped,
  so forwards without a backward (inspecting outputs, timing loops) never pile up memory.
* **Stale caches raise.**  A backward uses each cache once and frees it;
  ``backward(dy, retain_graph=True)`` puts the caches back for another backward.  A second
  backward without a new forward, a backward after a ``no_grad`` forward, one whose caches
  span two passes (a module that did not run in the last pass), and one after an eval-mode
  forward replaced training-mode caches that no backward used (forward in train mode, then
  in eval mode, then backward: which pass does dy belong to?) raise a ``RuntimeError``
  naming the module.  A training forward after an unused eval one (the training loop after
  an evaluation) just replaces it, and switching mode *between* a forward and its backward
  is fine: the cache holds what that forward computed.
* **No aliasing.**  A cache never shares memory with an array the caller can still write:
  an input of the pass that a layer keeps is copied (only then, and only that array), and
  an output of the pass that is also kept (Sigmoid's and Tanh's y) is handed out as a copy.
* **no_grad.**  Inside ``with numbanet.no_grad():`` nothing is saved (``evaluate``,
  ``predict`` and ``summary`` run that way); the layers compute the same outputs.

``Module.__init_subclass__`` wraps every ``forward`` and ``backward`` a subclass defines,
so that these rules hold for any module, including the exercises' own.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import threading

import numpy as np

from .device import is_cuda


class _ThreadState(threading.local):
    grad_enabled = True
    forward_pass: "_Pass | None" = None      # the outermost forward running on this thread
    backward_call: "_BackwardCall | None" = None  # the outermost backward running on this thread


_state = _ThreadState()
_pass_ids = itertools.count(1)


@contextlib.contextmanager
def no_grad():
    """``with numbanet.no_grad():`` forwards inside save nothing for backward (as PyTorch's
    ``torch.no_grad``); also usable as a decorator.  Use it for evaluation and inference."""
    previous = _state.grad_enabled
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def is_grad_enabled() -> bool:
    """False inside ``no_grad()``."""
    return _state.grad_enabled


# -- memory overlap of host and device arrays --------------------------------------------------

def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_cuda(value)


def _device_extent(a) -> tuple[int, int]:
    """[first, last) byte addresses of a device array."""
    interface = a.__cuda_array_interface__
    start, itemsize = interface["data"][0], np.dtype(interface["typestr"]).itemsize
    strides = interface.get("strides") or _c_strides(interface["shape"], itemsize)
    low = start + sum(s * (n - 1) for s, n in zip(strides, interface["shape"]) if s < 0)
    high = start + sum(s * (n - 1) for s, n in zip(strides, interface["shape"]) if s > 0) + itemsize
    return low, high


def _c_strides(shape, itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _may_alias(a, b) -> bool:
    """True when the two arrays' memory ranges overlap (a bounds test: it may say True for
    interleaved views that share no element, which only costs a needless copy)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.may_share_memory(a, b)
    if is_cuda(a) and is_cuda(b):
        if 0 in (a.size, b.size):
            return False
        wrapped = getattr(a, "_ary", None), getattr(b, "_ary", None)  # numba's simulator wraps host arrays
        if all(isinstance(w, np.ndarray) for w in wrapped):
            return np.may_share_memory(*wrapped)
        (a0, a1), (b0, b1) = _device_extent(a), _device_extent(b)
        return a0 < b1 and b0 < a1
    return False


def _copy(a):
    """A fresh copy of a host or device array, on the same device."""
    if isinstance(a, np.ndarray):
        return a.copy()
    from numba import cuda
    out = cuda.device_array(a.shape, a.dtype)
    out.copy_to_device(a)
    return out


def _arrays_in(values):
    """The arrays among ``values`` and, one level down, inside tuples and lists."""
    for value in values:
        if _is_array(value):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from (v for v in value if _is_array(v))


# -- passes, records, backward calls --------------------------------------------------------------

class _Pass:
    """One outermost forward call: its inputs (the caller's arrays) and every array saved in it."""

    __slots__ = ("id", "inputs", "saved")

    def __init__(self, inputs):
        self.id = next(_pass_ids)
        self.inputs = list(_arrays_in(inputs))
        self.saved = []

    def keep(self, value):
        """``value`` as it may be kept in a cache: a copy when it shares memory with an input."""
        if _is_array(value) and any(_may_alias(value, x) for x in self.inputs):
            value = _copy(value)
        if _is_array(value):
            self.saved.append(value)
        return value

    def hand_out(self, output):
        """The pass's output as the caller gets it: arrays that a cache shares are copied."""
        if isinstance(output, tuple):
            return tuple(self.hand_out(o) for o in output)
        if _is_array(output) and any(_may_alias(output, kept) for kept in self.saved):
            return _copy(output)
        return output


class _Record:
    """One cache: the values a forward saved, the pass and the mode it ran in.

    ``replaced_training``: this eval-mode cache replaced training-mode caches that no backward
    used (an evaluation between a training forward and its backward: backward cannot know
    which pass dy belongs to).  The other way round, a training forward after an unused
    evaluation one, is the ordinary training loop and replaces it silently.
    """

    __slots__ = ("pass_id", "training", "values", "replaced_training")

    def __init__(self, pass_id: int, training: bool, values: tuple, replaced_training: bool):
        self.pass_id, self.training, self.values = pass_id, training, values
        self.replaced_training = replaced_training


class _BackwardCall:
    """One outermost backward call: the caches it took, to put back with ``retain_graph`` or on error."""

    __slots__ = ("retain", "taken", "pass_id")

    def __init__(self, retain: bool, pass_id):
        """``pass_id``: the pass to differentiate, the latest one the outermost module ran in."""
        self.retain, self.taken, self.pass_id = retain, [], pass_id

    def give_back(self) -> None:
        for stack, record in reversed(self.taken):
            stack.records.append(record)
            stack.status = "saved"
        self.taken.clear()


class CacheStack:
    """The caches of one module, oldest first, and why the stack is empty when it is
    (``status``: "never" run, "used" by a backward, forward ran under "no_grad")."""

    __slots__ = ("records", "status", "last_pass")

    def __init__(self):
        self.records: list[_Record] = []
        self.status = "never"
        self.last_pass = None  # the latest pass (outside no_grad) the module ran in

    def __deepcopy__(self, memo):  # a copied module starts without caches
        return CacheStack()

    def save(self, training: bool, values: tuple) -> None:
        if not _state.grad_enabled:
            if not self.records:
                self.status = "no_grad"
            return
        # outside any forward call (not a layer's forward): keep copies of every array
        current = _state.forward_pass or _Pass(values)
        values = tuple(current.keep(v) for v in values)
        replaced_training = False
        if self.records and self.records[-1].pass_id != current.id:
            replaced_training = not training and any(r.training for r in self.records)
            self.records.clear()
        elif self.records:
            replaced_training = self.records[-1].replaced_training
        self.records.append(_Record(current.id, training, values, replaced_training))
        self.status = "saved"

    def take(self, name: str) -> tuple:
        if not self.records:
            raise RuntimeError(_EMPTY[self.status].format(name=name))
        record = self.records[-1]
        if record.replaced_training:
            raise RuntimeError(_AMBIGUOUS.format(name=name))
        call = _state.backward_call
        if call is not None:
            if call.pass_id is None:
                call.pass_id = record.pass_id
            elif call.pass_id != record.pass_id:
                raise RuntimeError(_STALE.format(name=name))
        self.records.pop()
        if not self.records:
            self.status = "used"
        if call is not None:
            call.taken.append((self, record))
        return record.values


_EMPTY = {
    "never": "{name}.backward called before forward: run the layer on an input first",
    "used": ("{name}.backward: nothing left to differentiate: each forward call's cache is used by "
             "one backward call and then freed (a module called k times in a forward takes k backward "
             "calls). Run forward again, or pass retain_graph=True to the earlier backward to keep "
             "the caches"),
    "no_grad": ("{name}.backward: the last forward ran under numbanet.no_grad(), which keeps nothing "
                "for backward; run the forward outside no_grad to differentiate it"),
}
_AMBIGUOUS = ("{name}.backward: a forward in eval mode replaced the caches of a training-mode forward "
              "that no backward used, so it is unclear which pass dy belongs to. Run evaluation "
              "forwards under `with numbanet.no_grad():` (numbanet.train.evaluate and predict do), or "
              "run the forward you want to differentiate again")
_STALE = ("{name}.backward: its cache comes from an earlier forward pass than the one this backward "
          "differentiates ({name} did not run in that pass)")


# -- the wrappers Module puts around every forward and backward ------------------------------------

def forward_wrapper(forward):
    """Run ``forward`` inside the current pass, or as a new outermost pass."""

    @functools.wraps(forward)
    def wrapped(self, *args, **kwargs):
        current, outermost = _state.forward_pass, _state.forward_pass is None
        if outermost:
            current = _state.forward_pass = _Pass((*args, *kwargs.values()))
        if _state.grad_enabled:
            self._caches.last_pass = current.id
        try:
            output = forward(self, *args, **kwargs)
            return current.hand_out(output) if outermost else output
        finally:
            if outermost:
                _state.forward_pass = None

    return wrapped


def backward_wrapper(backward):
    """Accept ``retain_graph``; the outermost call gives the caches it took back when it fails
    (so a corrected retry works) or when asked to keep them."""

    @functools.wraps(backward)
    def wrapped(self, *args, retain_graph: bool = False, **kwargs):
        if _state.backward_call is not None:
            return backward(self, *args, **kwargs)
        call = _state.backward_call = _BackwardCall(bool(retain_graph), self._caches.last_pass)
        try:
            result = backward(self, *args, **kwargs)
        except BaseException:
            call.give_back()
            raise
        finally:
            _state.backward_call = None
        if call.retain:
            call.give_back()
        return result

    return wrapped
