"""Checkpoints: nb.save / nb.load round trips (bitwise), mismatch errors and atomic writes."""
import json

import numpy as np
import pytest

import numbanet as nb
from numbanet import checkpoint, nn, optim


def net(seed=0, channels=4, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, rng=rng, dtype=dtype),
                         nn.BatchNorm2d(channels, dtype=dtype), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * 36, 3, rng=rng, dtype=dtype))


def train_steps(model, opt, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        x = rng.random((8, 1, 6, 6)).astype(model.dtype)
        loss_fn(model(x), rng.integers(0, 3, 8))
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()


def assert_same_state(a: dict, b: dict):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                      lambda p: optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-4)],
                         ids=["sgd", "adam"])
def test_round_trip_is_exact(tmp_path, dtype, make_opt):
    model = net(dtype=dtype)
    opt = make_opt(model.parameters())
    train_steps(model, opt)
    assert np.any(model[1].running_mean != 0)  # BN statistics moved
    path = tmp_path / "model.npz"
    nb.save(model, path, opt, epoch=3, accuracy=0.1 + 0.2, args={"lr": 0.1, "tags": ["a", "b"]})

    restored = net(seed=1, dtype=dtype)
    restored_opt = make_opt(restored.parameters())
    metadata = nb.load(restored, path, restored_opt)
    assert metadata == {"epoch": 3, "accuracy": 0.1 + 0.2, "args": {"lr": 0.1, "tags": ["a", "b"]}}
    assert_same_state(model.state_dict(), restored.state_dict())
    original, loaded = opt.state_dict(), restored_opt.state_dict()
    assert original["hyperparameters"] == loaded["hyperparameters"]
    assert type(loaded["hyperparameters"].get("betas", ())) is tuple
    for index in original["state"]:
        for key, value in original["state"][index].items():
            other = loaded["state"][index][key]
            assert (value.tobytes() == other.tobytes()) if isinstance(value, np.ndarray) else value == other
    # training on from the checkpoint is indistinguishable from never having stopped
    train_steps(model, opt, seed=5)
    train_steps(restored, restored_opt, seed=5)
    assert_same_state(model.state_dict(), restored.state_dict())


def test_checkpoint_is_a_plain_npz_without_pickles(tmp_path):
    model = net()
    nb.save(model, tmp_path / "m.npz", note="hi")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert set(archive.files) == {f"model/{k}" for k in model.state_dict()} | {"__numbanet__"}
        header = json.loads(str(archive["__numbanet__"]))
    assert header["model"] == "Sequential" and header["optimizer"] is None
    assert header["metadata"] == {"note": "hi"} and header["numbanet"] == nb.__version__


def test_other_architecture_gives_one_error_listing_every_problem(tmp_path):
    nb.save(net(channels=4), tmp_path / "m.npz")
    other = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 3),
                          nn.Linear(3, 2))
    before = other.state_dict()
    with pytest.raises(ValueError) as error:
        nb.load(other, tmp_path / "m.npz")
    message = str(error.value)
    assert "does not fit this Sequential" in message and "saved from Sequential" in message
    assert "2 missing keys: 3.weight, 3.bias" in message
    assert "5 unexpected keys: 1.weight, 1.bias, 1.running_mean, 1.running_var, 1.num_batches_tracked" in message
    assert "shape mismatches: 0.weight (checkpoint (4, 1, 3, 3), model (8, 1, 3, 3))" in message
    assert "4.weight (checkpoint (3, 144), model (2, 3)), 4.bias (checkpoint (3,), model (2,))" in message
    assert_same_state(before, other.state_dict())  # nothing was changed


def test_optimizer_mismatches(tmp_path):
    model = net()
    nb.save(model, tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="holds no optimizer state"):
        nb.load(model, tmp_path / "plain.npz", optim.SGD(model.parameters(), lr=0.1))
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, sgd, steps=1)
    nb.save(model, tmp_path / "sgd.npz", sgd)
    with pytest.raises(ValueError, match="holds the state of a SGD over 6 parameters, got a Adam over 6"):
        nb.load(model, tmp_path / "sgd.npz", optim.Adam(model.parameters()))


def test_save_is_atomic(tmp_path, monkeypatch):
    model = net()
    path = tmp_path / "m.npz"
    nb.save(model, path, epoch=1)
    good = path.read_bytes()
    with pytest.raises(TypeError, match="metadata when=.* must be JSON-serialisable"):
        nb.save(model, path, when=object())

    def failing_savez(stream, **arrays):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        nb.save(model, path, epoch=2)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="is not a numbanet checkpoint"):
        nb.load(net(), tmp_path / "other.npz")


def test_numpy_metadata_values_are_stored_as_json(tmp_path):
    nb.save(net(), tmp_path / "m.npz", accuracy=np.float32(0.5), counts=np.arange(3))
    assert nb.load(net(), tmp_path / "m.npz") == {"accuracy": 0.5, "counts": [0, 1, 2]}
