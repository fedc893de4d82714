"""Figures and reports a reader can use without the source (issue #13): class names in the
t-SNE legend, rounded numbers in titles, aligned reconstruction pairs, titled sample grids,
`compare` that names runs by folder and dataset and warns when they differ, headings."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from maevae.cli import main
from maevae.config import dump_yaml, load_config
from maevae.data import load_dataset
from maevae.data.registry import DATASETS
from maevae.digits_comparison import render_report
from maevae.errors import MaevaeError
from maevae.evaluate import figures as F
from maevae.evaluate.compare import compare_runs
from maevae.evaluate.probe_options import fit_to_sizes
from maevae.evaluate.report import (
    render_comparison,
    render_representation_tables,
    render_run_report,
)
from maevae.runs.directory import RunDir


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


# ---- compare: names, the paper note, runs that cannot be compared --------------------------


def _evaluated(path, preset, shape, dataset):
    """A run directory with config.yaml, run.json and a small eval.json (no training)."""
    cfg = load_config(preset)
    run = RunDir(path)
    run.create(dump_yaml(cfg), {"image_shape": shape, "dataset": cfg.data.name})
    ev = {"nll": 20.5, "elbo": 22.0, "recon": 15.0, "kl": 7.0, "dataset": dataset,
          "nll_samples": 8, "nll_images": 50}
    (run.path / "eval.json").write_text(json.dumps(ev))
    return run.path


def test_compare_warns_when_runs_differ_in_dataset_and_image_size(tmp_path):
    d = _evaluated(tmp_path / "dig", "tiny/digits_mae", [1, 8, 8], "digits")
    m = _evaluated(tmp_path / "mn", "tiny/test", [1, 28, 28], "mnist")
    md = compare_runs([d, m])
    lines = md.splitlines()
    warn = [ln for ln in lines if ln.startswith("**Warning:**")]
    assert warn == ["**Warning:** these runs differ in dataset and image size (dig (digits): "
                    "digits, 1x8x8; mn (MNIST): MNIST, 1x28x28), so their numbers (NLL in "
                    "nats per image, accuracies) are not comparable across them"]
    assert "| dig (digits) | 15.00 | 7.00 |" in md and "| mn (MNIST) | 15.00 | 7.00 |" in md
    # neither run has a published row: no paper rows and no note about them
    assert "(paper)" not in md and "Ma, Zhou & Hovy" not in md


def test_compare_of_like_runs_has_no_warning(tmp_path):
    a = _evaluated(tmp_path / "a", "tiny/digits_mae", [1, 8, 8], "digits")
    b = _evaluated(tmp_path / "b", "tiny/digits_vlae", [1, 8, 8], "digits")
    md = compare_runs([a, b])
    assert "Warning" not in md and "| a (digits) |" in md and "| b (digits) |" in md


def test_a_fashion_run_of_an_mnist_preset_is_named_by_its_dataset(tmp_path):
    cfg = load_config("mnist/vlae", ["data.name=fashion_mnist"])
    run = RunDir(tmp_path / "fash")
    run.create(dump_yaml(cfg), {"image_shape": [1, 28, 28], "dataset": "fashion_mnist"})
    (run.path / "eval.json").write_text(json.dumps({"nll": 240.0, "dataset": "fashion_mnist"}))
    md = compare_runs([run.path])
    assert "| fash (Fashion-MNIST) |" in md and "(paper)" not in md
    assert "Ma, Zhou & Hovy" not in md


# ---- report headings ------------------------------------------------------------------------


def _repeated_headings(md: str) -> list[tuple[str, str]]:
    """(parent, child) headings whose titles start with the same word (plural or not)."""
    def stem(title: str) -> str:
        return title.split()[0].lower().rstrip(",:").removesuffix("s")

    stack: list[tuple[int, str]] = []
    bad = []
    for line in md.splitlines():
        m = re.match(r"(#+) (.*)", line)
        if not m:
            continue
        level, title = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= level:
            stack.pop()
        if stack and stem(stack[-1][1]) == stem(title):
            bad.append((stack[-1][1], title))
        stack.append((level, title))
    return bad


def test_report_headings_do_not_repeat_their_parents():
    assert _repeated_headings("# A\n## Representations\n### Representation (x)\n") == [
        ("Representations", "Representation (x)")]  # the checker finds the old bug
    ev = {"nll": 1.0, "clustering": {"kmeans": {"10": {"acc_test": {"mean": 0.5}}}},
          "probes": {"results": {"knn": {"100": {"acc_test": {"mean": 0.5}}}}}}
    run_md = render_run_report("r", ev, {"t-SNE of the test codes": "tsne.png"}, ["a note"],
                               paper_key="mnist/vlae")
    section = render_representation_tables([("VLAE", ev), ("MAE", ev)], level=3)
    stats = {k: 1.0 for k in ("nll", "elbo", "recon", "kl", "mpd", "std")}
    res = {label: {**stats, "steps": 1, "seconds_train": 1, "seconds_eval": 1,
                   "data_notes": ["digits"], "stat_images": 1, "stat_posterior_samples": 1,
                   "nll_samples": 1, "nll_images": 1} for label in ("VLAE", "MAE")}
    main_md = render_report(res, section, 1.0)
    assert "## Representations" in main_md and "### K-means, KNN and linear probes" in main_md
    for md in (run_md, render_comparison([("a", ev)], ["mnist/vlae"]), main_md):
        assert _repeated_headings(md) == []


# ---- defaults that fit small data -----------------------------------------------------------


def test_default_budgets_and_ks_fit_the_pool_with_a_note():
    plan = fit_to_sizes(None, None, (160, 20, 20))
    assert plan.labels == [100, "all"] and plan.ks == [10, 20, 30]
    assert plan.notes == ["label budget(s) 1000 dropped: the run has only 180 training codes "
                          "(train+val split); probing with 100, all labels"]
    plan = fit_to_sizes(None, None, (20, 5, 5), pool="train")
    assert plan.labels == ["all"] and plan.ks == [10]
    assert plan.notes[1] == ("K-means K=20, 30 dropped: the run has only 20 training codes "
                             "(train split)")
    assert fit_to_sizes(None, None, (60000, 0, 10000)).notes == []  # MNIST: nothing dropped
    assert fit_to_sizes("100,180", [30], (160, 20, 20)).labels == [100, 180]  # = pool: fits


@pytest.mark.parametrize("labels, ks, sizes, match", [
    ("100,1000", None, (160, 20, 20), "--labels 1000: the run has only 180 training codes"),
    (None, [200], (160, 20, 20), "K-means K=200 is larger than the 180 training codes"),
    (None, None, (6, 1, 1), "only 1 test images"),
    (None, None, (5, 2, 3), "K = 10, 20, 30 needs more"),
])
def test_explicit_options_that_do_not_fit_are_one_line_errors(labels, ks, sizes, match):
    with pytest.raises(MaevaeError, match=re.escape(match)) as e:
        fit_to_sizes(labels, ks, sizes)
    assert "\n" not in str(e.value)


def _folder_images(root, n=200):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("ab"[i % 2])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(d / f"{i:03d}.png")


def test_eval_probes_on_a_200_image_folder(tmp_path, capsys, monkeypatch):
    import maevae.evaluate.nll as nll

    images, run = tmp_path / "imgs", tmp_path / "run"
    _folder_images(images)
    main(["train", "tiny/test", "--out", str(run), "--dataset", "folder", "--data-root",
          str(images), "--no-progress", "--set", "train.num_threads=1"])
    meta = json.loads((run / "run.json").read_text())
    assert meta["sizes"] == [160, 20, 20] and meta["labelled"] is True
    capsys.readouterr()
    # an explicit budget above the 180 labelled codes: one line, before the likelihood pass
    monkeypatch.setattr(nll, "evaluate_run", lambda *a, **k: pytest.fail("NLL pass started"))
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run), "--probes", "--labels", "1000", "--no-progress"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "maevae: error: --labels 1000: the run has only 180 training codes (train+val "
        "split); use budgets up to 180, or 'all'\n")
    monkeypatch.undo()
    # the default budgets: 1000 is dropped with a note, the rest runs
    main(["eval", str(run), "--probes", "--runs", "1", "--no-figures", "--no-progress",
          "--nll-samples", "2"])
    out = capsys.readouterr().out
    assert ("note: label budget(s) 1000 dropped: the run has only 180 training codes "
            "(train+val split); probing with 100, all labels") in out
    ev = json.loads((run / "eval.json").read_text())
    assert sorted(ev["probes"]["results"]["knn"]) == ["100", "all"]
    assert ev["probe_settings"]["labels"] == ["100", "all"]
    assert ("- Small data: label budget(s) 1000 dropped: the run has only 180 training codes "
            "(train+val split); probing with 100, all labels.") in (run / "report.md").read_text()


def test_eval_probes_on_an_unlabelled_run_fails_before_the_likelihood_pass(
        tmp_path, capsys, monkeypatch):
    import maevae.evaluate.nll as nll

    run = RunDir(tmp_path / "flat")
    run.create(dump_yaml(load_config("tiny/test")),
               {"image_shape": [1, 8, 8], "sizes": [160, 20, 20], "labelled": False})
    monkeypatch.setattr(nll, "evaluate_run", lambda *a, **k: pytest.fail("NLL pass started"))
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run.path), "--probes", "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("maevae: error: the run's dataset has no labels")
