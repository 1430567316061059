"""``python -m numbanet``: train and summary as subprocesses, command-line mistakes as one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numbanet as nb
from numbanet import models
from numbanet.__main__ import main
from numbanet.data.datasets import FASHION_MNIST_DEBIAN_DIR


def run_cli(*args, cwd=None, env=None):
    env = dict(os.environ, NUMBANET_DATA=os.devnull + "-unused", **(env or {}))  # digits need no download
    return subprocess.run([sys.executable, "-m", "numbanet", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def test_train_writes_checkpoint_history_and_plot(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "lenet5", "--data", "digits", "--epochs", "2", "--limit", "200",
                     "--model-arg", "activation=relu", "--lr", "0.1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "lenet5 on digits (28 px, 200 training images): test accuracy" in result.stdout
    assert "epoch 2/2" in result.stderr  # progress bars
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2] and len(history["val_accuracy"]) == 2
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    # the checkpoint's metadata rebuilds the architecture
    header = np.load(out / "model.npz")["__numbanet__"]
    metadata = json.loads(str(header))["metadata"]
    model = models.get_model(metadata["model"], **metadata["model_kwargs"])
    assert nb.load(model, out / "model.npz") == metadata
    assert metadata["model_kwargs"] == {"num_classes": 10, "in_channels": 1, "input_size": 28,
                                        "activation": "relu"}
    assert metadata["test_accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert 0 <= metadata["test_accuracy"] <= 1


def test_a_run_stopped_early_keeps_its_finished_epochs(tmp_path, monkeypatch, capsys):
    """Ctrl-C in epoch 2 of 3: exit status 130, and model.npz / history.json hold epoch 1."""
    from numbanet import train as train_module
    real_epoch, calls = train_module._train_epoch, []

    def stop_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(train_module, "_train_epoch", stop_in_epoch_two)
    out = tmp_path / "run"
    status = main(["train", "lenet5", "--data", "digits", "--epochs", "3", "--limit", "100", "--quiet",
                   "--out", str(out)])
    assert status == 130 and "interrupted" in capsys.readouterr().err
    history = json.loads((out / "history.json").read_text())
    metadata = json.loads(str(np.load(out / "model.npz")["__numbanet__"]))["metadata"]
    assert history["epoch"] == [1] and metadata["epochs"] == 1 and metadata["command"]["epochs"] == 3
    assert metadata["test_accuracy"] == history["val_accuracy"][0]
    assert metadata["train_seconds"] == pytest.approx(history["time"][0])
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "history.png", "model.npz"]   # no temporaries


@pytest.mark.skipif(not Path(FASHION_MNIST_DEBIAN_DIR).is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_train_on_the_real_fashion_mnist_offline(tmp_path):
    out = tmp_path / "run"
    env = {"NUMBANET_MIRROR": "http://127.0.0.1:9"}  # no download: the Debian copy is read
    result = run_cli("train", "lenet5", "--data", "fashion-mnist", "--size", "28", "--epochs", "1",
                     "--limit", "256", "--data-root", str(tmp_path / "cache"), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "lenet5 on fashion-mnist (28 px, 256 training images): test accuracy" in result.stdout
    assert "epoch 1/1" in result.stderr and "batch" in result.stderr  # the tqdm bar
    metadata = json.loads(str(np.load(out / "model.npz")["__numbanet__"]))["metadata"]
    assert metadata["data"] == "fashion-mnist" and metadata["model_kwargs"]["input_size"] == 28


def test_summary_prints_the_table():
    result = run_cli("summary", "googlenet", "--input", "3,224,224")
    assert result.returncode == 0, result.stderr
    assert "GoogLeNet summary: input (3, 224, 224)" in result.stdout
    assert "inception3a" in result.stdout and "Total params" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "nosuchnet"], "argument MODEL: invalid choice: 'nosuchnet'"),
    (["summary", "googlenet", "--input", "3,224"], "expected C,H,W as three positive integers"),
])
def test_mistakes_exit_2_with_one_line_as_a_subprocess(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["train", "lenet5", "--data", "imagenet"], "argument --data: invalid choice: 'imagenet'"),
    (["summary", "nosuchnet"], "argument MODEL: invalid choice: 'nosuchnet'"),
    (["summary", "lenet5", "--input", "1,x,28"], "got '1,x,28'"),
    (["summary", "lenet5", "--input", "1,0,28"], "three positive integers"),
    (["summary", "lenet5", "--input", "1,28,28", "--model-arg", "input_size=32"],
     "expected input of shape (*, 576) (last dim = in_features), got shape (1, 400)"),
    (["train", "lenet5", "--size", "8"], "LeNet5: input_size must be an int >= 12"),
    (["train", "lenet5", "--width", "0.5"], "lenet5 takes no argument width"),
    (["train", "lenet5", "--small-input"], "lenet5 has no small-input stem"),
    (["train", "lenet5", "--model-arg", "nonsense"], "expected KEY=VALUE"),
    (["train", "lenet5", "--device", "cuda"], "no CUDA GPU is available"),  # no GPU here
    (["train", "lenet5", "--epochs", "0"], "expected a positive integer, got 0"),
    ([], "the following arguments are required"),
])
def test_mistakes_exit_2_with_one_line(args, message, capsys):
    try:
        status = main(args)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_offline_data_error_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUMBANET_MIRROR", "http://127.0.0.1:9")
    status = main(["train", "lenet5", "--data", "mnist", "--data-root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "put them by hand in" in err and str(tmp_path / "mnist") in err
