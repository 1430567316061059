"""numbanet.train: fit, History, evaluate, predict, predict_tta and the multi-output hook."""
import json

import numpy as np
import pytest

from numbanet import nn, optim
from numbanet.data import DataLoader, load_digits
from numbanet.module import Module
from numbanet.train import History, evaluate, fit, predict, predict_tta, softmax


@pytest.fixture(scope="module")
def digits():
    train, test = load_digits()
    return train.head(400), test.head(200)


def small_net(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10, rng=rng, dtype=dtype))


def run(digits, epochs=3, seed=0, quiet=True, scheduler=True):
    train, test = digits
    model = small_net(seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5) if scheduler else None
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(train, 32, shuffle=True, seed=seed),
                  DataLoader(test, 64), epochs=epochs, scheduler=sched, quiet=quiet)
    return model, history


def test_fit_learns_and_records_every_epoch(digits, capsys):
    model, history = run(digits)
    assert len(history) == 3 and history.epoch == [1, 2, 3]
    assert history.lr == [0.1, 0.1, 0.05]
    assert history.train_loss[2] < history.train_loss[0] and history.val_accuracy[2] > 0.7
    assert all(0 <= a <= 1 for a in history.train_accuracy + history.val_accuracy)
    assert all(t > 0 for t in history.time)
    assert model.training  # fit leaves the model in train mode
    assert capsys.readouterr().err == ""  # quiet: no progress bars
    assert "3 epochs" in repr(history)


def test_fit_is_reproducible(digits):
    model_a, history_a = run(digits, epochs=2, seed=4)
    model_b, history_b = run(digits, epochs=2, seed=4)
    assert history_a.train_loss == history_b.train_loss and history_a.val_loss == history_b.val_loss
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert np.array_equal(a, b)


def test_fit_calls_on_epoch_end_after_every_epoch_with_the_history_so_far(digits):
    train, test = digits
    model = small_net()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    seen = []

    def record(history):   # a snapshot: the epochs so far, the weights and the lr the scheduler has set
        seen.append((list(history.epoch), model.state_dict()["0.weight"].copy(), opt.lr))

    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(train, 32, shuffle=True), DataLoader(test, 64),
                  epochs=3, scheduler=sched, quiet=True, on_epoch_end=record)
    assert [epochs for epochs, _, _ in seen] == [[1], [1, 2], [1, 2, 3]] and history.epoch == [1, 2, 3]
    assert not np.array_equal(seen[0][1], seen[1][1])                  # called between epochs, not at the end
    assert np.array_equal(seen[-1][1], model.state_dict()["0.weight"])
    assert [lr for _, _, lr in seen] == [0.05, 0.025, 0.0125]           # after the scheduler's step


def test_fit_shows_progress_bars(digits, capsys):
    run(digits, epochs=1, quiet=False)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "val_acc=" in err


def test_history_json_round_trip_and_plot(digits, tmp_path):
    _, history = run(digits, epochs=2, scheduler=False)
    history.save(tmp_path / "history.json")
    assert History.load(tmp_path / "history.json") == history
    assert json.loads((tmp_path / "history.json").read_text())["lr"] == [0.1, 0.1]
    figure = history.plot()
    assert len(figure.axes) == 2 and [a.get_ylabel() for a in figure.axes] == ["loss", "accuracy"]
    assert len(figure.axes[0].lines) == 2  # train and validation
    figure.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_val = History()
    no_val.append(epoch=1, train_loss=1.0, train_accuracy=0.5, val_loss=None, val_accuracy=None, lr=0.1, time=1.0)
    assert len(no_val.plot().axes[0].lines) == 1


def test_evaluate_and_predict_match_the_forward_pass_and_restore_the_mode(digits):
    model, _ = run(digits, epochs=1)
    _, test = digits
    model.eval()
    logits = model(test.x)
    model.train()
    loss, accuracy = evaluate(model, DataLoader(test, 64))
    assert model.training
    assert accuracy == np.mean(np.argmax(logits, axis=1) == test.y)
    assert loss == pytest.approx(nn.CrossEntropyLoss()(logits, test.y), rel=1e-6)
    model.eval()
    predicted = predict(model, test.x, batch_size=7)
    assert not model.training
    assert predicted.shape == (200, 10) and np.allclose(predicted, logits, rtol=1e-5, atol=1e-6)


