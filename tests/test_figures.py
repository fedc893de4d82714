"""Figures: files are written, are valid PNGs, and image grids have the expected pixel size."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from maevae.errors import MaevaeError
from maevae.evaluate.figures import (
    grid_shape,
    plot_kl_per_dim,
    plot_training_curves,
    plot_tsne,
    save_image_grid,
    save_reconstruction_grid,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def test_grey_grid_of_8x8_digits_has_exact_size_and_pixels(tmp_path):
    images = np.zeros((10, 1, 8, 8))
    images[0] = 1.0  # first tile white
    path = save_image_grid(images, tmp_path / "sub" / "grid.png", nrow=4)
    img = assert_png(path)
    # scale ceil(56 / 8) = 7 -> 56 px tiles; 3 rows x 4 columns; 1 px separators and frame
    assert img.shape[:2] == (3 * 56 + 4, 4 * 56 + 5) == grid_shape(10, 4, 8, 8, 7, 1)
    assert img[1, 1, 0] == pytest.approx(1.0)  # inside the white tile
    assert img[1, 58, 0] == pytest.approx(0.0)  # inside the second (black) tile
    assert img[0, 0, 0] == pytest.approx(0.5, abs=0.01)  # grey separator
    assert img[1:57, 57, 0] == pytest.approx(0.5, abs=0.01)  # separator between tiles


def test_rgb_grid_of_28x28_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((3, 3, 28, 28))
    img = assert_png(save_image_grid(images, tmp_path / "rgb.png", nrow=8, pad=2))
    assert img.shape[:2] == (56 + 4, 3 * 56 + 8)
    # nearest upscaling: a 2x2 block of the PNG equals one source pixel
    np.testing.assert_allclose(img[2:4, 2:4, :3], np.broadcast_to(images[0, :, 0, 0], (2, 2, 3)),
                               atol=1 / 255)


def test_grid_rejects_bad_shapes(tmp_path):
    with pytest.raises(MaevaeError, match=r"\[N, C, H, W\]"):
        save_image_grid(np.zeros((4, 2, 8, 8)), tmp_path / "x.png", nrow=2)
    with pytest.raises(MaevaeError, match="NaN"):
        save_image_grid(np.full((1, 1, 8, 8), np.nan), tmp_path / "x.png", nrow=2)


def test_reconstruction_grid_single_and_several_models(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((12, 1, 28, 28))
    assert_png(save_reconstruction_grid(x, 1 - x, tmp_path / "rec.png", pairs_per_row=4))
    assert_png(save_reconstruction_grid(x, {"MAE": x, "VLAE": 1 - x}, tmp_path / "rec3.png"))
    with pytest.raises(MaevaeError, match="one reconstruction per original"):
        save_reconstruction_grid(x, x[:3], tmp_path / "bad.png")


def test_kl_per_dim_and_training_curves(tmp_path):
    kl = np.array([0.0, 2.5, 0.005, 1.0])
    assert_png(plot_kl_per_dim(kl, tmp_path / "kl.png"))
    assert_png(plot_kl_per_dim(kl, tmp_path / "kl_unsorted.png", sort=False))
    rows = [
        {"epoch": 1, "train_elbo": 100.0, "val_elbo": 101.0, "val_kl": 5.0},
        {"epoch": 2, "train_elbo": 95.0, "val_elbo": 96.0, "val_kl": 6.0, "val_mpd": 40.0},
        {"epoch": 3, "train_elbo": 92.0, "val_elbo": None, "lr": 1e-3, "note": "ok"},
    ]
    assert_png(plot_training_curves(rows, tmp_path / "curves.png"))
    assert_png(plot_training_curves(rows, tmp_path / "one.png", keys=["val_mpd", "missing"]))
    with pytest.raises(MaevaeError, match="none of the requested metrics"):
        plot_training_curves(rows, tmp_path / "none.png", keys=["missing"])
    with pytest.raises(MaevaeError, match="no metric rows"):
        plot_training_curves([], tmp_path / "empty.png")


def test_tsne_plot_subsamples_deterministically(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    codes = rng.standard_normal((120, 5)) + 6.0 * np.eye(3, 5)[y]
    path = plot_tsne(codes, y, tmp_path / "tsne.png", max_points=60, n_iter=250)
    assert_png(path)
    with pytest.raises(MaevaeError, match="one label per code"):
        plot_tsne(codes, y[:10], tmp_path / "bad.png")
