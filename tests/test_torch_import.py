"""Importing PyTorch / torchvision weights (numbanet.models.from_torch) and the ImageNet helpers.

The torchvision architectures are rebuilt in plain PyTorch (tests/torch_reference.py) with
torchvision's module names; their random weights (BN running statistics included) are
exported with ``state_dict()``, loaded into the numbanet model and the logits compared:
relative error max|ours − torch| / max|torch| <= 1e-9 in float64, 1e-4 in float32.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import numbanet as nb
from numbanet import models, nn
from numbanet.data import imagenet
from numbanet.gradcheck import gradcheck

from . import torch_reference as ref
from .oracle import TORCH_DTYPE, assert_close, tensor

TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}


def _rel(ours, theirs) -> float:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours, np.float64)
    assert ours.shape == theirs.shape, f"shape {ours.shape} vs torch {theirs.shape}"
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


# name: (numbanet constructor, torch reference constructor, input side); width 1/4 keeps VGG's
# and AlexNet's 100M-parameter classifiers out of the quick run (full sizes: the slow test)
CASES = {
    "resnet18": (lambda **kw: models.resnet18(**kw), lambda: ref.resnet18(), 64),
    "resnet50-v1.5": (lambda **kw: models.resnet50(variant="v1.5", **kw), lambda: ref.resnet50(), 64),
    # 67 px: 34 -> 17 -> 8 -> 4 -> 2, partial last windows in the ceil-mode pools
    "googlenet": (lambda **kw: models.googlenet(variant="torchvision", transform_input=True, **kw),
                  lambda: ref.googlenet(transform_input=True), 67),
    "vgg16-narrow": (lambda **kw: models.vgg16(width=0.25, **kw), lambda: ref.vgg16(width=0.25), 40),
    "alexnet-narrow": (lambda **kw: models.alexnet(variant="torchvision", width=0.25, **kw),
                       lambda: ref.alexnet(width=0.25), 71),
}


def _check_logits(key: str, side: int, dtype, batch: int = 2) -> None:
    build, build_reference, _ = CASES[key]
    torch_model = ref.randomize(build_reference().double(), seed=7).eval()
    ours = models.from_torch(build(dtype=dtype), torch_model.state_dict()).eval()
    x = np.random.default_rng(3).standard_normal((batch, 3, side, side)).astype(dtype)
    torch_model = torch_model.to(TORCH_DTYPE[np.dtype(dtype)])
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x))
    err = _rel(ours(x), expected)
    assert err <= TOLERANCE[np.dtype(dtype)], f"{key} ({np.dtype(dtype)}): relative error {err:.2e}"


@pytest.mark.parametrize("key", list(CASES))
def test_logits_match_torchvision_layout(key, dtype):
    _check_logits(key, CASES[key][2], dtype)


@pytest.mark.slow
@pytest.mark.parametrize("key, build, build_reference", [
    ("vgg16", lambda **kw: models.vgg16(**kw), lambda: ref.vgg16()),
    ("alexnet", lambda **kw: models.alexnet(variant="torchvision", **kw), lambda: ref.alexnet()),
    ("resnet50", lambda **kw: models.resnet50(variant="v1.5", **kw), lambda: ref.resnet50()),
    ("googlenet", lambda **kw: models.googlenet(variant="torchvision", transform_input=True, **kw),
     lambda: ref.googlenet(transform_input=True)),
])
def test_full_size_logits_at_224(key, build, build_reference, monkeypatch):
    monkeypatch.setitem(CASES, key, (build, build_reference, 224))
    _check_logits(key, 224, np.float32, batch=1)


def test_state_dict_names_and_counts_are_torchvisions():
    """Same keys as the reference (num_batches_tracked included) and torchvision's published sizes."""
    published = {"resnet18": 11_689_512, "resnet50-v1.5": 25_557_032}
    for key, (build, build_reference, _) in CASES.items():
        model = build()
        theirs = build_reference().state_dict()
        ours = models.to_torch_state_dict(model)
        assert set(ours) == set(theirs), key
        assert all(ours[k].shape == tuple(v.shape) for k, v in theirs.items()), key
        if key in published:
            assert model.num_parameters() == published[key]
    # torchvision's GoogLeNet without aux heads and AlexNet, as its model cards count them
    assert models.googlenet(variant="torchvision", aux_logits=False).num_parameters() == 6_624_904
    assert models.alexnet(variant="torchvision").num_parameters() == 61_100_840


def _torchvision():
    """torchvision's own package, or a skip that says why (the project installs torch only; torchvision's
    PyPI wheels are built against the CUDA torch and fail to import beside the CPU one)."""
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed (the test extra has torch only)")
    except RuntimeError as error:    # e.g. "operator torchvision::nms does not exist": a build for another torch
        pytest.skip(f"torchvision does not match the installed torch: {error}")
    return torchvision


