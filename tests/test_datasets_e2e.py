"""End to end through the CLI: OMNIGLOT (zips, chardata.mat), CIFAR-10 batches, image folders.

Every run is ``maevae train`` + ``maevae eval`` in-process on data the tests write
themselves, with a tiny model (``--set`` overrides), and bad inputs end as exit code 2 with
one line. The CIFAR-format and colour-folder runs shrink the PixelCNN++ (its width and depth
are fixed in code, not in the config) by wrapping the decoder class; the real-size CIFAR
preset runs in the slow-marked test, as does OMNIGLOT from the real zips in ../shared/data.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from maevae.cli import image_shape_for, main
from maevae.config import load_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_BINARY = [
    "model.decoder.channels=8", "model.decoder.mode=paper_literal_6", "model.prior.blocks=1",
    "model.prior.hidden=16", "model.encoder.latent_dim=4", "train.max_steps=3",
    "train.batch_size=20", "train.init_batch=20", "train.eval_batch=64", "data.test_copies=1",
    "eval.nll_samples=4", "eval.nll_chunk=64", "eval.max_images=10", "train.num_threads=1",
]
TINY_COLOUR = [
    "model.encoder.latent_dim=2", "model.prior.blocks=1", "model.prior.hidden=8",
    "model.decoder.nmix=2", "train.max_steps=2", "train.batch_size=8", "train.init_batch=8",
    "train.eval_batch=16", "eval.nll_samples=2", "eval.nll_chunk=16", "eval.max_images=4",
    "train.num_threads=1",
]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``maevae ARGV`` in-process; return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def _ok(capsys, *argv) -> str:
    code, out, err = _cli(capsys, *argv)
    assert code == 0, err
    return out


def _one_line_error(capsys, *argv) -> str:
    code, out, err = _cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maevae: error: "), err
    return lines[0]


def _train_eval(capsys, tmp_path, config, sets, data_root=None, extra=()) -> tuple[str, dict]:
    run = tmp_path / "run"
    root = ["--data-root", data_root] if data_root is not None else []
    out = _ok(capsys, "train", config, "--out", run, *root, *extra, *_sets(sets),
              "--no-progress")
    out += _ok(capsys, "eval", run, *root, "--no-progress")
    return out, json.loads((run / "eval.json").read_text())


@pytest.fixture
def small_colour_decoder(monkeypatch):
    """The PixelCNN++ at 8 channels and 1 gated block per level (same code, less compute)."""
    from maevae.models import build

    monkeypatch.setattr(build, "PixelCNNppDecoder",
                        functools.partial(build.PixelCNNppDecoder, channels=8, num_resnets=1))


# ------------------------------------------------------------------------------ OMNIGLOT


def _png(ink: np.ndarray) -> bytes:
    """A 105x105 one-bit PNG like Lake et al.'s (white background, black ink)."""
    buf = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _omniglot_zips(root: Path, n_alpha=2, n_char=3, n_draw=8) -> Path:
    folder = root / "omniglot-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for top in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(folder / f"{top}.zip", "w") as zf:
            for a in range(n_alpha):
                for c in range(n_char):
                    for d in range(n_draw):
                        ink = np.zeros((105, 105), dtype=bool)
                        r0, c0 = rng.integers(10, 60, 2)
                        ink[r0:r0 + 30, c0:c0 + 8] = True
                        name = f"{top}/Alpha{a}/character{c + 1:02d}/{c:04d}_{d + 1:02d}.png"
                        zf.writestr(name, _png(ink))
    return folder


