"""End to end: a conv-BN-ReLU-pool-linear network learns scikit-learn's 8x8 digits in float32."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from numbanet import nn, optim

BATCH = 64
EPOCHS = 12


def _digits():
    """(train_x, train_y, test_x, test_y): images (N, 1, 8, 8) float32 in [0, 1], labels int64."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], digits.target[order].astype(np.int64)
    return images[:1500], labels[:1500], images[1500:], labels[1500:]


def _network(rng):
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, rng=rng),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10, rng=rng),
    )


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_digits_training_reduces_loss_and_generalises(method):
    train_x, train_y, test_x, test_y = _digits()
    rng = np.random.default_rng(1)
    model = _network(rng)
    if method == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01)
    scheduler = optim.StepLR(opt, step_size=8, gamma=0.3)
    crit = nn.CrossEntropyLoss()
    losses = []
    for _ in range(EPOCHS):
        order = rng.permutation(len(train_x))
        for start in range(0, len(order) - BATCH + 1, BATCH):
            batch = order[start:start + BATCH]
            opt.zero_grad()
            logits = model(train_x[batch])
            assert logits.dtype == np.float32
            losses.append(crit(logits, train_y[batch]))
            model.backward(crit.backward())
            opt.step()
        scheduler.step()
    initial, final = np.mean(losses[:5]), np.mean(losses[-20:])
    assert np.all(np.isfinite(losses))
    assert final < 0.3 * initial, f"loss fell from {initial:.3f} to {final:.3f} only"
    model.eval()
    accuracy = np.mean(model(test_x).argmax(axis=1) == test_y)
    assert accuracy > 0.9, f"test accuracy {accuracy:.3f}"