def test_torchvision_resnet18_state_dict_loads_exactly():
    """torchvision's own resnet18 (random weights, no download): every name of its state_dict maps to
    numbanet's resnet18, every array is copied unchanged, and the float64 logits agree."""
    torchvision = _torchvision()
    theirs = ref.randomize(torchvision.models.resnet18(weights=None).double(), seed=11).eval()
    state = theirs.state_dict()
    ours = models.from_torch(models.resnet18(dtype=np.float64), state).eval()
    exported = models.to_torch_state_dict(ours)
    assert set(exported) == set(state)
    for name, value in state.items():
        assert np.array_equal(exported[name], value.numpy()), name
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64))
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x))
    assert _rel(ours(x), expected) <= TOLERANCE[np.dtype(np.float64)]


def test_torch_names_per_family():
    names = models.torch_name_map(models.googlenet(variant="torchvision", width=1 / 16))
    assert names["inception3a.0.conv.weight"] == "inception3a.branch1.conv.weight"
    assert names["inception5b.2.1.bn.running_var"] == "inception5b.branch3.1.bn.running_var"
    assert names["inception4e.3.1.bn.bias"] == "inception4e.branch4.1.bn.bias"
    assert names["aux2.conv.conv.weight"] == "aux2.conv.conv.weight"
    names = models.torch_name_map(models.alexnet(variant="torchvision", width=1 / 16))
    assert [names[f"features.conv{i}.weight"] for i in range(1, 6)] == [
        f"features.{i}.weight" for i in (0, 3, 6, 8, 10)]
    assert [names[f"classifier.fc{i}.bias"] for i in (6, 7, 8)] == [f"classifier.{i}.bias" for i in (1, 4, 6)]
    names = models.torch_name_map(models.resnet50(width=1 / 16, variant="v1.5"))
    assert all(k == v for k, v in names.items())
    assert "layer2.0.downsample.1.running_mean" in names


def test_googlenet_train_mode_aux_heads_and_running_statistics():
    """Training mode: (main, aux1, aux2) against torchvision's (logits, aux2, aux1), BN on batch
    statistics; then the updated running statistics and counts, exported, equal torch's."""
    torch_model = ref.randomize(ref.googlenet(width=0.25, dropout=0.0, dropout_aux=0.0).double(), seed=2)
    ours = models.googlenet(variant="torchvision", width=0.25, dropout=0.0, aux_dropout=0.0, dtype=np.float64)
    models.from_torch(ours, torch_model.state_dict())
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64))
    ours.train(), torch_model.train()
    main, aux1, aux2 = ours(x)
    with torch.no_grad():
        t_main, t_aux2, t_aux1 = torch_model(torch.from_numpy(x))
    for name, a, b in (("main", main, t_main), ("aux1", aux1, t_aux1), ("aux2", aux2, t_aux2)):
        assert _rel(a, b) <= 1e-9, name
    exported = models.to_torch_state_dict(ours)
    for key, value in torch_model.state_dict().items():
        if value.is_floating_point():
            assert _rel(exported[key], value) <= 1e-12, key
        else:  # num_batches_tracked
            assert int(exported[key]) == int(value) == 1, key


def test_googlenet_aux_heads_follow_the_state_dict():
    sd = ref.googlenet(width=0.125, aux_logits=False).state_dict()
    model = models.googlenet(variant="torchvision", width=0.125)
    with pytest.raises(ValueError, match=r"missing keys.*aux1\.conv\.conv\.weight.*\n.*build the model with "
                                         r"aux_logits=False"):
        models.from_torch(model, sd)
    models.from_torch(models.googlenet(variant="torchvision", width=0.125, aux_logits=False), sd)


def test_mismatches_are_listed_together():
    """One wrong shape, one missing and one unexpected key: one ValueError naming all three,
    and the model is left untouched."""
    model = models.resnet18(num_classes=10, width=0.25, dtype=np.float64)
    before = model.state_dict()
    sd = ref.resnet18(num_classes=10, width=0.25).state_dict()
    sd["fc.weight"] = torch.zeros(11, 128)
    del sd["layer3.1.bn2.running_var"]
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        models.from_torch(model, sd)
    message = str(info.value)
    assert message.startswith("from_torch(ResNet): the state_dict does not fit the model "
                              "(1 missing, 1 unexpected, 1 wrong shape)")
    assert "missing keys (the model has them, the state_dict does not): layer3.1.bn2.running_var" in message
    assert "unexpected keys (in the state_dict, not in the model): layer5.0.conv1.weight" in message
    assert "fc.weight: the model expects (10, 128), the state_dict has (11, 128)" in message
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_paper_layouts_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"features\.0\.weight: the model expects \(24, 3, 11, 11\), the "
                                         r"state_dict has \(16, 3, 11, 11\)(.|\n)*alexnet\(variant='torchvision'\)"):
        models.from_torch(models.alexnet(width=0.25), ref.alexnet(width=0.25).state_dict())
    with pytest.raises(ValueError, match=r"missing keys \(.*inception3a\.branch1\.conv\.bias(.|\n)*"
                                         r"unexpected keys \(.*conv1\.bn\.running_mean(.|\n)*"
                                         r"googlenet\(variant='torchvision'\)"):
        models.from_torch(models.googlenet(width=0.125), ref.googlenet(width=0.125).state_dict())