def test_omniglot_from_zips_train_and_eval(tmp_path, capsys):
    _omniglot_zips(tmp_path / "data")
    out, ev = _train_eval(capsys, tmp_path, "omniglot/mae_eta0.5_gamma0.2",
                          [*TINY_BINARY, "data.n_val=12"], tmp_path / "data")
    # 2 zips x 2 alphabets x 3 characters x 8 drawings = 96; 2 per character to test
    assert "omniglot: 60/12/24 train/val/test images of 1x28x28" in out
    assert "NOT Burda" in out and "wrote" in out
    assert any("NOT Burda" in n for n in ev["data_notes"])
    assert ev["dataset"] == "omniglot" and ev["nll_images"] == 10 and ev["bits_per_dim"] is None
    assert np.isfinite(ev["nll"]) and ev["nll"] > 0
    # the 28x28 set was cached next to the zips (writable here)
    assert list((tmp_path / "data" / "omniglot-py").glob("maevae_omniglot28_*.npz"))
    cfg = json.loads((tmp_path / "run" / "run.json").read_text())
    assert cfg["sizes"] == [60, 12, 24]


def _burda_mat(path: Path, n_train=50, n_test=12, drop=()) -> dict:
    rng = np.random.default_rng(1)
    d = {"data": rng.integers(0, 256, (784, n_train)) / 255.0,
         "target": np.eye(5)[rng.integers(0, 5, n_train)].T,
         "testdata": rng.integers(0, 256, (784, n_test)) / 255.0,
         "testtarget": np.eye(5)[rng.integers(0, 5, n_test)].T}
    for k in drop:
        d.pop(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), d)
    return d


def test_omniglot_chardata_mat_train_and_eval(tmp_path, capsys):
    d = _burda_mat(tmp_path / "data" / "omniglot" / "chardata.mat")
    out, ev = _train_eval(capsys, tmp_path, "omniglot/vlae_fb",
                          [*TINY_BINARY, "data.n_val=10", "data.omniglot_fortran=true"],
                          tmp_path / "data")
    assert "omniglot: 40/10/12 train/val/test" in out and "NOT Burda" not in out
    assert "chardata.mat" in ev["data_notes"][0] and "Fortran" in ev["data_notes"][0]
    # the run's data are the fixture's arrays, IWAE orientation (per-image transpose)
    from maevae.runs.load import load_run_data

    cfg = load_config(str(tmp_path / "run" / "config.yaml"))
    data = load_run_data(cfg, str(tmp_path / "data"))
    expect = np.rint(d["testdata"].T.reshape(-1, 28, 28).transpose(0, 2, 1) * 255)
    np.testing.assert_array_equal(data.test_x[:, 0], expect.astype(np.uint8))


# ------------------------------------------------------------------------------ CIFAR-10


