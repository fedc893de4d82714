"""`maevae compare` and the main job's probe section: several runs side by side, paper rows."""

import json

import pytest

from maevae.cli import main
from maevae.config import dump_yaml, load_config
from maevae.errors import MaevaeError
from maevae.evaluate.compare import compare_runs, paper_key_for, probe_section
from maevae.runs.directory import RunDir


def stat(mean, std=0.0):
    return {"mean": mean, "std": std, "values": [mean]}


def fake_eval(acc):
    """The keys of eval.json that the tables read, with every accuracy equal to ``acc``."""
    budgets = {b: {"acc_test": stat(acc, 0.01), "time_s": stat(0.1), "converged": True}
               for b in ("100", "1000", "all")}
    return {
        "nll": 80.5, "nll_stderr": 0.1, "elbo": 82.0, "recon": 70.0, "kl": 12.0, "mpd": 90.0,
        "std": 14.0, "nll_samples": 16, "nll_images": 100, "test_copies": 1,
        "dataset": "mnist",
        "clustering": {"kmeans": {k: {"acc_test": stat(acc), "acc_test_majority": stat(acc),
                                      "nmi_test": stat(0.5), "ari_test": stat(0.4)}
                                  for k in ("10", "20", "30")},
                       "hungarian": {"k": 10, "acc_test": stat(acc)}},
        "probes": {"results": {c: dict(budgets)
                               for c in ("knn", "logreg", "svm_linear", "svm_rbf")}},
        "diagnostics": {"active_units": 20, "mutual_information": 9.0,
                        "kl_per_dim": [0.5] * 32, "mpd_512": 91.0, "std_512": 15.0},
        "probe_settings": {"latent": "mu", "runs": 2, "model_step": 60},
    }


def make_evaluated(path, preset, sets=(), acc=0.5, eval_json=True):
    cfg = load_config(preset, list(sets))
    run = RunDir(path)
    run.create(dump_yaml(cfg), {"image_shape": [1, 28, 28], "dataset": cfg.data.name})
    if eval_json:
        (run.path / "eval.json").write_text(json.dumps(fake_eval(acc)))
    return run


def test_paper_key_follows_the_preset_and_its_objective():
    def key(preset, *sets):
        return paper_key_for(load_config(preset, list(sets)))

    assert key("mnist/mae_eta1.0_gamma0.5") == "mnist/mae_eta1.0_gamma0.5"
    assert key("mnist/vlae") == "mnist/vlae"
    assert key("mnist/vlae_fb") == "mnist/vlae_fb"
    assert key("mnist/resnet_vae_af") == "mnist/resnet_vae_af"
    assert key("cifar10/mae_eta0.5_gamma1.5") == "cifar10/mae_eta0.5_gamma1.5"
    assert key("mnist/mae_eta1.0_gamma0.5", "objective.eta=2.0") is None  # overridden
    assert key("mnist/vlae", "objective.free_bits=0.01",
               "objective.free_bits_mode=per_datadim") is None
    assert key("mnist/vlae", "data.name=fashion_mnist") is None
    assert key("mnist/vlae", "name=my_run") is None
    assert key("tiny/test") is None and key("tiny/digits_mae") is None


def test_compare_two_runs_with_paper_rows(tmp_path):
    mae = make_evaluated(tmp_path / "mae", "mnist/mae_eta1.0_gamma0.5", acc=0.912)
    vlae = make_evaluated(tmp_path / "vlae", "mnist/vlae", acc=0.5)
    md = compare_runs([mae.path, vlae.path])
    lines = md.splitlines()
    row = "| mae (MNIST) | 70.00 | 12.00 | 90.00 | 14.00 | 82.00 | 80.50 |"
    assert row in lines
    assert lines[lines.index(row) + 1] == (
        "| MAE (η = 1.0, γ = 0.5) (paper) | 67.40 | 11.54 | 79.71 | 12.69 | 78.94 | 77.98 |")
    assert "| vlae (MNIST) | 70.00 | 12.00 | 90.00 | 14.00 | 82.00 | 80.50 |" in md
    assert "| VLAE (w.o. free bits) (paper) | 71.74 | 7.07 | 109.31 | 66.52 | 78.81 | 78.45 |" in md
    # Table 2 layout: ours in %, then the paper's row
    assert "| mae (MNIST) | 91.2 | 91.2 | 91.2 | 91.2 | 91.2 | 91.2 | 91.2 | 91.2 | 91.2 |" in md
    assert ("| MAE (η = 1.0, γ = 0.5) (paper) | 91.2 | 92.6 | 93.6 | 86.7 | 95.9 | 98.2 "
            "| 91.5 | 96.4 | 98.4 |") in md
    assert "| mae (MNIST) | 91.2 ± 1.0 | 91.2 ± 1.0 | 91.2 ± 1.0 | 91.2 ± 1.0 |" in md
    assert "published numbers of Ma, Zhou & Hovy" in md
    assert "## Runs" in md and "| mnist/mae_eta1.0_gamma0.5 |" in md and "| mnist/vlae |" in md
    assert "| 16 × 100 |" in md


