r"""The training loop: ``fit``, ``evaluate``, ``predict``, ``predict_tta`` and ``History``.

One optimisation step of ``fit`` is the explicit chain rule of the book::

    out  = model(x)                    (train mode)
    loss = loss_fn(out, y)             (a float)
    optimizer.zero_grad()
    model.backward(loss_fn.backward()) (adds dL/dθ into every θ.grad)
    optimizer.step()

and ``scheduler.step()`` once per epoch.

Models with auxiliary outputs (GoogLeNet in train mode returns (main, aux1, aux2)):
``fit`` passes whatever the model returns to ``loss_fn`` untouched and hands
whatever ``loss_fn.backward()`` returns to ``model.backward`` untouched, so the
loss object decides how the outputs combine (``numbanet.models.GoogLeNetLoss``:
real + 0.3·aux1 + 0.3·aux2).  Accuracy is always measured on the first output.
In eval mode such a model returns its main output only.

Reported numbers per epoch: the training loss and accuracy averaged over the
epoch's batches as they were trained (train mode, augmented), weighted by batch
size; the validation loss and accuracy in eval mode; the learning rate used; the
wall time of the epoch (training and validation).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from tqdm.auto import tqdm

from .data.transforms import multi_crop
from .loss import CrossEntropyLoss, MSELoss
from .device import CUDA, Device, device as nb_device, to_device, to_numpy
from .caching import no_grad
from .module import Module


def check_device(owner: str, device) -> Device:
    """The ``Device`` named by ``device`` ("cpu" or "cuda"); a clear error for anything else,
    and for "cuda" on a machine without a GPU (the message says how to get one)."""
    try:
        return nb_device(device)
    except ValueError:
        raise ValueError(f"{owner}: unknown device {device!r}; expected 'cpu' or 'cuda'") from None
    except RuntimeError as exc:
        raise RuntimeError(f"{owner}: {exc}") from None


def _main_output(out):
    """The logits used for accuracy: the first element when a model returns several outputs."""
    return out[0] if isinstance(out, tuple) else out


def _batch_input(model: Module, x):
    """The batch in the model's dtype (loaders yield float32; a model may be float64), on the
    model's device (a host batch is copied to the GPU when the model lives there)."""
    x = np.asarray(x).astype(model.dtype, copy=False)
    return to_device(x, model.device) if model.device == CUDA else x


