"""Progress that reads well: bar totals, labels, log lines through tqdm.write, --no-progress
step lines, and the training-curve figure."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from conftest import train_tiny_run
from maevae import console
from maevae.config import load_config
from maevae.data import load_dataset
from maevae.evaluate.nll import evaluate_run
from maevae.evaluate.representation import run_probes
from maevae.evaluate.run_report import draw_training_curves
from maevae.runs.directory import RunDir
from maevae.train.trainer import Trainer


class Recorder:
    """Replaces console.tqdm: records every bar (desc, total, final n) and every write
    (with the descriptions of the bars open at that moment)."""

    def __init__(self, monkeypatch):
        self.bars, self.writes = [], []
        rec, base = self, console.tqdm

        class Bar(base):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.open = True
                rec.bars.append(self)

            def close(self):
                self.open = False
                super().close()

            @classmethod
            def write(cls, s, file=None, **k):
                rec.writes.append((str(s), [b.desc for b in rec.bars if b.open]))
                base.write(s, file=file, **k)

        monkeypatch.setattr(console, "tqdm", Bar)


@pytest.fixture(scope="module")
def ten_batches():
    """The digits with a 200-image training split: 10 batches of 20 (tiny/test's batch)."""
    d = load_dataset("digits")
    return dataclasses.replace(d, train_x=d.train_x[:200], train_y=d.train_y[:200])


def _trainer(tmp_path, data, progress, log=console.say, sets=()):
    cfg = load_config("tiny/test", ["train.max_epochs=2", "train.max_steps=7", *sets])
    run = RunDir(tmp_path / "run")
    run.create("", {"image_shape": list(data.image_shape)})
    tr = Trainer(cfg, data, run, torch.device("cpu"), progress=progress, log=log)
    tr.initialize()
    return tr


def test_the_training_bar_counts_to_max_steps_and_every_line_goes_through_tqdm_write(
        tmp_path, ten_batches, monkeypatch, capsys):
    rec = Recorder(monkeypatch)
    tr = _trainer(tmp_path, ten_batches, progress=True)
    assert len(tr.train_x) // tr.cfg.train.batch_size == 10
    tr.fit()
    train_bar, val_bar = rec.bars
    assert (train_bar.desc, train_bar.total, train_bar.n) == ("epoch 1/2", 7, 7)
    assert (val_bar.desc, val_bar.total, val_bar.n) == ("validation", len(ten_batches.val_x),
                                                        len(ten_batches.val_x))
    lines = [s for s, _ in rec.writes]
    assert len(lines) == 2 and lines[0].startswith("epoch 1: val ELBO ")
    assert lines[1].startswith("training stopped after 7 steps")
    assert rec.writes[0][1] == ["epoch 1/2"]  # the summary was written while the bar was open
    assert capsys.readouterr().out.splitlines() == lines  # printed to stdout, nothing else


def test_no_progress_prints_one_line_per_logged_step(tmp_path, ten_batches, monkeypatch):
    rec = Recorder(monkeypatch)
    lines = []
    tr = _trainer(tmp_path, ten_batches, progress=False, log=lines.append,
                  sets=["train.log_every=2"])
    tr.fit()
    assert all(b.disable for b in rec.bars)  # bars made but never drawn
    step_lines = [s for s in lines if s.startswith("step ")]
    assert [int(re.match(r"step (\d+)/7 \(epoch 1/2\): loss ", s)[1]) for s in step_lines] \
        == [1, 2, 4, 6]
    rows = [r for r in tr.run.read_metrics() if r["kind"] == "train"]
    for s, r in zip(step_lines, rows, strict=True):
        assert f"loss {r['loss']:.2f} (RE {r['recon']:.2f}, KL {r['kl']:.2f}" in s
        assert s.endswith(" img/s")
    assert len(lines) == 6 and lines[4].startswith("epoch 1: val ELBO ")
    assert lines[5].startswith("training stopped after 7 steps")


def test_stage_frames_a_step_with_a_start_and_a_done_line():
    lines = []
    with console.stage("t-SNE of 5 codes", lines.append, done="wrote tsne.png") as t:
        pass
    assert lines[0] == "t-SNE of 5 codes ..."
    assert re.fullmatch(r"  wrote tsne\.png in \d\.\d\d s", lines[1]) and t.seconds >= 0


def test_training_curves_plot_the_values_of_metrics_jsonl(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.create("", {"image_shape": [1, 8, 8]})
    train = [(1, 90.5, 80.25), (5, 70.0, 66.5), (10, 60.75, 58.0)]
    for step, loss, elbo in train:
        run.append_metrics({"kind": "train", "epoch": 0, "step": step, "loss": loss,
                            "elbo": elbo, "kl": 3.0, "mpd": 1.5, "lr": 1e-3})
    run.append_metrics({"kind": "val", "epoch": 0, "step": 10, "elbo": 59.5, "kl": 2.5,
                        "mpd": None, "best": True})
    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self),
                                                                   save(self, *a, **k))[1])
    path = draw_training_curves(run.path)
    assert path == str(run.path / "training_curves.png")
    assert (run.path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = drawn
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
             for ax in fig.axes for ln in ax.get_lines()}
    assert lines == {
        "train_loss": ([1, 5, 10], [90.5, 70.0, 60.75]),
        "train_elbo": ([1, 5, 10], [80.25, 66.5, 58.0]), "val_elbo": ([10], [59.5]),
        "train_kl": ([1, 5, 10], [3.0, 3.0, 3.0]), "val_kl": ([10], [2.5]),
        "train_mpd": ([1, 5, 10], [1.5, 1.5, 1.5]),  # val mpd is None: no line
    }
    empty = RunDir(tmp_path / "empty")
    empty.create("", {"image_shape": [1, 8, 8]})
    assert draw_training_curves(empty.path) is None and not (empty.path / "training_curves.png"
                                                             ).exists()


