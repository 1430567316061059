"""numbanet.data downloads, against a loopback HTTP server serving tiny files in the real formats.

No test contacts a real host: every test points the dataset registry (``DATASETS``) at the
loopback server, with the fixtures' own sizes and SHA-256 digests injected.
"""
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from numbanet.data import DownloadError, data_dir, load_cifar10, load_fashion_mnist, load_mnist, read_idx
from numbanet.data import datasets
from numbanet.data.download import RemoteDataset, RemoteFile, fetch

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file of a uint8 array: 0, 0, type 0x08, ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def cifar_archive(batches: dict, classes: list[str]) -> bytes:
    """A cifar-10-python.tar.gz holding pickled batches and batches.meta, as the real one."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        entries = {name: {b"data": data, b"labels": labels.tolist()} for name, (data, labels) in batches.items()}
        entries["batches.meta"] = {b"label_names": [c.encode() for c in classes]}
        for name, content in entries.items():
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


class Server:
    """A loopback HTTP server in a thread, serving ``root`` and recording every request path."""

    def __init__(self, root: Path, truncate: set | None = None):
        self.root, self.requests, self.truncate = root, [], truncate or set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                if name in server.truncate:  # announce the full length, send half, hang up
                    content = (root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content[:len(content) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def publish(directory: Path, dataset: str, files: dict) -> RemoteDataset:
    """Write ``files`` under directory/dataset/ and return the registry entry with their checksums."""
    (directory / dataset).mkdir(parents=True, exist_ok=True)
    remotes = []
    for name, content in files.items():
        (directory / dataset / name).write_bytes(content)
        remotes.append(RemoteFile(name, len(content), hashlib.sha256(content).hexdigest()))
    return RemoteDataset(dataset, (), tuple(remotes))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Fixture datasets published on a loopback server; the registry points at it; cache in tmp."""
    rng = np.random.default_rng(0)
    served = tmp_path / "served"
    arrays = {}
    for dataset in ("mnist", "fashion-mnist"):
        images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
        labels = {"train": rng.integers(0, 10, 5), "t10k": rng.integers(0, 10, 3)}
        arrays[dataset] = images, labels
        files = {}
        for split in ("train", "t10k"):
            files[f"{split}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images[split]))
            files[f"{split}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels[split]))
        monkeypatch.setitem(datasets.DATASETS, dataset, publish(served, dataset, files))
    cifar = {name: (rng.integers(0, 256, (count, 3072), dtype=np.uint8), rng.integers(0, 10, count))
             for name, count in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]}
    classes = [f"class{i}" for i in range(10)]
    arrays["cifar10"] = cifar, classes
    entry = publish(served, "cifar10", {"cifar-10-python.tar.gz": cifar_archive(cifar, classes)})
    monkeypatch.setitem(datasets.DATASETS, "cifar10", entry)
    server = Server(served)
    for name, remote in list(datasets.DATASETS.items()):
        monkeypatch.setitem(datasets.DATASETS, name,
                            RemoteDataset(name, (f"{server.url}/{name}/",), remote.files))
    monkeypatch.setenv("NUMBANET_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMBANET_MIRROR", raising=False)
    yield server, arrays, tmp_path / "cache"
    server.close()


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


def test_mnist_download_parses_what_was_written_and_then_uses_the_cache(site):
    server, arrays, cache = site
    train, test = load_mnist(progress=False)
    images, labels = arrays["mnist"]
    assert train.x.shape == (5, 1, 28, 28) and test.x.shape == (3, 1, 28, 28)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    assert np.array_equal(train.x[:, 0], (images["train"] / np.float32(255)).astype(np.float32))
    assert np.array_equal(test.y, labels["t10k"]) and train.classes == tuple("0123456789")
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(IDX_NAMES)
    assert len(server.requests) == 4 and not leftovers(cache)
    load_mnist(progress=False)
    assert len(server.requests) == 4  # verified cache, nothing fetched again


def test_fashion_mnist_and_cifar10(site):
    server, arrays, cache = site
    train, test = load_fashion_mnist(progress=False)
    images, labels = arrays["fashion-mnist"]
    assert np.array_equal(train.y, labels["train"]) and train.classes[9] == "Ankle boot"
    assert np.array_equal(test.x[:, 0], (images["t10k"] / np.float32(255)).astype(np.float32))
    train, test = load_cifar10(progress=False)
    batches, classes = arrays["cifar10"]
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
    # each row: 1024 red, then 1024 green, then 1024 blue values in row-major order
    assert np.array_equal(train.x, (expected.reshape(10, 3, 32, 32) / np.float32(255)).astype(np.float32))
    assert train.x[1, 2, 0, 5] == np.float32(expected[1, 2048 + 5] / np.float32(255))
    assert np.array_equal(test.y, batches["test_batch"][1]) and train.classes == tuple(classes)


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_cached_file_is_deleted_and_fetched_again(site, damage):
    server, arrays, cache = site
    load_mnist(progress=False)
    path = cache / "mnist" / IDX_NAMES[0]
    content = path.read_bytes()
    path.write_bytes(content[:100] if damage == "truncate" else content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.warns(UserWarning, match="deleting it and downloading it again"):
        train, _ = load_mnist(progress=False)
    assert path.read_bytes() == content and server.requests[-1].endswith(IDX_NAMES[0])
    assert len(server.requests) == 5
    assert np.array_equal(train.x[:, 0], (arrays["mnist"][0]["train"] / np.float32(255)).astype(np.float32))


def test_corrupted_download_is_rejected_and_never_lands_in_the_cache(site):
    server, _, cache = site
    served = server.root / "mnist" / IDX_NAMES[1]
    content = bytearray(served.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size, one wrong byte
    served.write_bytes(bytes(content))
    with pytest.raises(DownloadError, match=r"(?s)train-labels-idx1-ubyte.gz.*has sha256 [0-9a-f]{64}, expected"):
        load_mnist(progress=False)
    assert not (cache / "mnist" / IDX_NAMES[1]).exists() and not leftovers(cache)


def test_interrupted_transfer_leaves_no_half_file(site):
    server, _, cache = site
    server.truncate.add(IDX_NAMES[2])
    with pytest.raises(DownloadError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(progress=False)
    assert not (cache / "mnist" / IDX_NAMES[2]).exists() and not leftovers(cache)
    assert (cache / "mnist" / IDX_NAMES[0]).exists()  # the files that did arrive are kept
    server.truncate.clear()
    load_mnist(progress=False)


def test_offline_error_names_every_file_and_the_directory(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = datasets.DATASETS["mnist"]
    monkeypatch.setitem(datasets.DATASETS, "mnist", RemoteDataset("mnist", (f"http://127.0.0.1:{port}/",),
                                                                  remote.files))
    with pytest.raises(DownloadError) as error:
        load_mnist(root=tmp_path, progress=False)
    message = str(error.value)
    assert f"put them by hand in {tmp_path / 'mnist'}" in message
    for remote_file in remote.files:
        assert f"{remote_file.name}  ({remote_file.size} bytes, sha256 {remote_file.sha256})" in message
    assert "NUMBANET_DATA" in message and "NUMBANET_MIRROR" in message
    assert message.count("Connection refused") == 1 and message.count("not tried") == 3  # one time-out, not four
    assert list((tmp_path / "mnist").iterdir()) == []


# -- verified local copies (a system package such as Debian's dataset-fashion-mnist) ---------------
def _repackaged(content: bytes) -> bytes:
    """The same content in another gzip file (other time stamp and compression level), as Debian ships it."""
    return gzip.compress(gzip.decompress(content), compresslevel=1, mtime=1591344365)


@pytest.fixture
def local_copy(site, tmp_path, monkeypatch):
    """fashion-mnist with content checksums and a local directory holding repackaged files."""
    server, arrays, cache = site
    local = tmp_path / "usr-share"
    local.mkdir()
    remotes = []
    for remote in datasets.DATASETS["fashion-mnist"].files:
        published = (server.root / "fashion-mnist" / remote.name).read_bytes()
        (local / remote.name).write_bytes(_repackaged(published))
        remotes.append(RemoteFile(remote.name, remote.size, remote.sha256,
                                  hashlib.sha256(gzip.decompress(published)).hexdigest()))
    entry = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist",
                        RemoteDataset(entry.name, entry.urls, tuple(remotes), (str(local),)))
    return server, arrays, cache, local


def test_local_copy_is_read_in_place_after_its_content_checksum_matched(local_copy):
    server, arrays, cache, local = local_copy
    assert (local / IDX_NAMES[0]).read_bytes() != (server.root / "fashion-mnist" / IDX_NAMES[0]).read_bytes()
    before = {p.name: p.read_bytes() for p in local.iterdir()}
    train, test = load_fashion_mnist(progress=False)
    assert server.requests == [] and list((cache / "fashion-mnist").iterdir()) == []
    assert np.array_equal(train.y, arrays["fashion-mnist"][1]["train"])
    assert np.array_equal(test.x[:, 0], (arrays["fashion-mnist"][0]["t10k"] / np.float32(255)).astype(np.float32))
    assert {p.name: p.read_bytes() for p in local.iterdir()} == before  # never changed


def test_cache_comes_before_the_local_copy_and_a_repackaged_cached_file_is_kept(local_copy):
    server, arrays, cache, local = local_copy
    (cache / "fashion-mnist").mkdir(parents=True)
    cached = cache / "fashion-mnist" / IDX_NAMES[1]
    cached.write_bytes((local / IDX_NAMES[1]).read_bytes())  # repackaged, content checksum matches
    (local / IDX_NAMES[1]).write_bytes(b"not used")
    paths = fetch(datasets.DATASETS["fashion-mnist"], progress=False)
    assert paths[IDX_NAMES[1]] == cached and paths[IDX_NAMES[0]] == local / IDX_NAMES[0]
    assert server.requests == []


def test_damaged_local_copy_is_ignored_with_a_warning_and_the_file_downloaded(local_copy):
    server, arrays, cache, local = local_copy
    content = bytearray((local / IDX_NAMES[2]).read_bytes())
    content[len(content) // 2] ^= 0xFF
    (local / IDX_NAMES[2]).write_bytes(bytes(content))
    with pytest.warns(UserWarning, match=r"ignoring .*t10k-images-idx3-ubyte.gz: it has .*; it is not a valid gzip file"):
        train, test = load_fashion_mnist(progress=False)
    assert server.requests == [f"/fashion-mnist/{IDX_NAMES[2]}"]
    assert (cache / "fashion-mnist" / IDX_NAMES[2]).exists()
    assert np.array_equal(test.x[:, 0], (arrays["fashion-mnist"][0]["t10k"] / np.float32(255)).astype(np.float32))


def test_mirror_override_by_argument_and_environment(site, tmp_path, monkeypatch):
    server, arrays, _ = site
    for name, remote in list(datasets.DATASETS.items()):  # the registry's own hosts now fail
        monkeypatch.setitem(datasets.DATASETS, name, RemoteDataset(name, ("http://127.0.0.1:9/",), remote.files))
    train, _ = load_mnist(root=tmp_path / "a", mirror=server.url + "/", progress=False)
    assert np.array_equal(train.y, arrays["mnist"][1]["train"])
    monkeypatch.setenv("NUMBANET_MIRROR", server.url)
    assert len(load_cifar10(root=tmp_path / "b", progress=False).test) == 3
    assert all(path.startswith(("/mnist/", "/cifar10/")) for path in server.requests)


def test_file_url_mirror(site, tmp_path):
    server, arrays, _ = site
    train, _ = load_fashion_mnist(root=tmp_path / "c", mirror=server.root.as_uri(), progress=False)
    assert np.array_equal(train.y, arrays["fashion-mnist"][1]["train"])


def test_cache_directory_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBANET_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env" and data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("NUMBANET_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == tmp_path / ".cache" / "numbanet"


def test_registry_lists_the_canonical_files():
    hosts = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
             "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "cifar10": "https://www.cs.toronto.edu/~kriz/"}
    for name, host in hosts.items():
        entry = datasets.DATASETS[name]
        assert entry.name == name and entry.urls[0] == host
        for remote in entry.files:
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0 and remote.size > 1000
    assert [f.name for f in datasets.DATASETS["mnist"].files] == list(IDX_NAMES)


def test_fetch_progress_bar_goes_to_stderr(site, capsys):
    server, _, _ = site
    fetch(datasets.DATASETS["mnist"], progress=True)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_read_idx_validates_the_header(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"announces shape \(2, 3\) \(18 bytes\) but the file has 17 bytes"):
        read_idx(path)
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path.write_bytes(idx_bytes(array))
    assert np.array_equal(read_idx(path), array)
    path.write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(path), array)
