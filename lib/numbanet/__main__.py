"""Command line: ``python -m numbanet train ...`` and ``python -m numbanet summary ...``.

    python -m numbanet train resnet20 --data fashion-mnist --epochs 10 --out runs/resnet20
    python -m numbanet summary googlenet --input 3,224,224

Fashion-MNIST is read from Debian's package when it is installed
(``apt-get install dataset-fashion-mnist``), else downloaded once into the cache.

``train`` builds the model for the data (num_classes and in_channels from the
data set, ``input_size`` for models that take one, ``small_input`` on for images of
at most 64 px), trains it with progress bars, evaluates it on the test set every
epoch and writes into --out, after every epoch (a run stopped early keeps its finished epochs):

    model.npz      the checkpoint (nb.load; its metadata holds the model name and the
                   constructor arguments, so get_model(**...) rebuilds the architecture, and
                   the number of epochs it has finished)
    history.json   per-epoch losses, accuracies, learning rates and times
    history.png    the loss and accuracy curves

Mistakes in the command (unknown model or data set, bad shapes, a model that does
not fit the images) end with a one-line error and exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import sys
from pathlib import Path

from . import data
from . import models, optim
from .checkpoint import save
from .data import DataLoader, DownloadError, RandomCrop, RandomHorizontalFlip
from .loss import CrossEntropyLoss
from .random import manual_seed
from .summary import summary
from .train import check_device, fit, predict

NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion-mnist": 28, "cifar10": 32}
LOADERS = {"mnist": data.load_mnist, "fashion-mnist": data.load_fashion_mnist,
           "cifar10": data.load_cifar10}
OPTIMIZERS = {"sgd": (optim.SGD, 0.05), "adam": (optim.Adam, 1e-3), "adamw": (optim.AdamW, 1e-3)}
SMALL_INPUT_MAX = 64


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``numbanet train: error: ...``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _input_shape(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected C,H,W as three positive integers such as 3,224,224, "
                                         f"got {text!r}")
    return tuple(int(p) for p in parts)


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as activation=relu, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare word such as relu is a string


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=float, help="channel-width multiplier (ImageNet-scale models)")
    parser.add_argument("--small-input", action=argparse.BooleanOptionalAction, default=None,
                        help=f"small-image stem (default: on for images of at most {SMALL_INPUT_MAX} px, "
                             f"for the models that have one)")
    parser.add_argument("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="another constructor argument, e.g. activation=relu or aux_logits=False")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="numbanet", description="numbanet: train and inspect the model zoo.")
    commands = parser.add_subparsers(dest="command", metavar="{train,summary}")
    commands.required = True
    names = list(models.MODELS)

    train = commands.add_parser("train", help="train a model on a data set",
                                description="Train a model; writes model.npz, history.json and history.png.")
    train.add_argument("model", choices=names, metavar="MODEL", help=", ".join(names))
    train.add_argument("--data", default="digits", choices=list(NATIVE_SIZE), help="%(choices)s (default digits)")
    train.add_argument("--epochs", type=_positive_int, default=10, help="(default 10)")
    train.add_argument("--batch-size", type=_positive_int, default=64, help="(default 64)")
    train.add_argument("--optimizer", choices=list(OPTIMIZERS), default="sgd",
                       help="sgd (momentum 0.9), adam or adamw (default sgd)")
    train.add_argument("--lr", type=float, help="learning rate (default 0.05 for sgd, 1e-3 for adam/adamw)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="(default 5e-4)")
    train.add_argument("--scheduler", choices=["cosine", "step", "none"], default="cosine",
                       help="cosine annealing to 0, or ÷10 at 50%% and 75%% of the epochs (default cosine)")
    train.add_argument("--size", type=_positive_int,
                       help="resize the images to SIZE px (default: the model's input_size if it has one, "
                            "else the data's own size)")
    train.add_argument("--augment", action="store_true",
                       help="random crops with size/8 padding (and horizontal flips for cifar10)")
    train.add_argument("--limit", type=_positive_int, help="use only the first N training and N test images")
    train.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed (default 0)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (a GPU via numba.cuda)")
    train.add_argument("--data-root", help="dataset cache directory (default $NUMBANET_DATA or ~/.cache/numbanet)")
    train.add_argument("--out", type=Path, help="output directory (default runs/MODEL-DATA)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_model_options(train)

    info = commands.add_parser("summary", help="print a model's layer table",
                               description="Per layer: output shape, parameters, multiply-adds, memory.")
    info.add_argument("model", choices=names, metavar="MODEL", help=", ".join(names))
    info.add_argument("--input", type=_input_shape, default=(3, 224, 224), metavar="C,H,W",
                      help="one sample's shape (default 3,224,224)")
    info.add_argument("--num-classes", type=_positive_int, default=1000)
    info.add_argument("--training", action="store_true", help="run in training mode (auxiliary heads)")
    _add_model_options(info)
    return parser


def model_kwargs(name: str, args, num_classes: int, in_channels: int, size: int) -> dict:
    """Constructor arguments of ``models.MODELS[name]`` from the command line; ValueError if one does not apply."""
    accepted = inspect.signature(models.MODELS[name]).parameters
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if "input_size" in accepted:
        kwargs["input_size"] = size
    if "small_input" in accepted:
        kwargs["small_input"] = size <= SMALL_INPUT_MAX if args.small_input is None else args.small_input
    elif args.small_input:
        raise ValueError(f"{name} has no small-input stem (--small-input)")
    if args.width is not None:
        kwargs["width"] = args.width
    kwargs.update(args.model_arg)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name} takes no argument {', '.join(unknown)} (it takes {', '.join(accepted)})")
    return kwargs


def _default_size(name: str, data: str) -> int:
    accepted = inspect.signature(models.MODELS[name]).parameters
    return accepted["input_size"].default if "input_size" in accepted else NATIVE_SIZE[data]


def load_data(args, size: int):
    """(train, test) ArrayDatasets at ``size`` px, limited to --limit images each."""
    if args.data == "digits":
        train, test = data.load_digits(size=size)
    else:
        train, test = LOADERS[args.data](root=args.data_root, progress=not args.quiet)
        if size != NATIVE_SIZE[args.data]:
            train, test = (data.ArrayDataset(data.resize(split.x, size), split.y, split.classes)
                           for split in (train, test))
    if args.limit:
        train, test = train.head(args.limit), test.head(args.limit)
    return train, test


def _augmentation(args, size: int):
    if not args.augment:
        return None
    crop = RandomCrop(size, padding=max(1, size // 8))
    return data.Compose([crop, RandomHorizontalFlip()]) if args.data == "cifar10" else crop


def _scheduler(args, optimizer):
    if args.scheduler == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=args.epochs)
    if args.scheduler == "step":
        return optim.MultiStepLR(optimizer, milestones=[args.epochs // 2, args.epochs * 3 // 4])
    return None


def _optimizer(args, parameters):
    kind, default_lr = OPTIMIZERS[args.optimizer]
    lr = default_lr if args.lr is None else args.lr
    extra = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    return kind(parameters, lr=lr, weight_decay=args.weight_decay, **extra)


def _prepare_training(args):
    """Everything that can fail because of the command line, checked before training starts."""
    check_device("--device", args.device)
    size = args.size or _default_size(args.model, args.data)
    train, test = load_data(args, size)
    manual_seed(args.seed)
    kwargs = model_kwargs(args.model, args, len(train.classes), train.x.shape[1], size)
    model = models.get_model(args.model, **kwargs)
    predict(model, train.x[:1])  # the model must accept these images: fail now, with the layer's message
    optimizer = _optimizer(args, model.parameters())
    return size, train, test, kwargs, model, optimizer


def run_train(args, size, train, test, kwargs, model, optimizer) -> None:
    out = args.out or Path("runs") / f"{args.model}-{args.data}"
    out.mkdir(parents=True, exist_ok=True)
    loss_fn = models.GoogLeNetLoss() if isinstance(model, models.GoogLeNet) else CrossEntropyLoss()
    # a last batch of one image would break BatchNorm's batch statistics: drop the incomplete batch
    train_loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=len(train) >= args.batch_size,
                              seed=args.seed, transform=_augmentation(args, size))
    test_loader = DataLoader(test, 256)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}

    def save_run(history) -> None:
        # after every epoch, so that a run stopped early leaves its last finished epoch (save is atomic)
        save(model, out / "model.npz", optimizer, model=args.model, model_kwargs=kwargs, data=args.data,
             size=size, epochs=len(history), test_loss=history.val_loss[-1],
             test_accuracy=history.val_accuracy[-1], train_seconds=sum(history.time), command=settings)
        history.save(out / "history.json")
        history.plot().savefig(out / "history.png", dpi=120)

    history = fit(model, loss_fn, optimizer, train_loader, test_loader, epochs=args.epochs,
                  scheduler=_scheduler(args, optimizer), device=args.device, quiet=args.quiet,
                  on_epoch_end=save_run)
    print(f"{args.model} on {args.data} ({size} px, {len(train)} training images): test accuracy "
          f"{history.val_accuracy[-1]:.4f}, loss {history.val_loss[-1]:.4f} after {args.epochs} epoch(s) in "
          f"{sum(history.time):.1f} s; wrote {out}/model.npz, history.json, history.png")


def summary_table(args):
    channels, height, width = args.input
    kwargs = model_kwargs(args.model, args, args.num_classes, channels, min(height, width))
    model = models.get_model(args.model, **kwargs)
    return summary(model, args.input, training=args.training, batch_size=2 if args.training else 1)


def _fail(command: str, message: str, status: int) -> int:
    print(f"numbanet {command}: error: {message}", file=sys.stderr)
    return status


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # mistakes in the command surface here, before any training: one line, status 2
        try:
            prepared = _prepare_training(args) if args.command == "train" else summary_table(args)
        except (ValueError, TypeError, RuntimeError) as error:
            return _fail(args.command, str(error).splitlines()[0], 2)
        if args.command == "train":
            run_train(args, *prepared)
        else:
            print(prepared)
    except DownloadError as error:
        return _fail(args.command, str(error), 1)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