def test_predict_tta_averages_softmax_over_views(digits):
    model, _ = run(digits, epochs=1)
    x = digits[1].x[:20]
    single = predict_tta(model, x, flip=False)
    assert np.allclose(single, softmax(predict(model, x)))
    flipped = predict_tta(model, x)
    expected = (softmax(predict(model, x)) + softmax(predict(model, x[..., ::-1]))) / 2
    assert np.allclose(flipped, expected) and np.allclose(flipped.sum(axis=1), 1)
    ten = predict_tta(model, x, padding=1)
    assert ten.shape == (20, 10) and np.allclose(ten.sum(axis=1), 1)
    assert np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow


class TwoHeads(Module):
    """Returns (main, aux) logits in train mode and main alone in eval mode, like GoogLeNet."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(64, 16, rng=rng), nn.ReLU())
        self.main = nn.Linear(16, 10, rng=rng)
        self.aux = nn.Linear(16, 10, rng=rng)
        self._cache = None

    def forward(self, x):
        h = self.trunk(x)
        self._cache = self.training
        return (self.main(h), self.aux(h)) if self.training else self.main(h)

    def backward(self, dout):
        dmain, daux = dout
        return self.trunk.backward(self.main.backward(dmain) + self.aux.backward(daux))


class PairLoss(Module):
    def __init__(self):
        super().__init__()
        self.main, self.aux = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
        self._cache = None

    def forward(self, outputs, target):
        if not isinstance(outputs, tuple):
            return self.main(outputs, target)
        return self.main(outputs[0], target) + 0.5 * self.aux(outputs[1], target)

    def backward(self, dout=1.0):
        return self.main.backward(dout), self.aux.backward(0.5 * dout)


def test_fit_hands_tuple_outputs_to_the_loss_and_measures_the_main_head(digits):
    train, test = digits
    model = TwoHeads()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = fit(model, PairLoss(), opt, DataLoader(train, 32, shuffle=True, seed=0), DataLoader(test, 64),
                  epochs=2, quiet=True)
    assert history.val_accuracy[-1] > 0.6
    assert np.abs(model.aux.weight.grad).sum() > 0  # the aux head was trained too
    # With a learning rate of 0 the weights stay put, so the training accuracy that fit
    # reports must be exactly the main head's accuracy (not the aux head's).
    frozen = fit(model, PairLoss(), optim.SGD(model.parameters(), lr=0.0), DataLoader(train, 32),
                 epochs=1, quiet=True)
    main_accuracy = np.mean(np.argmax(model(train.x)[0], axis=1) == train.y)
    aux_accuracy = np.mean(np.argmax(model(train.x)[1], axis=1) == train.y)
    assert main_accuracy != aux_accuracy
    assert frozen.train_accuracy[-1] == pytest.approx(main_accuracy, abs=1e-12)
    with pytest.raises(TypeError, match=r"returned 2 outputs in train mode .*models.GoogLeNetLoss"):
        fit(model, nn.CrossEntropyLoss(), opt, DataLoader(train, 32), epochs=1, quiet=True)


def test_fit_googlenet_with_auxiliary_heads(digits):
    from numbanet.models import GoogLeNetLoss, googlenet

    train, test = digits
    model = googlenet(num_classes=10, in_channels=1, width=1 / 16, small_input=True, rng=np.random.default_rng(0))
    history = fit(model, GoogLeNetLoss(), optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                  DataLoader(train.head(64), 32), DataLoader(test.head(64), 32), epochs=1, quiet=True)
    assert np.isfinite(history.train_loss[0]) and np.isfinite(history.val_loss[0])
    assert np.abs(model.aux1.fc2.weight.grad).sum() > 0


def test_float64_model_takes_float32_batches(digits):
    train, _ = digits
    model = small_net(dtype=np.float64)
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(train, 100),
                  epochs=1, quiet=True)
    assert np.isfinite(history.train_loss[0]) and model.dtype == np.float64


def test_fit_errors(digits):
    train, _ = digits
    model = small_net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(train, 100)
    with pytest.raises(RuntimeError, match=r"fit: device\('cuda'\): no CUDA GPU is available.*Colab"):
        fit(model, nn.CrossEntropyLoss(), opt, loader, device="cuda")  # this machine has no GPU
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        fit(model, nn.CrossEntropyLoss(), opt, loader, device="tpu")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=0)
    broken_x = train.x.copy()
    broken_x[250] = np.nan
    broken = DataLoader((broken_x, train.y), 100)
    with pytest.raises(FloatingPointError, match="the loss became nan at batch 3; try a smaller learning rate"):
        fit(model, nn.CrossEntropyLoss(), opt, broken, quiet=True)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        predict(model, train.x, batch_size=0)
