from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maevae.data import load_dataset
from maevae.errors import DataError


def _save(path: Path, arr: np.ndarray, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def _grey_images(folder: Path, n=10, size=(6, 5)):
    rng = np.random.default_rng(0)
    arrs = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(n)]
    for i, a in enumerate(arrs):
        _save(folder / f"img_{i:02d}.png", a)
    return arrs


def test_flat_grey_exact(tmp_path):
    arrs = _grey_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "README.txt").write_text("not an image")
    s = load_dataset("folder", tmp_path, path="imgs", test_fraction=0, val_fraction=0)
    assert s.name == "folder" and s.image_shape == (1, 6, 5) and s.sizes() == (10, 0, 0)
    assert s.train_y is None and s.val_y is None
    np.testing.assert_array_equal(s.train_x[:, 0], np.stack(arrs))  # sorted file order
    assert str(tmp_path / "imgs") in s.notes[0]
    d = load_dataset("folder", tmp_path / "imgs", seed=1)  # root is the folder itself
    assert d.sizes() == (8, 1, 1)


def test_colour_and_forced_channels(tmp_path):
    rng = np.random.default_rng(1)
    arrs = [rng.integers(0, 256, (4, 7, 3), dtype=np.uint8) for _ in range(5)]
    for i, a in enumerate(arrs):
        _save(tmp_path / f"c{i}.png", a)
    s = load_dataset("folder", tmp_path, test_fraction=0, val_fraction=0)
    assert s.image_shape == (3, 4, 7)
    np.testing.assert_array_equal(s.train_x, np.stack(arrs).transpose(0, 3, 1, 2))
    g = load_dataset("folder", tmp_path, channels=1, test_fraction=0, val_fraction=0)
    assert g.image_shape == (1, 4, 7)
    expect = np.asarray(Image.fromarray(arrs[0]).convert("L"))
    np.testing.assert_array_equal(g.train_x[0, 0], expect)
    # one colour image among grey ones -> colour
    _grey_images(tmp_path / "mix", n=3, size=(4, 7))
    _save(tmp_path / "mix" / "z.png", arrs[0])
    assert load_dataset("folder", tmp_path / "mix", test_fraction=0,
                        val_fraction=0).image_shape == (3, 4, 7)
    with pytest.raises(DataError, match="channels"):
        load_dataset("folder", tmp_path, channels=2)


def test_class_subfolders(tmp_path):
    for cls, n in (("zebra", 3), ("ant", 2), ("mole", 4)):
        for i in range(n):
            _save(tmp_path / cls / f"{i}.png", np.full((5, 5), 40 * i, np.uint8))
    (tmp_path / "empty_class").mkdir()
    s = load_dataset("folder", tmp_path, test_fraction=0, val_fraction=0)
    # labels = index of the sorted subfolder names: ant 0, mole 1, zebra 2
    assert s.train_y.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert s.train_y.dtype == np.int64
    assert "3 classes (ant, mole, zebra)" in s.notes[0]
    t = load_dataset("folder", tmp_path, n_val=2, test_fraction=0.2)
    assert t.sizes() == (5, 2, 2)


def test_mixed_sizes(tmp_path):
    _save(tmp_path / "a.png", np.zeros((28, 28), np.uint8))
    _save(tmp_path / "b.png", np.full((32, 32), 255, np.uint8))
    _save(tmp_path / "c.jpg", np.full((30, 20), 128, np.uint8), fmt="JPEG")
    with pytest.raises(DataError) as e:
        load_dataset("folder", tmp_path)
    msg = str(e.value)
    assert "mixed sizes" in msg and "a.png is 28x28" in msg and "32x32" in msg
    assert "data.image_size" in msg
    s = load_dataset("folder", tmp_path, image_size=(16, 12), test_fraction=0, val_fraction=0)
    assert s.image_shape == (1, 16, 12) and s.sizes() == (3, 0, 0)
    assert s.train_x[0].max() == 0 and s.train_x[1].min() == 255
    assert abs(int(s.train_x[2].mean()) - 128) <= 2  # the JPEG, resized
    assert load_dataset("folder", tmp_path, image_size=8, test_fraction=0,
                        val_fraction=0).image_shape == (1, 8, 8)


def test_empty_corrupt_and_ambiguous(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_dataset("folder", tmp_path, path="empty")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("folder", tmp_path, path="nope")
    bad = tmp_path / "bad"
    _grey_images(bad, n=3)
    (bad / "img_99.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError) as e:
        load_dataset("folder", tmp_path, path="bad")
    assert str(bad / "img_99.png") in str(e.value)
    amb = tmp_path / "amb"
    _grey_images(amb, n=2)
    _grey_images(amb / "cls", n=2)
    with pytest.raises(DataError, match="both loose images"):
        load_dataset("folder", amb)
    few = tmp_path / "few"
    _grey_images(few, n=2)
    with pytest.raises(DataError, match="leave none for training"):
        load_dataset("folder", few, test_fraction=0.5, val_fraction=0.5)


def _config_keys_named(text: str) -> set[str]:
    import re

    return set(re.findall(r"(?<![\w.])data\.([a-z_]+)", text))


def test_error_messages_name_only_real_config_keys(tmp_path):
    """Every ``data.<key>`` the folder loader's messages tell a user to set is a DataConfig field
    (the folder option val_fraction is a library option only; config users set data.n_val)."""
    import ast
    import dataclasses

    import maevae.data
    import maevae.data.folder
    from maevae.config import DataConfig

    fields = {f.name for f in dataclasses.fields(DataConfig)}
    named = set()
    for mod in (maevae.data.folder, maevae.data):
        tree = ast.parse(Path(mod.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named |= _config_keys_named(node.value)
    assert {"image_size", "test_fraction", "n_val", "path", "binarize"} <= named
    assert named <= fields, named - fields
    few = tmp_path / "few"
    _grey_images(few, n=2)
    for kwargs in ({"test_fraction": 0.5, "val_fraction": 0.5}, {"n_val": 1, "test_fraction": 0.5},
                   {"channels": 2}, {"val_fraction": 2}, {"n_val": -1}):
        with pytest.raises(DataError) as e:
            load_dataset("folder", few, **kwargs)
        assert _config_keys_named(str(e.value)) <= fields, str(e.value)