def _correct(logits, y) -> int:
    """Number of rows whose arg-max matches y (device logits are copied to the host for this)."""
    return int(np.count_nonzero(np.argmax(to_numpy(logits), axis=1) == np.asarray(y)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits: exp(x − max) / Σ exp(x − max), stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass
class History:
    """Per-epoch records of a ``fit`` run; ``val_*`` entries are None without a validation loader."""
    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    time: list = field(default_factory=list)

    def append(self, **record) -> None:
        for column in fields(self):
            getattr(self, column.name).append(record[column.name])

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write the records as JSON (``History.load`` reads them back)."""
        rows = [f" {json.dumps(name)}: {json.dumps(values)}" for name, values in self.to_dict().items()]
        with open(path, "w") as stream:
            stream.write("{\n" + ",\n".join(rows) + "\n}\n")  # one line per column

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        with open(path) as stream:
            return cls(**json.load(stream))

    def plot(self):
        """A matplotlib Figure: loss and accuracy per epoch, training and validation.

        Built without pyplot (no global state): ``history.plot().savefig("history.png")``;
        a notebook displays the returned figure.
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        figure = Figure(figsize=(10, 3.8), layout="constrained")
        for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
            axes.plot(self.epoch, getattr(self, f"train_{metric}"), "o-", label="train")
            validation = getattr(self, f"val_{metric}")
            if any(v is not None for v in validation):
                axes.plot(self.epoch, [np.nan if v is None else v for v in validation], "s-", label="validation")
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_ylabel(metric)
            axes.grid(alpha=0.3)
            axes.legend()
        return figure

    def __repr__(self) -> str:
        if not self:
            return "History(0 epochs)"
        last = {name: values[-1] for name, values in self.to_dict().items()}
        val = "" if last["val_loss"] is None else \
            f", val_loss={last['val_loss']:.4f}, val_accuracy={last['val_accuracy']:.4f}"
        return (f"History({len(self)} epochs; last: train_loss={last['train_loss']:.4f}, "
                f"train_accuracy={last['train_accuracy']:.4f}{val})")


def _check_loss_accepts(loss_fn, out) -> None:
    if isinstance(out, tuple) and isinstance(loss_fn, (CrossEntropyLoss, MSELoss)):
        raise TypeError(f"fit: the model returned {len(out)} outputs in train mode (auxiliary classifiers?) "
                        f"but {type(loss_fn).__name__} takes one; pass a loss made for them, e.g. "
                        f"numbanet.models.GoogLeNetLoss")


def _train_epoch(model, loss_fn, optimizer, loader, bar) -> tuple[float, float]:
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for batch, (x, y) in enumerate(loader, start=1):
        out = model(_batch_input(model, x))
        _check_loss_accepts(loss_fn, out)
        loss = loss_fn(out, y)
        if not math.isfinite(loss):
            raise FloatingPointError(f"fit: the loss became {loss} at batch {batch}; "
                                     f"try a smaller learning rate (now {optimizer.lr})")
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        loss_sum += loss * len(y)
        correct += _correct(_main_output(out), y)
        seen += len(y)
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    return loss_sum / seen, correct / seen


def fit(model: Module, loss_fn, optimizer, train_loader, val_loader=None, epochs: int = 1, scheduler=None,
        device: str = "cpu", quiet: bool = False, on_epoch_end=None) -> History:
    """Train ``model`` for ``epochs`` epochs; return the ``History``.

    Args:
        model: a numbanet Module (left in train mode).
        loss_fn: ``loss = loss_fn(out, y)`` (float) and ``loss_fn.backward()`` -> dout.
        optimizer: a numbanet optimizer over ``model.parameters()``.
        train_loader, val_loader: iterables of (x, y) batches, e.g. ``numbanet.data.DataLoader``;
            x (B, C, H, W), y (B,) integer classes.
        scheduler: stepped once after every epoch.
        device: "cpu" or "cuda"; the model is moved there (``model.to(device)``) and every
            batch is copied to it; only the loss scalar and the logits for the accuracy come back.
        quiet: no progress bars.
        on_epoch_end: called as ``on_epoch_end(history)`` after every epoch (after the scheduler's
            step), e.g. to save a checkpoint so that an interrupted run keeps its finished epochs.

    The recorded training loss is what ``loss_fn`` returns (for ``GoogLeNetLoss`` the total with
    the auxiliary terms); the validation loss is ``loss_fn`` on the eval-mode output (main only).
    """
    model.to(check_device("fit", device))
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"fit: epochs must be an integer >= 1, got {epochs}")
    history = History()
    for epoch in range(1, int(epochs) + 1):
        start, lr = time.perf_counter(), optimizer.lr
        with tqdm(total=len(train_loader), desc=f"epoch {epoch}/{epochs}", unit="batch", disable=quiet,
                  dynamic_ncols=True) as bar:
            train_loss, train_accuracy = _train_epoch(model, loss_fn, optimizer, train_loader, bar)
            val_loss = val_accuracy = None
            if val_loader is not None:
                val_loss, val_accuracy = evaluate(model, val_loader, loss_fn)
                bar.set_postfix(loss=f"{train_loss:.4f}", acc=f"{train_accuracy:.4f}",
                                val_loss=f"{val_loss:.4f}", val_acc=f"{val_accuracy:.4f}")
        model.train()
        if scheduler is not None:
            scheduler.step()
        history.append(epoch=epoch, train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val_loss,
                       val_accuracy=val_accuracy, lr=lr, time=time.perf_counter() - start)
        if on_epoch_end is not None:
            on_epoch_end(history)
    return history


class _EvalMode:
    """``with _EvalMode(model):`` runs the block in eval mode under ``no_grad`` (no caches are kept,
    and those of an earlier training forward stay usable) and restores the previous mode."""

    def __init__(self, model: Module):
        self.model, self.was_training = model, model.training
        self.no_grad = no_grad()

    def __enter__(self):
        self.no_grad.__enter__()
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        return self.no_grad.__exit__(*exc)


def evaluate(model: Module, loader, loss_fn=None) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` in eval mode over every batch of ``loader``, under ``no_grad``.

    ``loss_fn`` defaults to ``CrossEntropyLoss()``; the mean weights each batch's loss by its
    size.  The model's train/eval mode is restored afterwards.
    """
    loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
    loss_sum, correct, seen = 0.0, 0, 0
    with _EvalMode(model):
        for x, y in loader:
            out = model(_batch_input(model, x))
            loss_sum += loss_fn(out, y) * len(y)
            correct += _correct(_main_output(out), y)
            seen += len(y)
    if seen == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return loss_sum / seen, correct / seen


def predict(model: Module, x, batch_size: int = 256) -> np.ndarray:
    """Logits (N, K) of ``model`` in eval mode (under ``no_grad``) for inputs x (N, ...), ``batch_size`` at a time.

    The model's train/eval mode is restored afterwards.
    """
    x = np.asarray(x)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"predict: batch_size must be an integer >= 1, got {batch_size}")
    with _EvalMode(model):
        outputs = [to_numpy(_main_output(model(_batch_input(model, x[start:start + batch_size]))))
                   for start in range(0, len(x), int(batch_size))]
    return np.concatenate(outputs)


def predict_tta(model: Module, x, size=None, padding: int = 0, flip: bool = True,
                batch_size: int = 256) -> np.ndarray:
    """Test-time augmentation: class probabilities (N, K) averaged over the views of each image.

    The views are ``numbanet.data.multi_crop(x, size, padding, flip)``: the centre and four
    corner crops (when the crop is smaller than the padded image) and their mirror images.
    The softmax outputs, not the logits, are averaged.
    """
    views = multi_crop(x, size, padding, flip)
    return sum(softmax(predict(model, view, batch_size)) for view in views) / len(views)