def test_resnet50_v1_warns_that_torchvision_is_v15():
    sd = ref.resnet50(width=1 / 16).state_dict()
    with pytest.warns(UserWarning, match=r"variant='v1\.5'"):
        models.from_torch(models.resnet50(width=1 / 16), sd)


def test_round_trip_and_value_types():
    """numbanet -> to_torch_state_dict -> torch (strict) gives the same logits; -> from_torch
    (NumPy arrays) gives the same state; torch float16 values are widened and converted."""
    rng = np.random.default_rng(0)
    ours = models.googlenet(variant="torchvision", width=0.125, dtype=np.float64, rng=rng)
    for name, value in ours.named_buffers():
        if name.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
    exported = models.to_torch_state_dict(ours)
    torch_model = ref.googlenet(width=0.125).double()
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    x = rng.standard_normal((1, 3, 48, 48))
    with torch.no_grad():
        assert _rel(ours.eval()(x), torch_model.eval()(torch.from_numpy(x))) <= 1e-9
    again = models.from_torch(models.googlenet(variant="torchvision", width=0.125, dtype=np.float64), exported)
    assert all(np.array_equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))
    half = models.from_torch(models.googlenet(variant="torchvision", width=0.125),
                             {k: torch.from_numpy(v).half() if v.dtype == np.float64 else torch.from_numpy(v)
                              for k, v in exported.items()})
    assert half.dtype == np.float32
    assert np.allclose(half.fc.weight.data, ours.fc.weight.data, rtol=1e-3, atol=1e-4)


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"from_torch\(Linear\): expected a numbanet Module, got Linear"):
        models.from_torch(torch.nn.Linear(2, 2), {})
    with pytest.raises(TypeError, match=r"from_torch\(LeNet5\): expected a state_dict .* got list"):
        models.from_torch(models.lenet5(), [])
    with pytest.raises(ValueError, match=r"transform_input needs variant='torchvision'"):
        models.googlenet(transform_input=True)
    with pytest.raises(ValueError, match=r"small_input=True needs variant='paper'"):
        models.googlenet(variant="torchvision", small_input=True)
    with pytest.raises(ValueError, match=r"variant must be one of \['paper', 'torchvision'\], got 'tv'"):
        models.alexnet(variant="tv")


# -- the torchvision GoogLeNet's pieces ------------------------------------------------------------

@given(st.integers(1, 3), st.integers(1, 3), st.integers(3, 9), st.integers(3, 9),
       st.sampled_from([(2, 2), (3, 2), (3, 1), (2, 3), (3, 3)]), st.booleans())
def test_ceil_mode_max_pool_matches_torch(n, c, h, w, window, transpose):
    kernel, stride = window
    rng = np.random.default_rng(n * 100 + h * 10 + w)
    x = rng.standard_normal((n, c, w, h) if transpose else (n, c, h, w))
    if transpose:  # a non-contiguous view
        x = x.transpose(0, 1, 3, 2)
    pool = nn.MaxPool2d(kernel, stride, ceil_mode=True)
    y = pool(x)
    xt = tensor(x)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, ceil_mode=True)
    assert y.shape == tuple(yt.shape)
    assert_close(y, yt, np.float64, "forward")
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    assert_close(pool.backward(dy), xt.grad, np.float64, "dx")


def test_ceil_mode_max_pool_gradcheck_and_errors():
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 7))
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)
    assert pool(x).shape == (2, 2, 3, 3)  # floor mode: (2, 3)
    y = pool(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    gradcheck(lambda inp: float(np.sum(pool(inp) * dy)), [x], [pool.backward(dy)])
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) is larger than the padded input \(2, 5\)"):
        pool(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match=r"expected a 4-D input of shape \(N, C, H, W\)"):
        pool(np.zeros((1, 5, 5)))


