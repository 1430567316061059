"""Fetching dataset files into the local cache: checksum-verified and atomic.

Where files go::

    <root>/<dataset>/<file>      root = the ``root`` argument, else $NUMBANET_DATA,
                                 else ~/.cache/numbanet

Where they are read from first: a verified copy already in the cache, else a
verified copy in one of the dataset's local directories (Debian's
``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST in
``/usr/share/datasets/fashion-mnist/``), read where it is, never copied or
changed.  Only a file found in neither place is downloaded.

Where downloads come from: the dataset's canonical hosts, tried in order, unless a
mirror is given (the ``mirror`` argument, else $NUMBANET_MIRROR).  A mirror has
the cache's layout, ``<mirror>/<dataset>/<file>``, so serving a copy of a
filled cache directory (``python -m http.server``, or a ``file://`` URL) is a
complete mirror.

Guarantees:

* A file is downloaded into a temporary file in the cache directory, its size
  and SHA-256 checked, then moved into place with ``os.replace`` (atomic on one
  file system): the cache never holds a half-written file under a real name.
* A cached file is checked again on every load; a truncated or corrupted one is
  deleted (with a warning) and fetched again.
* What a file must match: its size and SHA-256 as published, or, for a gzip file
  that was recompressed or had its header rewritten (Debian strips the stored
  file name and time stamp), the SHA-256 of its decompressed content.  Either
  way the bytes a loader parses are the published ones.
* When no host answers, one ``DownloadError`` names every missing file, its size
  and SHA-256, and the directory to put it in by hand.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

DATA_ENV = "NUMBANET_DATA"
MIRROR_ENV = "NUMBANET_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 30


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name, size in bytes and SHA-256 hex digest.

    ``content_sha256``: for a gzip file, the SHA-256 of its decompressed bytes (None: only
    the exact file is accepted).
    """
    name: str
    size: int
    sha256: str
    content_sha256: str | None = None


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset's files and the base URLs (ending in "/") they are fetched from, in order.

    ``name`` is both the cache subdirectory and the dataset's directory on a mirror;
    ``local_dirs``: directories that may hold a verified copy (a system package), read in place.
    """
    name: str
    urls: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    local_dirs: tuple[str, ...] = ()


class DownloadError(OSError):
    """No host delivered a file whose checksum matches; the message says how to place it by hand."""


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The cache root: ``root`` if given, else $NUMBANET_DATA, else ~/.cache/numbanet."""
    if root is None:
        root = os.environ.get(DATA_ENV) or Path.home() / ".cache" / "numbanet"
    return Path(root).expanduser()


