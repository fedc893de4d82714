import contextlib
import functools
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from maevae.data import load_dataset
from maevae.data import mnist as mnist_mod
from maevae.data.download import download
from maevae.data.idx import write_idx
from maevae.errors import DataError

STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    with _serve(site) as url:
        yield site, url


def _unused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Small MNIST-format .gz files and the matching md5 table, patched in."""
    rng = np.random.default_rng(7)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        STEMS[1]: rng.integers(0, 10, 12, dtype=np.uint8),
        STEMS[2]: rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        STEMS[3]: rng.integers(0, 10, 5, dtype=np.uint8),
    }
    src = tmp_path / "fixtures"
    src.mkdir()
    md5 = {}
    for stem, a in arrays.items():
        p = write_idx(src / f"{stem}.gz", a)
        md5[stem] = hashlib.md5(gzip.decompress(p.read_bytes())).hexdigest()
    monkeypatch.setattr(mnist_mod, "MNIST_MD5", md5)
    monkeypatch.setattr(mnist_mod, "EXPECTED_COUNTS", {"train": 12, "test": 5})
    return src, arrays


def test_download_from_second_mirror_and_verify(server, fake_mnist, tmp_path, monkeypatch):
    site, url = server
    src, arrays = fake_mnist
    (site / "good").mkdir()
    for f in src.iterdir():
        (site / "good" / f.name).write_bytes(f.read_bytes())
    # first mirror 404s for every file, second serves them
    monkeypatch.setenv("MAEVAE_MNIST_MIRROR", f"{url}/missing/,{url}/good")
    root = tmp_path / "data"
    root.mkdir()
    d = load_dataset("mnist", root, split="iwae", n_val=2)
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{s}.gz" for s in STEMS)
    assert d.sizes() == (10, 2, 5)
    np.testing.assert_array_equal(d.train_x[:, 0], arrays[STEMS[0]][:10])
    np.testing.assert_array_equal(d.test_y, arrays[STEMS[3]])
    # a second load uses the files on disk: the server is not needed any more
    monkeypatch.setenv("MAEVAE_MNIST_MIRROR", f"http://127.0.0.1:{_unused_port()}/")
    assert load_dataset("mnist", root, split="iwae", n_val=2).sizes() == (10, 2, 5)


def test_wrong_bytes_from_mirror_is_checksum_error(server, fake_mnist, tmp_path, monkeypatch):
    site, url = server
    src, _ = fake_mnist
    for f in src.iterdir():
        (site / f.name).write_bytes(f.read_bytes())
    # same structure, different pixels: only the md5 can tell
    write_idx(site / "t10k-images-idx3-ubyte.gz", np.full((5, 28, 28), 9, np.uint8))
    monkeypatch.setenv("MAEVAE_MNIST_MIRROR", url)
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DataError) as e:
        load_dataset("mnist", root)
    msg = str(e.value)
    assert "checksum" in msg and "t10k-images-idx3-ubyte.gz" in msg and "\n" not in msg
    raw = root / "MNIST" / "raw"
    # nothing half-written or unverified is left under the final name
    assert not (raw / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in raw.iterdir() if p.name.endswith(".part")]


def test_offline_is_one_line_naming_files_and_folder(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.setenv("MAEVAE_MNIST_MIRROR", f"http://127.0.0.1:{_unused_port()}/")
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DataError) as e:
        load_dataset("mnist", root)
    msg = str(e.value)
    assert "\n" not in msg and "offline" in msg
    assert str(root / "MNIST" / "raw") in msg
    for stem in STEMS:
        assert f"{stem}.gz" in msg


def test_download_helper_md5_sha256(server, tmp_path):
    site, url = server
    payload = b"hello mirror" * 100
    (site / "f.bin").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "f.bin"
    assert download([f"{url}/f.bin"], dest, md5, sha256=sha) == dest
    assert dest.read_bytes() == payload
    with pytest.raises(DataError, match="checksum"):
        download([f"{url}/f.bin"], tmp_path / "g.bin", "0" * 32)
    assert not (tmp_path / "g.bin").exists()
    with pytest.raises(DataError, match="offline"):
        download([f"{url}/absent.bin"], tmp_path / "h.bin", None)
    with pytest.raises(DataError, match="not an http"):
        download(["file:///etc/passwd"], tmp_path / "i.bin", None)
