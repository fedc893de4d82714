"""Figures and reports a reader can use without the source (issue #13): class names in the
t-SNE legend, rounded numbers in titles, aligned reconstruction pairs, titled sample grids."""

import numpy as np
import pytest
from PIL import Image

from maevae.data import load_dataset
from maevae.data.registry import DATASETS
from maevae.evaluate import figures as F


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the plotting functions save (kept open for inspection)."""
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return str(path)

    monkeypatch.setattr(F, "_save", keep)
    yield figs
    for fig in figs:
        F.plt.close(fig)


def test_fmt_number_rounds_and_drops_whole_decimals():
    assert F.fmt_number(19 / 3) == "6.3"
    assert F.fmt_number(40.0) == "40"
    assert F.fmt_number(6.96) == "7"
    assert F.fmt_number(0.25, 2) == "0.25"


def test_tsne_legend_has_class_names_and_title_rounds_perplexity(tmp_path, captured):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    codes = rng.standard_normal((30, 4)) + 5.0 * np.eye(3, 4)[y]
    names = ["T-shirt/top", "Trouser", "Pullover"]
    F.plot_tsne(codes, y, tmp_path / "t.png", perplexity=19 / 3, n_iter=250, title="codes",
                class_names=names)
    ax = captured[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == names
    assert ax.get_legend().get_title().get_text() == "class"
    assert ax.get_title() == "codes (30 points, perplexity 6.3)"
    F.plot_tsne(codes, y, tmp_path / "u.png", perplexity=40, n_iter=250, title="codes")
    ax = captured[1].axes[0]  # 30 points: perplexity lowered to (30 - 1) / 3 = 9.67
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert ax.get_title() == "codes (30 points, perplexity 9.7)"


def _hand_positions(n, per_row, cols, hs, ws, pad, gap):
    """(y, x) of tile t of pair i, from the layout rule written out by hand."""
    out = {}
    for i in range(n):
        r, j = i // per_row, i % per_row
        for t in range(cols):
            out[i, t] = (pad + r * (hs + pad), pad + j * (cols * (ws + pad) + gap) + t * (ws + pad))
    return out


@pytest.mark.parametrize("n", [5, 7])
def test_reconstruction_pairs_line_up_whatever_n(n):
    # image i is constant i / 10, its reconstruction 0.05 + i / 10: each tile is identifiable
    orig = np.broadcast_to((np.arange(n) / 10.0)[:, None, None, None], (n, 1, 2, 3)).copy()
    rec = orig + 0.05
    scale, pad, gap = 2, 1, 3
    canvas = F.reconstruction_canvas(orig, [rec], pairs_per_row=3, scale=scale, pad=pad,
                                     gap=gap, pad_value=0.5, background=1.0)
    rows = -(-n // 3)
    assert canvas.shape == (pad + rows * (4 + pad), pad + 3 * 2 * (6 + pad) + 2 * gap, 1)
    for (i, t), (y, x) in _hand_positions(n, 3, 2, 4, 6, pad, gap).items():
        tile = canvas[y:y + 4, x:x + 6, 0]
        np.testing.assert_allclose(tile, i / 10.0 + 0.05 * t)
        assert canvas[y - 1, x, 0] == 0.5  # the pad line above every tile
    # n=5: pair 5 missing from the last row; n=7: pairs 7, 8 missing -> background there
    y_last = pad + (rows - 1) * (4 + pad)
    for j in range(n - 3 * (rows - 1), 3):
        x = pad + j * (2 * (6 + pad) + gap)
        assert np.all(canvas[y_last:y_last + 4, x:x + 13, 0] == 1.0)


def test_reconstruction_grid_column_titles_sit_over_the_tiles(tmp_path, captured):
    x = np.zeros((7, 1, 8, 8))
    F.save_reconstruction_grid(x, x, tmp_path / "r.png", pairs_per_row=3, title="recs")
    ax = captured[0].axes[0]
    assert ax.get_title() == "recs"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["original", "reconstruction"] * 3
    # 56-px tiles, 1-px pad, gap 56 // 8 = 7: centres x0 + 27.5
    x0 = [1 + j * (2 * 57 + 7) + t * 57 for j in range(3) for t in range(2)]
    np.testing.assert_allclose(ax.get_xticks(), [v + 27.5 for v in x0])


def test_sample_grid_has_a_title_naming_run_dataset_n_and_seed(tmp_path, captured):
    F.save_sample_grid(np.zeros((6, 1, 8, 8)), tmp_path / "s.png", "mae", "digits", 3)
    assert captured[0].axes[0].get_title() == "mae (digits): 6 samples from the prior, seed 3"


def test_datasets_know_their_class_names(tmp_path):
    assert DATASETS["fashion_mnist"].class_names[0] == "T-shirt/top"
    assert DATASETS["fashion_mnist"].class_names[9] == "Ankle boot"
    assert len(DATASETS["cifar10"].class_names) == 10 and DATASETS["mnist"].class_names is None
    for cls in ("zebra", "ant"):
        for i in range(5):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(np.full((4, 4), 30 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_dataset("folder", tmp_path)
    assert d.class_names == ["ant", "zebra"]  # label i = i-th sorted subfolder
    assert load_dataset("digits").class_names is None