def test_eval_and_probes_label_every_bar_and_report_the_training_curves(tmp_path,
                                                                         monkeypatch):
    run = train_tiny_run(tmp_path / "run", "train.max_steps=6", "train.log_every=3")
    rec = Recorder(monkeypatch)
    evaluate_run(run, None, torch.device("cpu"), nll_samples=2, max_images=6,
                 log=lambda m: None)
    assert [(b.desc, b.total, b.n) for b in rec.bars] == [("test statistics", 6, 6),
                                                          ("IS-NLL (K=2)", 6, 6)]
    rec.bars.clear()
    logged = []
    added = run_probes(run, device=torch.device("cpu"), runs=1, labels="100", n_init=1,
                       tsne_iter=250, tsne_points=60, n_samples=2, n_recon=2, num_threads=1,
                       log=logged.append)
    assert [b.desc for b in rec.bars] == ["encoding (mu)", "K-means", "probes",
                                          "reconstructing", "sampling"]
    assert all(b.n == b.total for b in rec.bars)
    assert [b.total for b in rec.bars[-2:]] == [8, 8]  # the image rows of 8x8 digits
    assert added["figures"]["training_curves"] == "training_curves.png"
    assert (run / "training_curves.png").exists()
    md = (run / "report.md").read_text()
    assert "### Training curves (loss terms every train.log_every steps, validation after" in md
    assert "](training_curves.png)" in md
    starts = [s for s in logged if s.endswith(" ...")]
    assert starts[-5:] == ["t-SNE of 60 test codes (250 iterations) ...",
                           "reconstructing 2 test images ...",
                           "sampling 2 images from the prior ...",
                           "KL per latent dimension ...",
                           "training curves from 4 rows of metrics.jsonl ..."]
    assert np.sum([s.startswith("  wrote ") for s in logged]) == 5


# ------------------------------------------------- sampling / reconstruction progress by rows
@pytest.mark.parametrize("decoder", [{"channels": 8, "mode": "paper_literal_6"},
                                     {"type": "resnet"}])
def test_sampling_and_reconstruction_report_every_image_row_and_draw_the_same(decoder):
    from maevae.models.build import build_model

    cfg = load_config("tiny/test")
    cfg.model.decoder = dataclasses.replace(cfg.model.decoder, **decoder)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 8, 8)).eval()
    calls: list[int] = []
    a = model.sample(3, generator=torch.Generator().manual_seed(4), on_row=calls.append)
    b = model.sample(3, generator=torch.Generator().manual_seed(4))
    assert sum(calls) == 8 and torch.equal(a, b)  # H rows reported; the draws unchanged
    assert calls == ([1] * 8 if "mode" in decoder else [8])  # autoregressive: row by row
    calls.clear()
    x = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    r = model.reconstruct(x, "mean50", torch.Generator().manual_seed(2), on_row=calls.append)
    assert sum(calls) == 8
    assert torch.equal(r, model.reconstruct(x, "mean50", torch.Generator().manual_seed(2)))