def test_compare_without_matching_preset_has_no_paper_rows(tmp_path):
    a = make_evaluated(tmp_path / "a", "mnist/mae_eta1.0_gamma0.5", ["objective.gamma=0.3"])
    b = make_evaluated(tmp_path / "b", "tiny/test")
    md = compare_runs([a.path, b.path], names=["ours A", "ours B"])
    assert "(paper) |" not in md and "| ours A |" in md and "| ours B |" in md


def test_compare_cli_writes_markdown(tmp_path, capsys):
    a = make_evaluated(tmp_path / "a", "mnist/mae_eta1.0_gamma0.5")
    b = make_evaluated(tmp_path / "b", "mnist/vlae_fb")
    out = tmp_path / "cmp.md"
    main(["compare", str(a.path), str(b.path), "--out", str(out)])
    text = out.read_text()
    assert "(paper)" in text and "| a (MNIST) |" in text and "| b (MNIST) |" in text
    assert text in capsys.readouterr().out


def test_compare_errors_are_one_line(tmp_path):
    a = make_evaluated(tmp_path / "a", "mnist/vlae")
    nothing = make_evaluated(tmp_path / "n", "mnist/vlae", eval_json=False)
    for dirs, match in [([a.path, nothing.path], "has no eval.json"),
                        ([a.path, a.path], "given twice"),
                        ([tmp_path / "missing"], "does not exist"),
                        ([], "at least one")]:
        with pytest.raises(MaevaeError, match=match) as e:
            compare_runs(dirs)
        assert "\n" not in str(e.value)
    (nothing.path / "eval.json").write_text("{not json")
    with pytest.raises(MaevaeError, match="not valid JSON"):
        compare_runs([nothing.path])


def test_probe_section_for_the_main_job(tmp_path):
    a = make_evaluated(tmp_path / "vlae", "tiny/digits_vlae", acc=0.6)
    b = make_evaluated(tmp_path / "mae", "tiny/digits_mae", acc=0.7)
    md = probe_section([a.path, b.path], level=3)
    assert md.startswith("### K-means, KNN and linear probes (paper Table 2 layout")
    assert "| vlae | 60.0 | 60.0 | 60.0 |" in md and "| mae | 70.0 | 70.0 | 70.0 |" in md
    assert "### SVM probes" in md and "### Latent diagnostics" in md
    assert "| mae | 70.0 ± 0.0 | 70.0 ± 0.0 | 70.0 ± 0.0 | 0.500 | 0.400 |" in md
    assert "(paper)" not in md
    # (name, run_dir) pairs, as the main job passes them; default headings at level 3
    md = probe_section([("VLAE", a.path), ("MAE", str(b.path))])
    assert md.startswith("### K-means, KNN and linear probes") and "| VLAE | 60.0 |" in md
    assert "| MAE | 70.0 |" in md
    with pytest.raises(MaevaeError, match="one form"):
        probe_section([("VLAE", a.path), b.path])
    bare = make_evaluated(tmp_path / "bare", "tiny/test")
    (bare.path / "eval.json").write_text(json.dumps({"nll": 1.0}))
    with pytest.raises(MaevaeError, match="no clustering or probe results"):
        probe_section([a.path, bare.path])
