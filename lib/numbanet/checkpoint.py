"""Checkpoints: ``nb.save(model, path, optimizer=None, **metadata)`` and ``nb.load(model, path, optimizer=None)``.

A checkpoint is one ``.npz`` archive (``numpy.load`` reads it without numbanet)::

    model/<name>              every entry of model.state_dict(): parameters and buffers
                              (BatchNorm running mean/var, ...), dtype and bytes as they were
    optimizer/<i>/<name>      the optimizer's per-parameter arrays (momentum buffer, Adam's m, v)
    __numbanet__              JSON text: format version, numbanet version, model class,
                              optimizer class, hyperparameters and scalar state (Adam's step),
                              and the user's metadata (epoch, accuracy, scheduler.state_dict(), ...)

No pickles: ``load`` reads with ``allow_pickle=False``.  A round trip is exact (the
arrays' bytes are stored as they are; floats in JSON round-trip exactly).  The archive
is written to a temporary file in the target directory and renamed into place, so an
interrupted save never leaves a half-written checkpoint under the real name.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .module import Module

FORMAT_VERSION = 1
_HEADER = "__numbanet__"
_SHOWN_KEYS = 20


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _to_json(owner: str, what: str, value) -> str:
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{owner}: {what} must be JSON-serialisable: {error}") from None


def save(model: Module, path: str | os.PathLike, /, optimizer=None, **metadata) -> None:
    """Write the model's state (and the optimizer's, and ``metadata``) to ``path`` (.npz), atomically.

    ``metadata``: JSON-serialisable keyword values (any name but ``optimizer``), returned by ``load``.
    """
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    header = {"format": FORMAT_VERSION, "model": type(model).__name__, "optimizer": None,
              "metadata": metadata}
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, entry in state["state"].items():
            for name, value in entry.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optimizer/{index}/{name}"] = value
                else:
                    scalars.setdefault(str(index), {})[name] = value
        header["optimizer"] = {"class": type(optimizer).__name__, "parameters": len(optimizer.params),
                               "hyperparameters": state["hyperparameters"], "scalars": scalars}
    from . import __version__  # set in numbanet/__init__.py after this module is imported

    header["numbanet"] = __version__
    for key, value in metadata.items():
        _to_json("save", f"metadata {key}={value!r}", value)
    arrays[_HEADER] = np.array(_to_json("save", "the optimizer state", header))

    path = os.fspath(path)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                         prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def _check_fits(model: Module, state: dict, path: str, saved_class: str) -> None:
    """Raise one ValueError listing missing, unexpected and shape-mismatched keys, if any."""
    expected = {name: np.shape(value) for name, value in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} (checkpoint {state[k].shape}, model {expected[k]})"
                  for k in expected if k in state and state[k].shape != expected[k]]
    if not (missing or unexpected or mismatched):
        return
    problems = [f"{len(keys)} {what}: {_listing(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                if keys]
    raise ValueError(f"load: checkpoint {path} (saved from {saved_class}) does not fit this "
                     f"{type(model).__name__}: " + "; ".join(problems))


def _optimizer_state(optimizer, saved: dict | None, arrays: dict, path: str) -> dict:
    """Rebuild the dict ``optimizer.load_state_dict`` takes, after checking the optimizer matches."""
    if saved is None:
        raise ValueError(f"load: checkpoint {path} holds no optimizer state (it was saved without optimizer=)")
    if saved["class"] != type(optimizer).__name__ or saved["parameters"] != len(optimizer.params):
        raise ValueError(f"load: checkpoint {path} holds the state of a {saved['class']} over "
                         f"{saved['parameters']} parameters, got a {type(optimizer).__name__} over "
                         f"{len(optimizer.params)}")
    state: dict[int, dict] = {}
    for key, value in arrays.items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    for index, entry in saved["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    # JSON has no tuples; PyTorch-style hyperparameters such as betas are tuples
    hyperparameters = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["hyperparameters"].items()}
    return {"state": dict(sorted(state.items())), "hyperparameters": hyperparameters}


def load(model: Module, path: str | os.PathLike, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer``) from a checkpoint written by ``save``; return its metadata.

    Nothing is changed unless everything fits: a checkpoint of another architecture raises one
    ValueError listing the missing, unexpected and shape-mismatched keys.  Values are copied into
    the existing arrays, so a float32 checkpoint loads into a float64 model as float64.
    """
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as archive:
        if _HEADER not in archive.files:
            raise ValueError(f"load: {path} is not a numbanet checkpoint (no {_HEADER} entry)")
        header = json.loads(str(archive[_HEADER]))
        model_state = {k[len("model/"):]: archive[k] for k in archive.files if k.startswith("model/")}
        optimizer_arrays = {k[len("optimizer/"):]: archive[k] for k in archive.files
                            if k.startswith("optimizer/")}
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"load: {path} has checkpoint format {header.get('format')}, this numbanet reads "
                         f"format {FORMAT_VERSION}")
    _check_fits(model, model_state, path, header["model"])
    if optimizer is not None:
        optimizer.load_state_dict(_optimizer_state(optimizer, header["optimizer"], optimizer_arrays, path))
    model.load_state_dict(model_state)
    return header["metadata"]
