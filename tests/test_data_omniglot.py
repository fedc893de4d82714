import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from maevae.data import load_dataset
from maevae.data.omniglot import area_matrix, read_chardata_mat
from maevae.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------- chardata.mat

def _burda_mat(path: Path, n_train=12, n_test=4, n_classes=5, drop=()):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (784, n_train)) / 255.0  # exact in uint8 after round(v*255)
    testdata = rng.integers(0, 256, (784, n_test)) / 255.0
    y, ty = rng.integers(0, n_classes, n_train), rng.integers(0, n_classes, n_test)
    target = np.eye(n_classes)[y].T  # classes x N, one-hot
    testtarget = np.eye(n_classes)[ty].T
    d = {"data": data, "target": target, "testdata": testdata, "testtarget": testtarget}
    for k in drop:
        d.pop(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), d)
    return d, y, ty


def test_mat_reader_both_orientations(tmp_path):
    d, y, ty = _burda_mat(tmp_path / "chardata.mat")
    c = read_chardata_mat(tmp_path / "chardata.mat", fortran=False)
    f = read_chardata_mat(tmp_path / "chardata.mat", fortran=True)
    assert c["train_x"].shape == (12, 1, 28, 28) and c["train_x"].dtype == np.uint8
    assert c["test_x"].shape == (4, 1, 28, 28)
    # MAE authors: transpose the matrix, C-order reshape of each column
    for i in range(12):
        expect = np.rint(d["data"][:, i].reshape(28, 28) * 255).astype(np.uint8)
        np.testing.assert_array_equal(c["train_x"][i, 0], expect)
        np.testing.assert_array_equal(f["train_x"][i, 0], expect.T)
    assert not np.array_equal(c["train_x"], f["train_x"])
    # IWAE's literal procedure: reshape to 28x28, flatten in Fortran order, view as 28x28
    iwae = d["testdata"].T.reshape(-1, 28, 28).reshape(-1, 784, order="F").reshape(-1, 28, 28)
    np.testing.assert_array_equal(f["test_x"][:, 0], np.rint(iwae * 255).astype(np.uint8))
    assert c["train_y"].dtype == np.int64
    np.testing.assert_array_equal(c["train_y"], y)
    np.testing.assert_array_equal(f["test_y"], ty)


def test_mat_missing_keys(tmp_path):
    _burda_mat(tmp_path / "chardata.mat", drop=("testdata", "testtarget"))
    with pytest.raises(DataError) as e:
        read_chardata_mat(tmp_path / "chardata.mat")
    msg = str(e.value)
    assert "testdata" in msg and "testtarget" in msg and str(tmp_path / "chardata.mat") in msg
    bad = tmp_path / "garbage.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="garbage.mat"):
        read_chardata_mat(bad)


def test_load_dataset_prefers_mat_and_splits(tmp_path):
    d, y, _ = _burda_mat(tmp_path / "omniglot" / "chardata.mat")
    s = load_dataset("omniglot", tmp_path, n_val=3, download=False)
    assert s.sizes() == (9, 3, 4) and "chardata.mat" in s.notes[0]
    s2 = load_dataset("omniglot_mat", tmp_path, n_val=3, download=False)
    np.testing.assert_array_equal(s.val_x, s2.val_x)
    # IWAE split: RandomState(123) permutation, the LAST n_val are validation
    iw = load_dataset("omniglot_mat", tmp_path, split="iwae", n_val=3, fortran=True)
    perm = np.random.RandomState(123).permutation(12)
    np.testing.assert_array_equal(iw.val_y, y[perm[-3:]])
    np.testing.assert_array_equal(iw.train_y, y[perm[:-3]])
    with pytest.raises(DataError, match="allowed: mae, iwae"):
        load_dataset("omniglot_mat", tmp_path, split="classic")


def test_mat_at_root_and_missing(tmp_path):
    with pytest.raises(DataError, match="chardata.mat"):
        load_dataset("omniglot_mat", tmp_path)
    _burda_mat(tmp_path / "chardata.mat")
    assert load_dataset("omniglot_mat", tmp_path, n_val=2).sizes() == (10, 2, 4)


# ----------------------------------------------------------------------------- zips

def _png(ink_box: int, size=105) -> bytes:
    """White 1-bit image with a black (ink) square of side ink_box in the top-left corner."""
    a = np.ones((size, size), dtype=bool)
    a[:ink_box, :ink_box] = False
    buf = io.BytesIO()
    Image.fromarray(a).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _write_zip(path: Path, top: str, alphabets: dict[str, int], drawings=4, extra=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/", "")
        for alpha, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                for k in range(1, drawings + 1):
                    zf.writestr(f"{top}/{alpha}/character{c:02d}/{c:02d}{k:02d}_{k:02d}.png",
                                _png(15))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)


def _zips(root: Path, extra=None):
    folder = root / "omniglot-py"
    _write_zip(folder / "images_background.zip", "images_background", {"Beta": 2, "Alpha": 2},
               extra=extra)
    _write_zip(folder / "images_evaluation.zip", "images_evaluation", {"Gamma": 2})
    return folder


