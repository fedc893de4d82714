"""Reliability II, data files: hostile IDX / gzip / PNG files, folder symlink loops, wrong
caches and empty splits end in one DataError line naming the file (exit 2 from the CLI), and
the memory bombs fail fast (< 5 s) and small (< 1 GiB peak RSS, measured in a subprocess).

Every hostile file is built here by hand in ``tmp_path``; nothing is mocked except a permission
error, which root (these tests often run as root) cannot provoke with chmod.
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maevae.cli import main as cli_main
from maevae.data import idx as idx_mod
from maevae.data import load_dataset
from maevae.data import omniglot as omni_mod
from maevae.data.idx import read_file_content, read_idx, write_idx
from maevae.errors import DataError

SRC = Path(__file__).resolve().parents[1] / "src"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GIB = 1 << 30
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def _cli_error(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert exc.value.code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("maevae: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("maevae: error: "), err
    assert "Traceback" not in out + err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _bounded(code: str) -> dict:
    """Run ``code`` (which sets ``msg``) in a fresh interpreter; return its message, the seconds
    the call took, and the child's peak RSS from getrusage(RUSAGE_CHILDREN) of a parent that
    ran nothing else."""
    worker = ("import json, time\nfrom maevae.errors import DataError\nt0 = time.perf_counter()\n"
              f"try:\n    {code}\n    msg = None\nexcept DataError as e:\n    msg = str(e)\n"
              "print(json.dumps({'msg': msg, 's': time.perf_counter() - t0}))\n")
    parent = ("import resource, subprocess, sys, json\n"
              "r = subprocess.run([sys.executable, '-c', sys.argv[1]], capture_output=True, "
              "text=True)\n"
              "d = json.loads(r.stdout) if r.returncode == 0 else {'err': r.stderr}\n"
              "d['rss'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
              "print(json.dumps(d))\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([sys.executable, "-c", parent, worker], capture_output=True, text=True,
                       env=env, timeout=120)
    d = json.loads(r.stdout)
    assert "err" not in d, d.get("err")
    return d


def _assert_bomb_refused(d: dict, *needles: str) -> None:
    assert d["msg"] is not None, "the bomb was accepted"
    for n in needles:
        assert n in d["msg"], (n, d["msg"])
    assert d["s"] < 5.0, d
    assert d["rss"] < GIB, d


# ------------------------------------------------------------------------------ IDX headers

def _idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def test_idx_dims_overflowing_int64_are_refused(tmp_path):
    # 65536**4 = 2**64: the old int64 product wrapped to 0 and matched an empty body
    p = tmp_path / "wrap-idx4-ubyte"
    p.write_bytes(_idx_header(0x08, (65536,) * 4))
    with pytest.raises(DataError) as e:
        read_idx(p)
    _one_line(e, str(p), "(65536, 65536, 65536, 65536)", "above the limit")
    q = tmp_path / "max-idx3-ubyte"
    q.write_bytes(_idx_header(0x0E, (2**32 - 1,) * 3) + b"\0" * 64)
    with pytest.raises(DataError) as e:
        read_idx(q)
    _one_line(e, str(q), "above the limit")


def test_idx_declared_size_checked_against_the_file_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "short-idx3-ubyte"
    p.write_bytes(_idx_header(0x08, (1000, 28, 28)) + b"\1" * 100)
    with pytest.raises(DataError) as e:
        read_idx(p)
    _one_line(e, str(p), "truncated", "(1000, 28, 28)", "holds 100")


@pytest.mark.parametrize("head,what", [(b"\0\0\x0a\x01", "dtype code 0a"),
                                       (b"\x01\x02\x08\x01", "magic 0102"),
                                       (b"PK\x03\x04", "a zip")])
def test_idx_wrong_magic_or_dtype_code(tmp_path, head, what):
    p = tmp_path / "bad-idx1-ubyte"
    p.write_bytes(head + b"\0\0\0\x02ab")
    with pytest.raises(DataError) as e:
        read_idx(p)
    _one_line(e, str(p), "is not an IDX file (bad magic")


def test_idx_truncated_plain_and_gzip(tmp_path):
    write_idx(tmp_path / "a", np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-7])
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "cut")
    _one_line(e, "cut is truncated")
    (tmp_path / "hdr").write_bytes(raw[:9])
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "hdr")
    _one_line(e, "truncated inside its IDX header")
    gz = gzip.compress(raw, mtime=0)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "cut.gz")
    _one_line(e, "cut.gz")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "empty")
    _one_line(e, "empty", "only 0 bytes")


def test_idx_gzip_members_and_padding_read_like_gzip(tmp_path):
    a = np.arange(2 * 3 * 5, dtype=">i4").reshape(2, 3, 5)
    raw = _idx_header(0x0C, a.shape) + a.tobytes()
    half = len(raw) // 2
    p = tmp_path / "multi.gz"
    p.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]) + b"\0" * 16)
    assert np.array_equal(read_idx(p), a)
    (tmp_path / "junk.gz").write_bytes(gzip.compress(raw) + b"junk")
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "junk.gz")
    _one_line(e, "junk.gz", "trailing garbage")


def test_unreadable_file_is_one_line(tmp_path, monkeypatch):
    p = tmp_path / "locked-idx1-ubyte"
    write_idx(p, np.zeros(3, dtype=np.uint8))
    if os.geteuid() != 0:
        p.chmod(0)
    else:  # root reads any file: simulate the permission error open() would raise
        real = builtins.open

        def deny(file, *a, **k):
            if Path(str(file)) == p:
                raise PermissionError(13, "Permission denied", str(p))
            return real(file, *a, **k)
        monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(DataError) as e:
        read_idx(p)
    _one_line(e, str(p), "Permission denied", "permissions")


# ------------------------------------------------------------------------------ gzip bombs

def _gzip_bomb(path: Path, header: bytes, gib: int = 4, member_mib: int = 16) -> Path:
    """A valid multi-member gzip of ``header`` + ``gib`` GiB of zeros, a few MB on disk."""
    zeros = b"\0" * (member_mib << 20)
    rest = gzip.compress(zeros, compresslevel=9, mtime=0)
    n = (gib << 10) // member_mib
    with open(path, "wb") as f:
        f.write(gzip.compress(header + zeros, compresslevel=9, mtime=0))
        for _ in range(n - 1):
            f.write(rest)
    assert path.stat().st_size < 8 << 20
    return path


def _gzip_bomb_one_stream(path: Path, header: bytes, gib: int = 4) -> Path:
    """One gzip member (one compressobj) of ``header`` + ``gib`` GiB of zeros. After a full
    flush the compressor state is reset, so every further 1 MiB block compresses to the same
    bytes, written once per block. The trailer's CRC covers only what the compressor saw, so
    a reader that inflated to the end would report a CRC error: it must refuse before."""
    zeros = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(c.compress(header + zeros) + c.flush(zlib.Z_FULL_FLUSH))
        block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
        for _ in range((gib << 10) - 1):
            f.write(block)
        f.write(c.flush())
    assert path.stat().st_size < 8 << 20
    return path


@pytest.mark.parametrize("make", [_gzip_bomb, _gzip_bomb_one_stream], ids=["members", "stream"])
def test_gzip_bomb_behind_an_honest_looking_header(tmp_path, make):
    """Header says 60000x28x28 (47 MB), the stream inflates to 4 GiB: refused at 47 MB."""
    p = make(tmp_path / "train-images-idx3-ubyte.gz", _idx_header(0x08, (60000, 28, 28)))
    d = _bounded(f"from maevae.data.idx import read_idx; read_idx({str(p)!r})")
    _assert_bomb_refused(d, str(p), "longer than its header says", "(60000, 28, 28)")


def test_gzip_bomb_whose_header_claims_gigabytes(tmp_path):
    """Header claims 4 GiB (under uint32 dims): refused by MAX_IDX_BYTES before inflating."""
    p = _gzip_bomb(tmp_path / "big-idx3-ubyte.gz", _idx_header(0x08, (65536, 256, 256)))
    d = _bounded(f"from maevae.data.idx import read_idx; read_idx({str(p)!r})")
    _assert_bomb_refused(d, str(p), "(65536, 256, 256)", "above the limit of 0.5 GiB")


def test_gzip_bomb_through_the_generic_reader(tmp_path):
    p = _gzip_bomb(tmp_path / "blob.gz", b"")
    d = _bounded(f"from maevae.data.idx import read_file_content; "
                 f"read_file_content({str(p)!r})")
    _assert_bomb_refused(d, str(p), "inflates to more than 0.0625 GiB")
    with pytest.raises(DataError) as e:
        read_file_content(p, max_bytes=1 << 20)
    _one_line(e, "inflates to more than")


def _mnist_root(tmp_path: Path, shared: Path) -> Path:
    raw = tmp_path / "mnist-root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in MNIST_STEMS:
        (raw / f"{stem}.gz").symlink_to(shared / "MNIST" / "raw" / f"{stem}.gz")
    return tmp_path / "mnist-root"


def test_gzip_bomb_through_the_cli(tmp_path, shared_data, capsys):
    root = _mnist_root(tmp_path, shared_data)
    bomb = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    bomb.unlink()
    _gzip_bomb(bomb, _idx_header(0x08, (60000, 28, 28)))
    t0 = time.perf_counter()
    _cli_error(capsys, ["train", "mnist/vlae", "--out", tmp_path / "run", "--no-progress",
                        "--data-root", root], str(bomb), "longer than its header says")
    assert time.perf_counter() - t0 < 5.0
    assert not (tmp_path / "run" / "run.json").exists()


# ------------------------------------------------------------------------------ images

def _png_bytes(w: int = 8, h: int = 8, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, format="PNG")
    return buf.getvalue()


def _claim_size(png: bytes, w: int, h: int) -> bytes:
    """Patch the IHDR width/height (and its CRC) of a PNG: the header now claims w x h."""
    assert png[12:16] == b"IHDR"
    ihdr = bytearray(png[12:29])  # type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", w, h)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return png[:12] + bytes(ihdr) + crc + png[33:]


def _image_folder(d: Path, n: int = 12, size: int = 8) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return d


def _tiny_train(out: Path, data_root: Path, *sets: str) -> list:
    argv = ["train", "tiny/test", "--out", out, "--no-progress", "--dataset", "folder",
            "--data-root", data_root, "--set", "train.num_threads=1", "--set",
            "train.batch_size=4"]
    for s in sets:
        argv += ["--set", s]
    return argv


@pytest.mark.parametrize("w,h", [(13000, 13000), (70000, 70000)])
def test_png_claiming_huge_dimensions(tmp_path, w, h):
    d = _image_folder(tmp_path / "imgs", n=4)
    big = d / "zz_big.png"
    big.write_bytes(_claim_size(_png_bytes(), w, h))
    if w * h < Image.MAX_IMAGE_PIXELS * 2:
        with pytest.warns(Image.DecompressionBombWarning), Image.open(big) as im:
            assert im.size == (w, h)  # the patched header is valid: PIL believes it
    code = (f"from maevae.data import load_dataset; load_dataset('folder', {str(d)!r}, "
            "test_fraction=0, val_fraction=0)")
    d_ = _bounded(code)
    _assert_bomb_refused(d_, str(big))
    assert "above the limit" in d_["msg"] or "too large" in d_["msg"], d_["msg"]


def test_png_bomb_through_the_cli(tmp_path, capsys):
    d = _image_folder(tmp_path / "imgs")
    big = d / "big.png"
    big.write_bytes(_claim_size(_png_bytes(), 13000, 13000))
    t0 = time.perf_counter()
    _cli_error(capsys, _tiny_train(tmp_path / "run", d), str(big), "13000x13000",
               "above the limit")
    assert time.perf_counter() - t0 < 5.0


def test_png_bomb_inside_an_omniglot_zip(tmp_path):
    folder = tmp_path / "omniglot-py"
    folder.mkdir()
    for name in omni_mod.ZIP_NAMES:
        top = name[:-4]
        with zipfile.ZipFile(folder / name, "w") as zf:
            zf.writestr(f"{top}/A/character01/0101_01.png", _png_bytes(105, 105, "1"))
            zf.writestr(f"{top}/A/character01/0102_01.png",
                        _claim_size(_png_bytes(105, 105, "1"), 13000, 13000))
    with pytest.raises(DataError) as e:
        load_dataset("omniglot", tmp_path, download=False, cache_dir=tmp_path / "c")
    _one_line(e, "0102_01.png", "13000x13000", "above the limit")


@pytest.mark.parametrize("name,content,needle", [
    ("empty.png", b"", "is empty (0 bytes)"),
    ("text.png", b"this is not an image at all\n", "content is not PNG or JPEG"),
    ("gif.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "content is not PNG or JPEG"),
    ("cut.png", None, "cannot read image"),
    ("photo.jpg", b"\xff\xd8\xff\xe0 truncated", "cannot read image"),
])
def test_bad_image_files_are_one_line(tmp_path, capsys, name, content, needle):
    d = _image_folder(tmp_path / "imgs", n=10)
    if content is None:  # a PNG cut in the middle of its pixel data
        good = (d / "000.png").read_bytes()
        content = good[: len(good) // 2]
    (d / name).write_bytes(content)
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, str(d / name), needle)
    if name == "text.png":
        _cli_error(capsys, _tiny_train(tmp_path / "run", d), str(d / name), needle)


def _make_unreadable(p: Path, monkeypatch) -> None:
    """chmod 0, or (root ignores modes) an ``open`` that refuses ``p`` with EACCES."""
    if os.geteuid() != 0:
        p.chmod(0)
        return
    real = builtins.open

    def deny(file, *a, **k):
        if isinstance(file, str | os.PathLike) and Path(file) == p:
            raise PermissionError(13, "Permission denied", str(p))
        return real(file, *a, **k)
    monkeypatch.setattr(builtins, "open", deny)


def test_unreadable_image_is_one_line(tmp_path, monkeypatch):
    d = _image_folder(tmp_path / "imgs", n=10)
    p = d / "005.png"
    _make_unreadable(p, monkeypatch)
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, str(p), "Permission denied")


def test_unreadable_omniglot_zip_is_one_line(tmp_path, monkeypatch, capsys):
    folder = _small_omniglot(tmp_path)
    p = folder / omni_mod.ZIP_NAMES[1]
    _make_unreadable(p, monkeypatch)
    with pytest.raises(DataError) as e:
        load_dataset("omniglot", tmp_path, download=False)
    _one_line(e, str(p), "Permission denied", "permissions")


def test_unlistable_folder_is_one_line(tmp_path, monkeypatch):
    d = tmp_path / "imgs"
    _image_folder(d / "a", n=6)
    _image_folder(d / "b", n=6)
    real = os.scandir

    def deny(path="."):
        if Path(path) == d / "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", deny)
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, str(d / "b"), "cannot list", "Permission denied")


# ------------------------------------------------------------------------------ symlinks

def _classes(d: Path) -> Path:
    _image_folder(d / "cat", n=6)
    _image_folder(d / "dog", n=6)
    return d


def test_symlink_to_the_dataset_folder_is_refused(tmp_path, capsys):
    d = _classes(tmp_path / "imgs")
    (d / "loop").symlink_to(d, target_is_directory=True)
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, str(d / "loop"), "symlink loop", "remove the link")
    _cli_error(capsys, _tiny_train(tmp_path / "run", d), str(d / "loop"), "symlink loop")
    assert not (tmp_path / "run" / "run.json").exists()


def test_symlink_to_an_ancestor_inside_a_class_is_refused(tmp_path):
    d = _classes(tmp_path / "imgs")
    (d / "cat" / "up").symlink_to("..", target_is_directory=True)
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, str(d / "cat" / "up"), "symlink loop")
    (d / "cat" / "up").unlink()
    (d / "cat" / "far").symlink_to(tmp_path, target_is_directory=True)  # above the dataset
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, str(d / "cat" / "far"), "symlink loop")


def test_second_path_to_a_folder_is_refused(tmp_path):
    d = _classes(tmp_path / "imgs")
    (d / "kitty").symlink_to(d / "cat", target_is_directory=True)
    with pytest.raises(DataError) as e:
        load_dataset("folder", d)
    _one_line(e, "second path to", str(d / "cat"), "count twice")


def test_symlinked_class_folder_outside_the_tree_is_followed_once(tmp_path):
    d = _classes(tmp_path / "imgs")
    _image_folder(tmp_path / "elsewhere" / "birds", n=6)
    (d / "bird").symlink_to(tmp_path / "elsewhere" / "birds", target_is_directory=True)
    (d / "dangling.png").symlink_to(tmp_path / "nothing-here")  # a broken link is ignored
    s = load_dataset("folder", d, test_fraction=0, val_fraction=0)
    assert len(s.train_x) == 18
    assert "3 classes (bird, cat, dog)" in s.notes[0]


# ------------------------------------------------------------------------------ caches

def _small_omniglot(root: Path) -> Path:
    folder = root / "omniglot-py"
    folder.mkdir(parents=True)
    for name, alphas in zip(omni_mod.ZIP_NAMES, (("Alpha", "Beta"), ("Gamma",))):
        top = name[:-4]
        with zipfile.ZipFile(folder / name, "w") as zf:
            for a in alphas:
                for c in (1, 2):
                    for k in range(1, 5):
                        img = np.ones((105, 105), dtype=bool)
                        img[: 5 * k, : 3 * c] = False
                        buf = io.BytesIO()
                        Image.fromarray(img).convert("1").save(buf, format="PNG")
                        zf.writestr(f"{top}/{a}/character{c:02d}/{c:02d}{k:02d}.png",
                                    buf.getvalue())
    return folder


def _rewrite_cache(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as npz:
        d = {k: npz[k] for k in npz.files}
    d.update(changes)
    with open(path, "wb") as f:
        np.savez_compressed(f, **d)


@pytest.mark.parametrize("change,why", [
    (lambda d: {"images": d["images"].astype(np.float64)}, "images are float64"),
    (lambda d: {"images": d["images"][:, :, :14, :14]}, "expected uint8 [N, 1, 28, 28]"),
    (lambda d: {"alphabet": d["alphabet"] + 7}, "alphabet labels lie outside"),
    (lambda d: {"character": d["character"].astype(np.int32)}, "character is int32"),
    (lambda d: {"drawing": d["drawing"][:-1]}, "expected 24 file names"),
])
def test_omniglot_cache_with_right_fingerprint_but_wrong_contents_is_rebuilt(
        tmp_path, change, why):
    _small_omniglot(tmp_path)
    first = load_dataset("omniglot", tmp_path, download=False, n_val=2)
    cache = tmp_path / "omniglot-py" / omni_mod.CACHE_NAME
    assert cache.is_file() and "built from the zips" in first.notes[1]
    with np.load(cache, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    _rewrite_cache(cache, **change(arrays))
    again = load_dataset("omniglot", tmp_path, download=False, n_val=2)
    assert f"ignored the cache {cache}: " in again.notes[1] and why in again.notes[1], \
        again.notes[1]
    for part in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(first, part), getattr(again, part)), part
    third = load_dataset("omniglot", tmp_path, download=False, n_val=2)  # rebuilt cache is good
    assert "loaded from cache" in third.notes[1]
    assert np.array_equal(first.train_x, third.train_x)


def test_omniglot_cache_zip_bomb_is_not_inflated(tmp_path):
    _small_omniglot(tmp_path)
    first = load_dataset("omniglot", tmp_path, download=False, n_val=2)
    cache = tmp_path / "omniglot-py" / omni_mod.CACHE_NAME
    with np.load(cache, allow_pickle=False) as npz:
        d = {k: npz[k] for k in npz.files}
    # same fingerprint, but "images" inflates to 640 MiB of zeros (under 1 MB compressed)
    hdr = b"\x93NUMPY\x01\x00"
    dict_ = "{'descr': '|u1', 'fortran_order': False, 'shape': (856000, 1, 28, 28), }"
    dict_ = dict_.encode().ljust(118) + b"\n"
    with zipfile.ZipFile(cache, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in d.items():
            if k != "images":
                buf = io.BytesIO()
                np.save(buf, v)
                zf.writestr(f"{k}.npy", buf.getvalue())
        with zf.open("images.npy", "w", force_zip64=True) as f:
            f.write(hdr + struct.pack("<H", len(dict_)) + dict_)
            block = b"\0" * (16 << 20)
            for _ in range(40):
                f.write(block)
    assert cache.stat().st_size < 16 << 20
    t0 = time.perf_counter()
    again = load_dataset("omniglot", tmp_path, download=False, n_val=2)
    assert time.perf_counter() - t0 < 5.0
    assert "ignored the cache" in again.notes[1] and "above" in again.notes[1]
    assert np.array_equal(first.train_x, again.train_x)


# ------------------------------------------------------------------------------ empty splits

def test_empty_splits_refused_at_training_time(tmp_path, capsys):
    d = _image_folder(tmp_path / "four", n=4)  # 10% of 4 rounds to 0: no val, no test
    _cli_error(capsys, _tiny_train(tmp_path / "r1", d), "the val split of folder is empty",
               "train/val/test = 4/0/0", "data.n_val")
    _cli_error(capsys, _tiny_train(tmp_path / "r2", d, "data.n_val=1"),
               "the test split of folder is empty", "3/1/0", "data.test_fraction")
    for r in ("r1", "r2"):
        assert not (tmp_path / r / "run.json").exists()
    s = load_dataset("folder", d)  # the library still returns what was asked for
    assert s.sizes() == (4, 0, 0)
    with pytest.raises(DataError) as e:
        s.require_nonempty()
    _one_line(e, "the val split of folder is empty")


def test_eval_of_a_run_whose_test_split_became_empty(tmp_path, capsys):
    d = _image_folder(tmp_path / "imgs", n=12)  # test 1, val 2, train 9
    run = tmp_path / "run"
    cli_main([str(a) for a in _tiny_train(run, d, "data.n_val=2", "train.max_steps=2")])
    assert (run / "run.json").exists()
    for p in sorted(d.iterdir())[4:]:  # 4 images left: round(0.4) = 0 test images
        p.unlink()
    _cli_error(capsys, ["eval", run, "--device", "cpu", "--no-progress"],
               "the test split of folder is empty", "2/2/0")


# ------------------------------------------------------------------------------ real files

@pytest.fixture
def shared():
    if not (SHARED / "MNIST" / "raw").exists():
        pytest.skip("../shared/data is not available")
    return SHARED


def test_real_mnist_files_load_identically(shared):
    raw = shared / "MNIST" / "raw"
    for stem in MNIST_STEMS:
        content = gzip.decompress((raw / f"{stem}.gz").read_bytes())
        ndim = content[3]
        dims = struct.unpack(f">{ndim}I", content[4: 4 + 4 * ndim])
        want = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
        got = read_idx(raw / f"{stem}.gz")
        assert got.dtype == np.uint8 and np.array_equal(got, want), stem
        assert idx_mod.read_idx_content(raw / f"{stem}.gz") == content
    s = load_dataset("mnist", shared, download=False)
    assert s.sizes() == (58000, 2000, 10000)
    assert hashlib.md5(s.test_x.tobytes()).hexdigest() == hashlib.md5(
        gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]).hexdigest()


def test_real_omniglot_pngs_decode_identically(shared, tmp_path):
    """The guarded decoder gives the same pixels as plain PIL on the real OMNIGLOT PNGs, and a
    folder of them (two alphabets as classes) loads to exactly those pixels."""
    zpath = shared / "omniglot-py" / "images_background.zip"
    if not zpath.exists():
        pytest.skip("OMNIGLOT zips not available")
    root = tmp_path / "omni"
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        pick = [n for n in names if "/Alphabet_of_the_Magi/" in n][:20] + \
               [n for n in names if "/Anglo-Saxon_Futhorc/" in n][:20]
        for n in pick:
            dest = root / n.split("/")[1] / n.split("/")[-1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = zf.read(n)
            dest.write_bytes(data)
            ref = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32)
            ink = omni_mod._decode_png(data, n)
            want = 1.0 - ref
            assert np.array_equal(omni_mod.area_matrix(105, 28) @ want
                                  @ omni_mod.area_matrix(105, 28).T, ink)
    s = load_dataset("folder", root, test_fraction=0, val_fraction=0, channels=1)
    files = sorted(root.rglob("*.png"))
    ref = np.stack([np.asarray(Image.open(p).convert("L")) for p in files])[:, None]
    assert np.array_equal(s.train_x, ref)
    assert s.train_y.tolist() == [0] * 20 + [1] * 20


def test_hostile_files_leave_shared_data_untouched(shared, tmp_path):
    """Sanity: the MNIST root used for the CLI bomb is made of links, the shared files keep
    their canonical content."""
    root = _mnist_root(tmp_path, shared)
    bomb = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    bomb.unlink()
    shutil.copy(shared / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", bomb)
    assert hashlib.md5(gzip.decompress(
        (shared / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest() \
        == "27ae3e4e09519cfbb04c329615203637"