class _Py2Pickler(pickle._Pickler):
    """What Python 2's cPickle (protocol 2) writes, as in the real CIFAR-10 batches: every
    string, the keys and the array's raw bytes included, is a py2 str (SHORT_BINSTRING /
    BINSTRING), not Python 3's unicode or ``_codecs.encode`` call."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":  # numpy 1.x's module path
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def _cifar_batches(root: Path, n_per_batch=8, n_test=8, seed=0) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/ in the original layout: Python 2 protocol-2 pickles of dicts with
    batch_label, labels (list of int), data (uint8 [N, 3072]) and filenames."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {"batch_label": f"{name} of 5 (maevae test)", "labels": labels, "data": data,
                 "filenames": [f"img_{name}_{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            _Py2Pickler(f, protocol=2).dump(batch)
        arrays[name] = data
    meta = {"num_cases_per_batch": n_per_batch, "num_vis": 3072,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"]}
    with open(folder / "batches.meta", "wb") as f:
        _Py2Pickler(f, protocol=2).dump(meta)
    return arrays


def test_cifar_format_train_and_eval(tmp_path, capsys, small_colour_decoder):
    arrays = _cifar_batches(tmp_path / "data")
    out, ev = _train_eval(capsys, tmp_path, "cifar10/mae_eta0.5_gamma1.5",
                          [*TINY_COLOUR, "data.n_val=8"], tmp_path / "data")
    assert "cifar10: 32/8/8 train/val/test images of 3x32x32" in out
    assert ev["bits_per_dim"] is not None and 0 < ev["bits_per_dim"] < 20
    np.testing.assert_allclose(ev["bits_per_dim"], ev["nll"] / (3072 * np.log(2)), rtol=1e-9)
    # the reader gives the pickled arrays back exactly (train + val = the five batches)
    from maevae.runs.load import load_run_data

    data = load_run_data(load_config(str(tmp_path / "run" / "config.yaml")),
                         str(tmp_path / "data"))
    train = np.concatenate([arrays[f"data_batch_{i}"] for i in range(1, 6)])
    got = np.concatenate([data.train_x, data.val_x]).reshape(-1, 3072)
    assert sorted(map(bytes, got)) == sorted(map(bytes, train))
    np.testing.assert_array_equal(data.test_x.reshape(-1, 3072), arrays["test_batch"])


def test_info_on_the_cifar_preset_prints_the_authors_counts(capsys):
    out = _ok(capsys, "info", "cifar10/vlae")
    for line in ("encoder       302,614", "prior       5,358,592", "decoder    42,740,960",
                 "total      48,402,166"):
        assert line in out


# ------------------------------------------------------------------------------ folders


def _write_pngs(folder: Path, n: int, size=(12, 12), mode="L", classes=("a", "b"), seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / classes[i % len(classes)] if classes else folder
        sub.mkdir(parents=True, exist_ok=True)
        shape = (*size, 3) if mode == "RGB" else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            sub / f"img{i:03d}.png")


def test_folder_grey_binarised_train_and_eval(tmp_path, capsys):
    images = tmp_path / "my images"
    _write_pngs(images, 40)
    out, ev = _train_eval(capsys, tmp_path, "mnist/vlae", TINY_BINARY, images,
                          extra=("--dataset", "folder"))
    assert "folder: 32/4/4 train/val/test images of 1x12x12" in out
    assert "2 classes (a, b)" in out
    assert ev["dataset"] == "folder" and ev["nll_images"] == 4
    cfg = load_config(str(tmp_path / "run" / "config.yaml"))
    assert cfg.data.name == "folder" and cfg.data.path == str(images.absolute())
    # the folder is recorded in the run: eval and reconstruct need no --data-root
    out = _ok(capsys, "eval", tmp_path / "run", "--nll-samples", "2", "--no-progress")
    assert "wrote" in out
    assert image_shape_for(cfg) == (1, 12, 12)
    other = load_config("mnist/vlae", ["data.name=folder"])
    assert image_shape_for(other, str(images)) == (1, 12, 12)


def test_folder_colour_8bit_train_and_eval(tmp_path, capsys, small_colour_decoder):
    images = tmp_path / "colour"
    _write_pngs(images, 30, size=(10, 14), mode="RGB", classes=())
    out, ev = _train_eval(capsys, tmp_path, "cifar10/vlae",
                          [*TINY_COLOUR, "data.image_size=[8, 12]"], images,
                          extra=("--dataset", "folder"))
    assert "folder: 24/3/3 train/val/test images of 3x8x12" in out and "unlabelled" in out
    assert ev["bits_per_dim"] is not None and np.isfinite(ev["bits_per_dim"])


# ------------------------------------------------------------------------------ bad input


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    tiny = _sets(TINY_BINARY)
    # a corrupt zip
    root = tmp_path / "zips"
    folder = _omniglot_zips(root, n_alpha=1, n_char=1, n_draw=4)
    data = (folder / "images_evaluation.zip").read_bytes()
    (folder / "images_evaluation.zip").write_bytes(data[: len(data) // 2])
    msg = _one_line_error(capsys, "train", "omniglot/vlae_fb", "--out", tmp_path / "r1",
                          "--data-root", root, *tiny)
    assert "images_evaluation.zip" in msg and "zip" in msg
    assert not (tmp_path / "r1").exists()
    # a .mat file without the test keys
    _burda_mat(tmp_path / "mat" / "omniglot" / "chardata.mat", drop=("testdata", "testtarget"))
    msg = _one_line_error(capsys, "train", "omniglot/vlae_fb", "--out", tmp_path / "r2",
                          "--data-root", tmp_path / "mat", "--dataset", "omniglot_mat", *tiny)
    assert "testdata" in msg and "testtarget" in msg
    # images of mixed sizes without data.image_size
    mixed = tmp_path / "mixed"
    _write_pngs(mixed, 6, size=(12, 12), classes=())
    Image.fromarray(np.zeros((16, 10), np.uint8)).save(mixed / "odd.png")
    msg = _one_line_error(capsys, "train", "mnist/vlae", "--dataset", "folder", "--out",
                          tmp_path / "r3", "--data-root", mixed, *tiny)
    assert "mixed sizes" in msg and "data.image_size" in msg
    # an empty folder
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _one_line_error(capsys, "train", "mnist/vlae", "--dataset", "folder", "--out",
                          tmp_path / "r4", "--data-root", empty, *tiny)
    assert "no images" in msg
    msg = _one_line_error(capsys, "train", "mnist/vlae", "--dataset", "imagenet", "--out",
                          tmp_path / "r5", *tiny)
    assert "data.name" in msg and "folder" in msg
    msg = _one_line_error(capsys, "train", "mnist/vlae", "--dataset", "folder", "--out",
                          tmp_path / "r6", "--set", "data.label=character", *tiny)
    assert "data.label" in msg


# ------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_omniglot_from_the_real_zips(tmp_path, capsys, monkeypatch):
    """Lake et al.'s zips in ../shared/data: built once (into the user cache, since that folder
    is read-only), trained and evaluated; the results say it is not Burda's split."""
    if not (SHARED / "omniglot-py" / "images_background.zip").exists():
        pytest.skip("../shared/data/omniglot-py is not available")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = sorted(p.name for p in (SHARED / "omniglot-py").iterdir())
    out, ev = _train_eval(capsys, tmp_path, "omniglot/mae_eta0.5_gamma0.2",
                          [*TINY_BINARY, "data.n_val=345"], SHARED)
    assert "omniglot: 24000/345/8115 train/val/test images of 1x28x28" in out
    assert any("NOT Burda" in n for n in ev["data_notes"]) and np.isfinite(ev["nll"])
    assert list((tmp_path / "cache" / "maevae" / "omniglot-py").glob("*.npz"))
    assert sorted(p.name for p in (SHARED / "omniglot-py").iterdir()) == before


