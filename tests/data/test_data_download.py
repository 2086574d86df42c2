"""The download path against a local HTTP server on 127.0.0.1: good, truncated, corrupted."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from data_writers import SHARED_DATA, needs_real, write_cifar, write_idx_dataset

from marginkit.data import DataError, load_dataset
from marginkit.data.download import REGISTRY, RemoteFile, default_cache_dir

IDX_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


class Server:
    """Serves ``routes[path] = (body, declared_length)`` and counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.requests: dict[str, int] = {}
        routes, requests = self.routes, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests[self.path] = requests.get(self.path, 0) + 1
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, length = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)  # fewer bytes than declared when truncated
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes, declared: int | None = None) -> str:
        self.routes[path] = (body, len(body) if declared is None else declared)
        return self.url + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


@pytest.fixture
def mnist_remote(tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Serve a miniature MNIST and point the registry at it; returns name -> bytes."""
    write_idx_dataset(tmp_path / "source", compress=True)
    files = {name: (tmp_path / "source" / name).read_bytes() for name in IDX_NAMES}
    remotes = tuple(
        RemoteFile(name, (server.add(f"/good/{name}", body),), hashlib.md5(body).hexdigest())
        for name, body in files.items()
    )
    monkeypatch.setitem(REGISTRY, "mnist", remotes)
    return files


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_download_verify_and_reuse(
    tmp_path: Path, server: Server, mnist_remote: dict, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    bundle = load_dataset("mnist", cache_dir=cache)
    reference = load_dataset("mnist", data_dir=tmp_path / "source")
    assert torch.equal(bundle.train.tensors()[0], reference.train.tensors()[0])
    for name, body in mnist_remote.items():
        assert (cache / "mnist" / name).read_bytes() == body
    assert _leftovers(cache / "mnist") == []
    assert "downloading train-images-idx3-ubyte.gz" in capsys.readouterr().err
    load_dataset("mnist", cache_dir=cache, progress=False)  # second time: from the cache
    assert all(server.requests[f"/good/{name}"] == 1 for name in IDX_NAMES)
    assert capsys.readouterr().err == ""


def test_cache_dir_from_environment(
    tmp_path: Path, mnist_remote: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARGINKIT_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    load_dataset("mnist", progress=False)
    assert (tmp_path / "env-cache" / "mnist" / IDX_NAMES[0]).is_file()


@pytest.mark.parametrize("fault", ["truncated", "corrupted"])
def test_bad_download_is_deleted_and_reported(
    tmp_path: Path, server: Server, mnist_remote: dict, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    body = mnist_remote[IDX_NAMES[2]]
    if fault == "truncated":  # the server promises every byte but stops half way
        url = server.add("/bad/t10k", body[: len(body) // 2], declared=len(body))
    else:  # every byte arrives, but some are wrong
        damaged = bytearray(body)
        damaged[len(body) // 2] ^= 0xFF
        url = server.add("/bad/t10k", bytes(damaged))
    checksum = hashlib.md5(body).hexdigest()
    remotes = list(REGISTRY["mnist"])
    remotes[2] = RemoteFile(IDX_NAMES[2], (url,), checksum)
    monkeypatch.setitem(REGISTRY, "mnist", tuple(remotes))
    cache = tmp_path / "cache"
    with pytest.raises(
        DataError, match=rf"t10k-images-idx3-ubyte.gz: download failed, expected md5 {checksum}"
    ):
        load_dataset("mnist", cache_dir=cache, progress=False)
    assert not (cache / "mnist" / IDX_NAMES[2]).exists()
    assert _leftovers(cache / "mnist") == []


def test_next_mirror_after_a_failure(
    tmp_path: Path, server: Server, mnist_remote: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = mnist_remote[IDX_NAMES[1]]
    broken = server.add("/mirror-one/labels", b"x" * len(body))
    missing = server.url + "/mirror-two/labels"  # 404
    good = server.url + f"/good/{IDX_NAMES[1]}"
    remotes = list(REGISTRY["mnist"])
    remotes[1] = RemoteFile(IDX_NAMES[1], (broken, missing, good), hashlib.md5(body).hexdigest())
    monkeypatch.setitem(REGISTRY, "mnist", tuple(remotes))
    bundle = load_dataset("mnist", cache_dir=tmp_path / "cache", progress=False)
    assert len(bundle.train) == 60
    assert server.requests["/mirror-one/labels"] == 1 and server.requests["/mirror-two/labels"] == 1


def test_corrupted_cache_file_is_fetched_again(
    tmp_path: Path, server: Server, mnist_remote: dict, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    load_dataset("mnist", cache_dir=cache, progress=False)
    path = cache / "mnist" / IDX_NAMES[0]
    path.write_bytes(path.read_bytes()[:-10])  # damaged on disk after the download
    checksum = hashlib.md5(mnist_remote[IDX_NAMES[0]]).hexdigest()
    with pytest.raises(
        DataError, match=rf"train-images-idx3-ubyte.gz: corrupted, .* expected {checksum}"
    ):
        load_dataset("mnist", cache_dir=cache, download=False)
    bundle = load_dataset("mnist", cache_dir=cache)
    assert "checksum mismatch, downloading it again" in capsys.readouterr().err
    assert path.read_bytes() == mnist_remote[IDX_NAMES[0]]
    assert server.requests[f"/good/{IDX_NAMES[0]}"] == 2 and len(bundle.train) == 60


def test_missing_without_download_lists_files(tmp_path: Path, mnist_remote: dict) -> None:
    with pytest.raises(
        DataError,
        match=r"missing train-images-idx3-ubyte.gz, .* and download=False; expected the files",
    ):
        load_dataset("mnist", cache_dir=tmp_path / "cache", download=False)


def test_folder_and_digits_need_no_download(tmp_path: Path) -> None:
    assert "folder" not in REGISTRY and "digits" not in REGISTRY
    assert set(REGISTRY) == {
        "mnist",
        "fashion-mnist",
        "kmnist",
        "cifar10",
        "cifar100",
        "svhn",
        "lfw",
    }
    for remotes in REGISTRY.values():  # every published file has a checksum and a mirror
        assert all(len(r.checksum) == 32 and r.urls for r in remotes)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archive_download_and_extraction(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_x, train_y, _, _ = write_cifar(tmp_path / "source")
    folder = tmp_path / "source" / "cifar-10-batches-py"
    body = _tar_gz({f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in folder.iterdir()})
    url = server.add("/cifar-10-python.tar.gz", body)
    remote = RemoteFile(
        "cifar-10-python.tar.gz",
        (url,),
        hashlib.md5(body).hexdigest(),
        extract="cifar-10-batches-py",
    )
    monkeypatch.setitem(REGISTRY, "cifar10", (remote,))
    cache = tmp_path / "cache"
    bundle = load_dataset("cifar10", cache_dir=cache, progress=False)
    assert bundle.train_labels.tolist() == train_y.tolist()
    assert bundle.train.data.numpy().tolist() == train_x.tolist()
    # an interrupted extraction (marker absent) is redone from the verified archive
    (cache / "cifar10" / ".cifar-10-python.tar.gz.extracted").unlink()
    (cache / "cifar10" / "cifar-10-batches-py" / "test_batch").unlink()
    again = load_dataset("cifar10", cache_dir=cache, progress=False)
    assert len(again.test) == len(bundle.test) and server.requests["/cifar-10-python.tar.gz"] == 1
    assert (
        sorted(p.name for p in (cache / "cifar10").iterdir() if p.name.startswith(".extract")) == []
    )


def test_archive_escaping_its_folder_is_refused(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _tar_gz({"../escape.txt": b"outside", "cifar-10-batches-py/x": b"x"})
    url = server.add("/evil.tar.gz", body)
    remote = RemoteFile(
        "evil.tar.gz", (url,), hashlib.md5(body).hexdigest(), extract="cifar-10-batches-py"
    )
    monkeypatch.setitem(REGISTRY, "cifar10", (remote,))
    with pytest.raises(DataError, match=r"evil.tar.gz: archive member '../escape.txt' would leave"):
        load_dataset("cifar10", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "escape.txt").exists()


@needs_real("lfw")
def test_registry_checksums_match_the_shared_lfw_protocol_files() -> None:
    checked = 0
    for remote in REGISTRY["lfw"]:
        path = SHARED_DATA / "lfw" / remote.name
        if remote.name.endswith(".txt") and path.is_file():
            assert hashlib.md5(path.read_bytes()).hexdigest() == remote.checksum, remote.name
            checked += 1
    assert checked == 6
