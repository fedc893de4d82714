"""Markdown reports in the paper's table layouts, fed by the real suites' outputs."""

import numpy as np
import pytest

from maevae.errors import MaevaeError
from maevae.evaluate.clustering import clustering_suite
from maevae.evaluate.probes import probe_suite
from maevae.evaluate.report import render_comparison, render_run_report


def blobs(n_per_class, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n_per_class)
    return 20.0 * np.eye(10)[y] + 0.3 * rng.standard_normal((y.size, 10)), y


@pytest.fixture(scope="module")
def eval_dict():
    xtr, ytr = blobs(30, 0)
    xte, yte = blobs(5, 1)
    return {
        "nll": 77.98, "nll_stderr": 0.0123, "elbo": 78.94, "recon": 67.40, "kl": 11.54,
        "mpd": 79.71, "std": 12.69, "nll_samples": 4096, "test_copies": 5, "bits_per_dim": None,
        "clustering": clustering_suite(xtr, ytr, xte, yte, ks=(10, 20, 30), runs=2, n_init=2),
        "probes": probe_suite(xtr, ytr, xte, yte, budgets=(100, 200, "all"), runs=2),
        "diagnostics": {"active_units": 30, "mutual_information": 9.2,
                        "kl_per_dim": [0.5] * 32, "mpd_512": 80.0, "std_512": 13.0},
    }


def test_run_report_rows_in_paper_layout(eval_dict):
    md = render_run_report("mae-run", eval_dict, {"t-SNE": "figs/tsne.png"}, ["EMA weights"])
    assert "| Model | RE | KL | MPD | STD | L_elbo | NLL |" in md
    assert "| mae-run | 67.40 | 11.54 | 79.71 | 12.69 | 78.94 | 77.98 |" in md
    # Table 2 layout: K-means 10/20/30, KNN 100/1000/all, Linear 100/1000/all (1000 not run)
    assert ("| mae-run | 100.0 | 100.0 | 100.0 | 100.0 | — | 100.0 | 100.0 | — | 100.0 |"
            in md)
    # Table 5 layout with ± std
    assert "| mae-run | 100.0 ± 0.0 | — | 100.0 ± 0.0 | 100.0 ± 0.0 | — | 100.0 ± 0.0 |" in md
    assert "NLL 77.98 ± 0.012 (std. error); 4096 importance samples; 5 binarised test copies." in md
    assert "| mae-run | 30/32 | 9.20 | 16.00 | 80.00 | 13.00 |" in md
    assert "Hungarian accuracy, K=10: test 100.0 ± 0.0 %" in md
    assert "200 labels" in md  # the details table shows every budget that was run
    assert "![t-SNE](figs/tsne.png)" in md and "- EMA weights" in md
    assert "bits/dim" not in md


def test_missing_metrics_render_as_dash():
    md = render_run_report("empty|run", {"nll": 80.0, "bits_per_dim": 2.951}, {}, [])
    assert "| empty\\|run | — | — | — | — | — | 80.00 | 2.951 |" in md
    assert "| empty\\|run | — | — | — | — | — | — | — | — | — |" in md
    # MPD/STD fall back to the diagnostics' 512-batch values
    md = render_run_report("r", {"diagnostics": {"mpd_512": 1.5, "std_512": 0.25}})
    assert "| r | — | — | 1.50 | 0.25 | — | — |" in md


def test_comparison_interleaves_marked_paper_rows(eval_dict):
    other = {"nll": 89.3, "kl": 12.0}
    md = render_comparison(
        [("ours η=1 γ=0.5", eval_dict), ("omni", other), ("no-paper", other)],
        ["mnist/mae_eta1.0_gamma0.5", "omniglot/mae_eta0.5_gamma0.2", None],
    )
    lines = md.splitlines()
    ours = lines.index(next(line for line in lines if line.startswith("| ours η=1 γ=0.5 | 67.40")))
    assert lines[ours + 1] == (
        "| MAE (η = 1.0, γ = 0.5) (paper) | 67.40 | 11.54 | 79.71 | 12.69 | 78.94 | 77.98 |")
    assert "| MAE (η = 0.5, γ = 0.2) (paper) | — | 12.66 | — | — | — | 89.09 |" in md
    assert ("| MAE (η = 1.0, γ = 0.5) (paper) | 91.2 | 92.6 | 93.6 | 86.7 | 95.9 | 98.2 | 91.5 "
            "| 96.4 | 98.4 |") in md
    assert ("| MAE (η = 1.0, γ = 0.5) (paper) | 91.2 ± 1.2 | 96.6 ± 0.2 | 98.5 ± 0.0 "
            "| 74.3 ± 5.8 | 96.5 ± 0.2 | 98.8 ± 0.0 |") in md
    # OMNIGLOT has no Table 2/5 rows in the paper; the no-paper run has none at all
    assert md.count("(paper) |") == 4
    assert "| no-paper | — | 12.00 | — | — | — | 89.30 |" in md


def test_comparison_cifar_adds_bits_per_dim_and_notes():
    md = render_comparison([("c", {"bits_per_dim": 2.97}), ("m", {})],
                           ["cifar10/mae_eta0.5_gamma1.5", "mnist/mae_eta2.0_gamma0.5"])
    assert "| Model | RE | KL | MPD | STD | L_elbo | NLL | bits/dim |" in md
    assert "| c | — | — | — | — | — | — | 2.970 |" in md
    assert "| MAE (η = 0.5, γ = 1.5) (paper) | — | — | — | — | — | — | 2.95 |" in md
    assert "L_elbo 79.04 although RE + KL = 79.21" in md


def test_comparison_errors():
    with pytest.raises(MaevaeError, match="2 runs but 1 paper keys"):
        render_comparison([("a", {}), ("b", {})], ["mnist/vlae"])
    with pytest.raises(MaevaeError, match="no published numbers for preset 'mnist/nope'"):
        render_comparison([("a", {})], ["mnist/nope"])
    with pytest.raises(MaevaeError, match="at least one"):
        render_comparison([], [])