@pytest.mark.slow
def test_cifar_real_preset_one_step(tmp_path, capsys):
    """The full-size CIFAR-10 model (48,402,166 parameters) for one step on 4 images."""
    _cifar_batches(tmp_path / "data", n_per_batch=2, n_test=2)
    sets = ["train.max_steps=1", "train.batch_size=4", "train.init_batch=4",
            "train.eval_batch=4", "data.n_val=2", "eval.nll_samples=2", "eval.nll_chunk=2",
            "eval.max_images=2", "objective.kl_samples_eval=1", "train.num_threads=1"]
    out, ev = _train_eval(capsys, tmp_path, "cifar10/mae_eta0.5_gamma1.5", sets,
                          tmp_path / "data")
    assert "cifar10: 8/2/2 train/val/test images of 3x32x32" in out
    assert np.isfinite(ev["bits_per_dim"]) and ev["nll_images"] == 2


@pytest.mark.parametrize("sets, needle", [
    (["data.name=omniglot", "data.split=classic"], "allowed: mae, iwae"),
    (["data.name=cifar10", "data.binarize=false", "data.split=iwae"], "allowed: mae"),
    (["data.image_size=[8, 8]"], "data.image_size only applies"),
    (["data.name=folder", "data.label=alphabet"], "data.label only applies"),
    (["data.test_fraction=0.2"], "data.test_fraction only applies"),
    (["data.name=folder", "data.test_fraction=1.5"], "data.test_fraction=1.5 is out of range"),
    (["data.omniglot_fortran=true"], "omniglot_fortran only applies"),
])
def test_dataset_options_that_do_not_apply_are_config_errors(sets, needle):
    from maevae.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config("mnist/vlae", sets)
    assert needle in str(e.value) and "\n" not in str(e.value)
