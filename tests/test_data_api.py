import socket
from pathlib import Path

import numpy as np
import pytest

from maevae.data import DATASETS, ImageSplits, load_dataset, resolve_data_root
from maevae.errors import DataError, MaevaeError


def test_resolve_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MAEVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root(None) == tmp_path / "xdg" / "maevae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root(None) == tmp_path / "home" / ".cache" / "maevae"
    monkeypatch.setenv("MAEVAE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "cli")) == tmp_path / "cli"
    assert resolve_data_root("~/x") == Path.home() / "x"


def test_unknown_name_lists_allowed():
    with pytest.raises(DataError) as e:
        load_dataset("imagenet")
    assert isinstance(e.value, MaevaeError)
    for name in DATASETS:
        assert name in str(e.value)


def test_missing_root(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        load_dataset("mnist", missing)
    assert str(e.value) == (f"data root {missing} does not exist; pass --data-root or set "
                            "MAEVAE_DATA")
    monkeypatch.setenv("MAEVAE_DATA", str(missing))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10")
    assert not missing.exists()


def test_default_cache_root_made_for_a_download_and_removed_when_it_fails(tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("MAEVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    monkeypatch.setenv("MAEVAE_MNIST_MIRROR", f"http://127.0.0.1:{port}/")
    with pytest.raises(DataError, match="offline") as e:
        load_dataset("mnist")
    assert str(tmp_path / "xdg" / "maevae") in str(e.value)  # it was the download's target
    assert not (tmp_path / "xdg").exists()  # and nothing empty is left behind


def test_unknown_option_and_split(tmp_path):
    with pytest.raises(DataError, match="unknown option.*colour.*allowed: none"):
        load_dataset("digits", colour=True)
    with pytest.raises(DataError, match="allowed: fortran, label"):
        load_dataset("omniglot", tmp_path, bogus=1)
    with pytest.raises(DataError, match="allowed: mae"):
        load_dataset("digits", split="classic")


def test_image_splits_contract():
    x = np.zeros((4, 1, 3, 3), np.uint8)
    s = ImageSplits("t", x, None, x[:1], None, x[:2], None, ["n"])
    assert s.image_shape == (1, 3, 3) and s.sizes() == (4, 1, 2)
    assert s.validate() is s
    with pytest.raises(ValueError):
        ImageSplits("t", x.astype(np.float32), None, x, None, x, None, []).validate()
    with pytest.raises(ValueError):
        ImageSplits("t", x, np.zeros(3, np.int64), x, None, x, None, []).validate()