def test_zip_build_values_split_labels_and_cache(tmp_path):
    folder = _zips(tmp_path)
    s = load_dataset("omniglot", tmp_path, n_val=3, download=False)
    assert "NOT Burda et al.'s chardata.mat split" in s.notes[0]
    assert "built from the zips" in s.notes[1]
    # 6 characters x 4 drawings; round(4 * 0.25) = 1 test drawing per character
    assert s.sizes() == (15, 3, 6) and s.image_shape == (1, 28, 28)
    x = np.concatenate([s.train_x, s.val_x, s.test_x])[:, 0]
    # 15 px of ink at 105 px -> exactly the top-left 4x4 output pixels (105/28 = 3.75)
    expect = np.zeros((28, 28), np.uint8)
    expect[:4, :4] = 255
    assert all(np.array_equal(im, expect) for im in x)  # mostly white PNG -> mostly 0
    # alphabet labels: background alphabets sorted (Alpha=0, Beta=1), then evaluation (Gamma=2)
    assert sorted(np.bincount(np.concatenate([s.train_y, s.val_y, s.test_y])).tolist()) == [8] * 3
    assert np.bincount(s.test_y).tolist() == [2, 2, 2]
    ch = load_dataset("omniglot", tmp_path, n_val=3, label="character")
    assert sorted(ch.test_y.tolist()) == list(range(6))  # one test drawing per character
    cache = folder / "maevae_omniglot28_v1.npz"
    assert cache.is_file()
    mtime = cache.stat().st_mtime_ns
    again = load_dataset("omniglot", tmp_path, n_val=3)
    assert "loaded from cache" in again.notes[1]
    assert cache.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.train_x, s.train_x)
    with np.load(cache, allow_pickle=False) as npz:  # the cache needs no pickle
        assert npz["images"].shape == (24, 1, 28, 28)
    # changing a zip invalidates the cache
    _write_zip(folder / "images_evaluation.zip", "images_evaluation", {"Gamma": 3})
    bigger = load_dataset("omniglot", tmp_path, n_val=3)
    assert "built from the zips" in bigger.notes[1] and bigger.sizes() == (18, 3, 7)


def test_zip_split_seeds(tmp_path):
    _zips(tmp_path)
    a = load_dataset("omniglot", tmp_path, n_val=3, seed=1)
    b = load_dataset("omniglot", tmp_path, n_val=3, seed=2, label="character")
    c = load_dataset("omniglot", tmp_path, n_val=3, seed=1, label="character",
                     test_split_seed=5)
    ref = load_dataset("omniglot", tmp_path, n_val=3, seed=1, label="character")
    # the test set does not depend on the run's seed; the validation set does
    np.testing.assert_array_equal(b.test_y, ref.test_y)
    assert a.sizes() == b.sizes()
    assert not np.array_equal(b.val_y, ref.val_y) or not np.array_equal(b.train_y, ref.train_y)
    assert c.sizes() == ref.sizes()


def test_corrupt_zip_and_png(tmp_path):
    folder = _zips(tmp_path)
    (folder / "images_evaluation.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError) as e:
        load_dataset("omniglot", tmp_path)
    assert str(folder / "images_evaluation.zip") in str(e.value)
    folder2 = _zips(tmp_path / "b", extra={
        "images_background/Alpha/character09/bad_01.png": b"\x89PNG broken"})
    with pytest.raises(DataError, match="character09/bad_01.png") as e:
        load_dataset("omniglot", tmp_path / "b")
    assert str(folder2 / "images_background.zip") in str(e.value)


def test_zip_missing_everything(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("omniglot", tmp_path, download=False)
    assert "chardata.mat" in str(e.value) and "images_background.zip" in str(e.value)


def test_fortran_rejected_for_zips(tmp_path):
    _zips(tmp_path)
    with pytest.raises(DataError, match="fortran"):
        load_dataset("omniglot", tmp_path, fortran=True)


def test_area_matrix_rows():
    a = area_matrix(105, 28)
    assert a.shape == (28, 105)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a.sum(0), 28 / 105, atol=1e-6)  # every input pixel counted once


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "omniglot-py" / "images_evaluation.zip").is_file(),
                    reason="shared OMNIGLOT zips not present")
def test_real_zips(tmp_path):
    before = sorted(os.listdir(SHARED / "omniglot-py"))
    s = load_dataset("omniglot", SHARED, cache_dir=tmp_path)
    assert s.sizes() == (22000, 2345, 8115)
    full = load_dataset("omniglot", SHARED, cache_dir=tmp_path, n_val=0, label="character")
    assert full.sizes() == (24345, 0, 8115) and sum(full.sizes()) == 32460
    assert full.train_y.max() == 1622 and len(np.unique(full.test_y)) == 1623
    assert s.train_y.max() == 49
    mean_ink = full.train_x.mean() / 255
    assert 0.02 < mean_ink < 0.2  # ink is the minority: inverted correctly
    assert sorted(os.listdir(SHARED / "omniglot-py")) == before  # the shared folder is untouched