def test_transform_input(dtype):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(dtype)
    layer = models.TransformInput()
    y = layer(x)
    mean, std = np.array(imagenet.MEAN), np.array(imagenet.STD)
    # normalised input -> pixel -> (pixel − 0.5)/0.5
    pixel = x * std[:, None, None] + mean[:, None, None]
    assert_close(y, (pixel - 0.5) / 0.5, dtype, "forward")
    assert y.dtype == dtype
    dy = np.ones_like(y)
    assert_close(layer.backward(dy), np.broadcast_to((std / 0.5)[:, None, None], x.shape), dtype, "dx")
    with pytest.raises(ValueError, match=r"TransformInput\(\): expected input of shape \(N, 3, H, W\) with 3 at "
                                         r"dim 1, got shape \(2, 1, 4, 5\)"):
        layer(x[:, :1])


# -- ImageNet helpers ------------------------------------------------------------------------------

def test_classes():
    assert len(imagenet.CLASSES) == 1000
    assert imagenet.CLASSES[:3] == ("tench", "goldfish", "great white shark")
    assert imagenet.CLASSES[207] == "golden retriever"
    assert imagenet.CLASSES[999] == "toilet tissue"
    assert imagenet.CLASSES[134] == imagenet.CLASSES[517] == "crane"  # the list's two cranes


def _torch_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    t = torch.from_numpy(image.astype(np.float64)).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(t, (height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


@given(st.integers(3, 80), st.integers(3, 80), st.integers(2, 60), st.integers(2, 60))
def test_resize_matches_torch_antialiased_bilinear(h, w, out_h, out_w):
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = imagenet.resize_bilinear(image, out_h, out_w)
    assert np.abs(ours - _torch_resize(image, out_h, out_w)).max() <= 1e-9


def test_resize_is_pillows_to_one_grey_level():
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for h, w, out_h, out_w in [(300, 400, 256, 341), (517, 389, 340, 256), (120, 90, 256, 192), (64, 64, 31, 47)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pil = np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.BILINEAR)).astype(int)
        ours = np.floor(imagenet.resize_bilinear(image, out_h, out_w) + 0.5)
        assert np.abs(ours - pil).max() <= 1


def test_preprocess_is_torchvisions_pipeline():
    """Against the steps written with torch: resize shorter side to 256 (floor of the long side),
    round, centre crop with Python's round, /255, normalise; portrait and landscape."""
    rng = np.random.default_rng(1)
    for h, w in [(300, 451), (517, 389), (256, 256), (224, 300)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        x = imagenet.preprocess(image)
        assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
        new_h, new_w = (256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256)
        resized = np.clip(np.floor(_torch_resize(image, new_h, new_w) + 0.5), 0, 255)
        top, left = int(round((new_h - 224) / 2)), int(round((new_w - 224) / 2))
        crop = torch.from_numpy(resized[top:top + 224, left:left + 224].astype(np.float32)).permute(2, 0, 1)
        expected = (crop / 255 - torch.tensor(imagenet.MEAN).view(3, 1, 1)) / torch.tensor(imagenet.STD).view(3, 1, 1)
        # in grey levels: equal but where the float sums of a pixel sit on a ½ tie
        levels = np.abs(x[0] - expected.numpy()) * np.array(imagenet.STD)[:, None, None] * 255
        assert levels.max() <= 1 + 1e-3
        assert np.mean(levels > 1e-3) <= 1e-3, np.mean(levels > 1e-3)


def test_preprocess_accepts_pil_images_and_rejects_bad_input():
    Image = pytest.importorskip("PIL.Image")
    image = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert np.array_equal(imagenet.preprocess(Image.fromarray(image)), imagenet.preprocess(image))
    grey = Image.fromarray(image[..., 0])  # mode "L": converted to RGB
    assert imagenet.preprocess(grey).shape == (1, 3, 224, 224)
    with pytest.raises(TypeError, match=r"preprocess: expected a uint8 image .* got dtype float64"):
        imagenet.preprocess(image / 255.0)
    with pytest.raises(ValueError, match=r"preprocess: expected an \(H, W, 3\) RGB image, got shape "
                                         r"\(240, 320, 4\) \(drop an alpha channel"):
        imagenet.preprocess(np.zeros((240, 320, 4), np.uint8))


def test_decode_top():
    logits = np.full(1000, -5.0)
    logits[[207, 1, 999]] = [3.0, 2.0, 1.0]
    top = imagenet.decode_top(logits[None], k=3)
    assert [name for name, _ in top] == ["golden retriever", "goldfish", "toilet tissue"]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert np.allclose([prob for _, prob in top], p[[207, 1, 999]], rtol=1e-12)
    assert len(imagenet.decode_top(logits)) == 5
    with pytest.raises(ValueError, match=r"decode_top: expected the logits of one image, shape \(1000,\) or "
                                         r"\(1, 1000\), got \(2, 1000\)"):
        imagenet.decode_top(np.zeros((2, 1000)))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 1000\], got 0"):
        imagenet.decode_top(logits, k=0)


def test_package_exposes_the_helpers():
    assert nb.data.imagenet is imagenet
