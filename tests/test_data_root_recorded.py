"""Runs remember their data: run.json records the absolute data root and the sha256 / size of
each data file read, and ``eval``, ``sample``, ``reconstruct`` and ``train --resume`` use that
root with no ``--data-root`` and no ``$MAEVAE_DATA`` (an explicit ``--data-root`` overrides
it; a changed file gives one warning line naming it)."""

import gzip
import hashlib
import json
import os
import shlex
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

from maevae.cli import main
from maevae.data import mnist as mnist_mod
from maevae.train.trainer import Trainer

N_TRAIN, N_TEST = 64, 32
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SETS = ["--set", "data.n_val=8", "--set", "train.max_epochs=2", "--set", "eval.max_images=4"]


def _idx(array: np.ndarray) -> bytes:
    """IDX bytes: magic (0, 0, uint8 = 0x08, ndim), big-endian int32 dims, the data."""
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return head + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


def _write_fashion(root: Path, seed: int = 0) -> Path:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for stem, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x), mtime=0))
        (raw / f"{stem}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y), mtime=0))
    return raw


def _isolate(monkeypatch, tmp_path: Path) -> None:
    """No $MAEVAE_DATA, an empty HOME / XDG cache, downloads that fail at once, and the IDX
    counts of the tiny files."""
    mpl = os.environ.get("MPLCONFIGDIR") or str(Path.home() / ".cache" / "matplotlib")
    monkeypatch.setenv("MPLCONFIGDIR", mpl)  # matplotlib's font cache: not rebuilt (slow)
    monkeypatch.delenv("MAEVAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MAEVAE_FASHION_MNIST_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(mnist_mod, "EXPECTED_COUNTS", {"train": N_TRAIN, "test": N_TEST})


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The tiny Fashion-MNIST root, in an environment isolated by :func:`_isolate`."""
    _isolate(monkeypatch, tmp_path)
    root = tmp_path / "data"
    _write_fashion(root)
    return root


def _train(root: Path, run: Path, *extra: str) -> None:
    main(["train", "tiny/test", "--dataset", "fashion_mnist", "--data-root", str(root),
          "--out", str(run), "--no-progress", *SETS, *extra])


def _interrupted(monkeypatch, at_step: int, argv: list[str], capsys) -> str:
    """Run ``maevae argv`` as if Ctrl-C arrived during step ``at_step``; the hint printed."""
    real = Trainer._signal_at_boundary

    def interrupt(self):
        return signal.SIGINT if self.counters.step == at_step else real(self)

    monkeypatch.setattr(Trainer, "_signal_at_boundary", interrupt)
    with pytest.raises(SystemExit) as e:
        main(argv)
    monkeypatch.setattr(Trainer, "_signal_at_boundary", real)
    assert e.value.code == 130
    return capsys.readouterr().err.split("continue with `")[1].split("`")[0]


def test_a_run_remembers_its_data_root(env, tmp_path, monkeypatch, capsys):
    root, run = env, tmp_path / "run"
    hint = _interrupted(monkeypatch, 2, ["train", "tiny/test", "--dataset", "fashion_mnist",
                                         "--data-root", str(root), "--out", str(run),
                                         "--no-progress", *SETS], capsys)

    meta = json.loads((run / "run.json").read_text())
    assert meta["data_root"] == str(root.absolute()) and Path(meta["data_root"]).is_absolute()
    raw = root / "FashionMNIST" / "raw"
    assert meta["data_files"] == [
        {"path": f"FashionMNIST/raw/{f}", "size": (raw / f).stat().st_size,
         "sha256": hashlib.sha256((raw / f).read_bytes()).hexdigest()} for f in FILES]

    # the printed hint is the command, word for word: it works without --data-root
    assert hint == f"maevae train --resume {run}"
    main([*shlex.split(hint)[1:], "--no-progress"])
    out = capsys.readouterr()
    assert "resumed at step 2" in out.out and "training stopped after" in out.out
    assert "warning" not in out.err

    main(["eval", str(run), "--nll-samples", "2", "--max-images", "4", "--no-progress"])
    assert json.loads((run / "eval.json").read_text())["nll_images"] == 4
    main(["sample", str(run), "-n", "4"])
    main(["reconstruct", str(run), "-n", "4"])
    assert (run / "samples.png").is_file() and (run / "reconstructions.png").is_file()
    assert "warning" not in capsys.readouterr().err
    assert not list(tmp_path.glob("*/**/maevae"))  # no default data cache was made


def test_a_run_written_before_roots_were_recorded_works_as_before(env, tmp_path, monkeypatch,
                                                                   capsys):
    root, run = env, tmp_path / "run"
    _interrupted(monkeypatch, 2, ["train", "tiny/test", "--dataset", "fashion_mnist",
                                  "--data-root", str(root), "--out", str(run), "--no-progress",
                                  *SETS], capsys)
    meta = json.loads((run / "run.json").read_text())
    del meta["data_root"], meta["data_files"]  # what older versions wrote
    (run / "run.json").write_text(json.dumps(meta))
    hint = _interrupted(monkeypatch, 3, ["train", "--resume", str(run), "--data-root",
                                         str(root), "--no-progress"], capsys)
    assert hint == f"maevae train --resume {run} --data-root {root}"  # it needs the root
    monkeypatch.setenv("MAEVAE_DATA", str(root))  # no root recorded: $MAEVAE_DATA, as before
    main(["train", "--resume", str(run), "--no-progress"])
    assert "training stopped after" in capsys.readouterr().out
    _eval(run)
    assert json.loads((run / "eval.json").read_text())["nll_images"] == 2


@pytest.fixture
def trained(env, tmp_path):
    run = tmp_path / "run"
    _train(env, run, "--set", "train.max_epochs=1")
    return env, run


def _eval(run: Path, *extra: str) -> None:
    main(["eval", str(run), "--nll-samples", "1", "--max-images", "2", "--no-progress", *extra])


def test_a_changed_file_gives_one_warning_naming_it(trained, capsys):
    root, run = trained
    labels = root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    y = np.zeros(N_TEST, dtype=np.uint8)  # other labels, still a valid file
    labels.write_bytes(gzip.compress(_idx(y), mtime=0))
    capsys.readouterr()
    _eval(run)
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1
    assert err[0].startswith("maevae: warning: data file FashionMNIST/raw/"
                             "t10k-labels-idx1-ubyte.gz has changed")
    assert hashlib.sha256(labels.read_bytes()).hexdigest()[:12] in err[0]


def test_data_root_overrides_the_recorded_root(trained, tmp_path, capsys):
    root, run = trained
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    with pytest.raises(SystemExit) as e:  # the recorded root is gone: one line, no download
        _eval(run)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"maevae: error: the data root {root.absolute()} recorded in ")
    assert "--data-root" in err and not root.exists()
    _eval(run, "--data-root", str(moved))  # same files elsewhere: no warning
    assert "warning" not in capsys.readouterr().err
    assert json.loads((run / "eval.json").read_text())["nll_images"] == 2


def test_the_recorded_root_beats_maevae_data(trained, tmp_path, monkeypatch, capsys):
    root, run = trained
    other = tmp_path / "other"
    _write_fashion(other, seed=1)  # different images: would warn if they were read
    monkeypatch.setenv("MAEVAE_DATA", str(other))
    _eval(run)
    assert "warning" not in capsys.readouterr().err
    _eval(run, "--data-root", str(other))  # explicit: overrides, and the change is reported
    err = capsys.readouterr().err
    assert err.count("maevae: warning: data file FashionMNIST/raw/") == 4


# ----------------------------------------------------------------- what each loader records
def test_failed_downloads_leave_no_empty_folders(tmp_path, monkeypatch):
    from maevae.data import load_dataset
    from maevae.errors import DataError

    _isolate(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="could not download"):
        load_dataset("fashion_mnist")  # the default cache is made for it, then removed
    assert not (tmp_path / "cache").exists()
    root = tmp_path / "root"
    (root / "keep").mkdir(parents=True)
    with pytest.raises(DataError, match="could not download"):
        load_dataset("fashion_mnist", root)
    assert [p.name for p in root.iterdir()] == ["keep"]  # FashionMNIST/raw/ removed


def test_folder_records_one_digest_of_its_sorted_files(tmp_path):
    from PIL import Image

    from maevae.data import load_dataset
    from maevae.data.provenance import describe_files
    from maevae.runs.load import run_meta

    folder = tmp_path / "imgs"
    names = ["b/2.png", "a/1.png", "a/0.png", "b/3.png"]
    for i, rel in enumerate(names):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(folder / rel)
    data = load_dataset("folder", tmp_path, path="imgs", channels=1, n_val=1,
                        test_fraction=0.25)
    lines = "".join(f"{rel}\t{hashlib.sha256((folder / rel).read_bytes()).hexdigest()}\n"
                    for rel in sorted(names))
    assert describe_files(data) == [{
        "path": "imgs", "files": 4, "size": sum((folder / r).stat().st_size for r in names),
        "sha256": hashlib.sha256(lines.encode()).hexdigest()}]
    assert run_meta(data)["data_root"] == str(tmp_path)
    absolute = load_dataset("folder", None, path=str(folder), channels=1, n_val=1,
                            test_fraction=0.25)  # config.yaml holds the path: no root
    assert absolute.root is None and "data_root" not in run_meta(absolute)
    assert describe_files(absolute)[0]["path"] == str(folder)


def test_digits_record_no_root_and_no_files():
    from maevae.data import load_dataset
    from maevae.runs.load import run_meta

    meta = run_meta(load_dataset("digits"))
    assert "data_root" not in meta and meta["data_files"] == []


def test_cifar_records_its_six_batches(tmp_path, monkeypatch):
    from maevae.data import cifar, load_dataset
    from maevae.data.provenance import describe_files

    folder = tmp_path / cifar.FOLDER
    folder.mkdir()
    names = [*cifar.TRAIN_BATCHES, cifar.TEST_BATCH]
    for i, n in enumerate(names):
        (folder / n).write_bytes(bytes([i]) * (i + 1))
    x = np.zeros((10, 3, 32, 32), np.uint8)
    y = np.zeros(10, np.int64)
    monkeypatch.setattr(cifar, "load_cifar10_arrays", lambda root, download: (x, y, x, y))
    data = load_dataset("cifar10", tmp_path, n_val=2)
    assert describe_files(data) == [
        {"path": f"{cifar.FOLDER}/{n}", "size": i + 1,
         "sha256": hashlib.sha256(bytes([i]) * (i + 1)).hexdigest()}
        for i, n in enumerate(names)]


def test_omniglot_records_chardata_or_the_zips_not_the_cache(tmp_path, monkeypatch):
    from maevae.data import load_dataset, omniglot
    from maevae.data.provenance import describe_files

    mat = tmp_path / "omniglot" / "chardata.mat"
    mat.parent.mkdir()
    mat.write_bytes(b"mat")
    x, y = np.zeros((10, 1, 28, 28), np.uint8), np.zeros(10, np.int64)
    monkeypatch.setattr(omniglot, "read_chardata_mat", lambda path, fortran: {
        "train_x": x, "train_y": y, "test_x": x, "test_y": y})
    data = load_dataset("omniglot", tmp_path, n_val=2)
    assert describe_files(data) == [{"path": "omniglot/chardata.mat", "size": 3,
                                     "sha256": hashlib.sha256(b"mat").hexdigest()}]
    mat.unlink()
    arrays = {"images": x, "alphabet": y, "character": np.arange(10) % 2, "drawing": y}
    monkeypatch.setattr(omniglot, "load_omniglot_zip_arrays",
                        lambda folder, download, cache_dir: (arrays, "loaded from cache"))
    data = load_dataset("omniglot", tmp_path, n_val=2)
    assert data.files == [tmp_path / "omniglot-py" / n for n in omniglot.ZIP_NAMES]


def test_a_deleted_default_cache_is_not_an_error(trained, tmp_path, monkeypatch, capsys):
    """A run trained from the default cache that was deleted since: the cache is made and
    filled again as for any run (here $MAEVAE_DATA holds the files), not refused."""
    root, run = trained
    meta = json.loads((run / "run.json").read_text())
    meta["data_root"] = str(tmp_path / "cache" / "maevae")  # the (absent) default cache
    (run / "run.json").write_text(json.dumps(meta))
    monkeypatch.setenv("MAEVAE_DATA", str(root))
    _eval(run)
    assert "warning" not in capsys.readouterr().err