def sha256sum(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def gunzipped_sha256sum(path: str | os.PathLike) -> str | None:
    """SHA-256 hex digest of a gzip file's decompressed content; None if it is not a valid gzip file."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error):  # not gzip, truncated, or a bad CRC
        return None
    return digest.hexdigest()


def _base_urls(dataset: RemoteDataset, mirror: str | None) -> tuple[str, ...]:
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror:
        return (f"{mirror.rstrip('/')}/{dataset.name}/",)
    return dataset.urls


def _problem(path: Path, remote: RemoteFile) -> str | None:
    """Why the file at ``path`` is not ``remote`` (wrong size or checksum), or None if it is.

    A file that differs from the published one is still ``remote`` when its decompressed
    content has ``remote.content_sha256``.
    """
    size = path.stat().st_size
    digest = sha256sum(path) if size == remote.size else None
    if digest == remote.sha256:
        return None
    if remote.content_sha256 is not None:
        content = gunzipped_sha256sum(path)
        if content == remote.content_sha256:
            return None
        content_problem = (f"; its decompressed content has sha256 {content}, expected {remote.content_sha256}"
                           if content else "; it is not a valid gzip file")
    else:
        content_problem = ""
    if digest is None:
        return f"has {size} bytes, expected {remote.size} (truncated or corrupted){content_problem}"
    return f"has sha256 {digest}, expected {remote.sha256} (corrupted){content_problem}"


def _local_copy(dataset: RemoteDataset, remote: RemoteFile) -> Path | None:
    """A verified copy of ``remote`` in one of the dataset's local directories, or None."""
    for directory in dataset.local_dirs:
        path = Path(directory) / remote.name
        if path.is_file():
            problem = _problem(path, remote)
            if problem is None:
                return path
            warnings.warn(f"numbanet.data: ignoring {path}: it {problem}", stacklevel=4)
    return None


def _download_one(url: str, remote: RemoteFile, target: Path, progress: bool) -> None:
    """Stream ``url`` into a temporary file beside ``target``, verify it, then rename it into place.

    Raises OSError (network) or ValueError (size or checksum mismatch); the temporary file is
    removed on every failure, including KeyboardInterrupt.
    """
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{remote.name}.", suffix=".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "numbanet"})
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, \
                tqdm(total=remote.size, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.name,
                     disable=not progress, leave=False) as bar:
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        problem = _problem(Path(temporary), remote)
        if problem is not None:
            raise ValueError(f"the downloaded file {problem}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _download(remote: RemoteFile, bases: tuple[str, ...], target: Path, progress: bool,
              unreachable: set[str]) -> list[str]:
    """Try each base URL in turn; return [] on success, else one 'url: reason' line per failure.

    A host that did not answer at all joins ``unreachable`` and is not tried for later files,
    so an offline machine waits for each host's time-out once, not once per file.
    """
    failures = []
    for base in bases:
        url = base + remote.name
        if base in unreachable:
            failures.append(f"{url}: not tried, the host did not answer before")
            continue
        try:
            _download_one(url, remote, target, progress)
            return []
        except (OSError, ValueError, http.client.HTTPException) as error:
            # an HTTPError reads "HTTP Error 404: Not Found"; other URLErrors wrap the socket error
            no_answer = isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError)
            if no_answer and not base.startswith("file:"):  # a local mirror may lack just one file
                unreachable.add(base)
            failures.append(f"{url}: {error.reason if no_answer else error}")
    return failures


def fetch(dataset: RemoteDataset, root: str | os.PathLike | None = None, mirror: str | None = None,
          progress: bool = True) -> dict[str, Path]:
    """Find or fetch every file of ``dataset``, verified; return {file name: path}.

    Each file is taken from the cache, else from a local directory of the dataset (in place),
    else downloaded into the cache; a cached file with the wrong size or SHA-256 is deleted
    (warning) and looked for again.  Raises ``DownloadError`` naming every file that could not
    be fetched and where to put it by hand.
    """
    directory = data_dir(root) / dataset.name
    directory.mkdir(parents=True, exist_ok=True)
    bases = _base_urls(dataset, mirror)
    paths, failed, unreachable = {}, {}, set()
    for remote in dataset.files:
        path = directory / remote.name
        if path.exists():
            problem = _problem(path, remote)
            if problem is None:
                paths[remote.name] = path
                continue
            warnings.warn(f"numbanet.data: cached {path} {problem}; deleting it and downloading it again",
                          stacklevel=3)
            path.unlink()
        local = _local_copy(dataset, remote)
        if local is not None:
            paths[remote.name] = local
            continue
        failures = _download(remote, bases, path, progress, unreachable)
        if failures:
            failed[remote.name] = failures
        else:
            paths[remote.name] = path
    if failed:
        raise DownloadError(_by_hand_message(dataset, directory, failed))
    return paths


def _by_hand_message(dataset: RemoteDataset, directory: Path, failed: dict[str, list[str]]) -> str:
    lines = [f"could not download {len(failed)} file(s) of {dataset.name}:"]
    for name, failures in failed.items():
        lines += [f"  {name}:"] + [f"    {failure}" for failure in failures]
    lines.append(f"If this machine is offline, download them elsewhere and put them by hand in {directory}/ :")
    lines += [f"  {remote.name}  ({remote.size} bytes, sha256 {remote.sha256})"
              for remote in dataset.files if remote.name in failed]
    lines.append(f"(${DATA_ENV} sets another cache directory, ${MIRROR_ENV} another server with the "
                 f"layout <mirror>/{dataset.name}/<file>)")
    return "\n".join(lines)
