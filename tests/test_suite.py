"""`maevae eval --probes` end to end on a tiny digits run: eval.json, figures, report, cache.

The run directory is made directly (tiny/test config, data-dependent init, saved as the
best model) instead of trained, so that the module stays well under 30 s.
"""

import json
import math

import numpy as np
import pytest
import torch

from maevae.config import dump_yaml, load_config
from maevae.data.transforms import model_inputs
from maevae.distributions import DiagGaussian
from maevae.errors import MaevaeError
from maevae.evaluate import codes as suite
from maevae.evaluate.codes import encode_images, run_codes
from maevae.evaluate.probe_options import parse_label_budgets
from maevae.evaluate.representation import run_probes
from maevae.models.build import build_model
from maevae.runs.directory import RunDir
from maevae.runs.load import load_run_data

FAST = dict(runs=2, labels="100,all", n_init=2, tsne_iter=250, tsne_points=150, n_samples=4,
            n_recon=4, progress=False, num_threads=1, log=lambda m: None)


def make_run(path, sets=(), preset="tiny/test", seed=0, with_model=True):
    """A run directory holding an untrained (DDI-initialised) model as its best model."""
    cfg = load_config(preset, list(sets))
    run = RunDir(path)
    meta = {"image_shape": [1, 8, 8], "dataset": cfg.data.name}
    if cfg.data.name == "digits":
        data = load_run_data(cfg, None)
        meta.update(image_shape=list(data.image_shape), data_notes=data.notes)
    run.create(dump_yaml(cfg), meta)
    if with_model:
        torch.manual_seed(seed)
        model = build_model(cfg.model, tuple(meta["image_shape"]))
        x = model_inputs(data.train_x[:40], True)
        model.initialize(x)
        run.save_best(dict(model.state_dict()), {"epoch": 0, "step": 0})
    return run


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    torch.set_num_threads(1)
    run = make_run(tmp_path_factory.mktemp("suite") / "tiny")
    earlier = {"nll": 30.0, "kl": 1.5, "mpd": 0.7, "std": 0.2}
    (run.path / "eval.json").write_text(json.dumps(earlier))
    added = run_probes(run.path, device=torch.device("cpu"), **FAST)
    return run, added


def test_run_probes_writes_eval_json_figures_and_report(probed):
    run, added = probed
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["nll"] == 30.0 and ev["mpd"] == 0.7  # earlier keys kept
    for key in ("clustering", "probes", "diagnostics", "figures", "probe_timings",
                "probe_settings"):
        assert key in ev and ev[key] == json.loads(json.dumps(added[key]))
    assert set(ev["clustering"]["kmeans"]) == {"10", "20", "30"}
    assert ev["clustering"]["protocol"]["n_train"] == 1500  # train + val of digits
    assert ev["clustering"]["protocol"]["n_test"] == 297
    assert len(ev["clustering"]["kmeans"]["10"]["acc_test"]["values"]) == 2
    assert ev["clustering"]["hungarian"]["k"] == 10
    res = ev["probes"]["results"]
    assert set(res) == {"knn", "logreg", "svm_linear", "svm_rbf"}
    assert set(res["knn"]) == {"100", "all"} and res["knn"]["100"]["runs"] == 2
    assert res["svm_rbf"]["all"]["n_labels"] == 1500
    d = ev["diagnostics"]
    assert len(d["kl_per_dim"]) == 4 and 0 <= d["active_units"] <= 4
    assert d["mutual_information"] <= math.log(297) + 1e-9
    assert d["mpd_512"] > 0 and d["std_512"] > 0
    assert ev["figures"] == {"tsne": "tsne.png", "reconstructions": "reconstructions.png",
                             "samples": "samples.png", "kl_per_dim": "kl_per_dim.png"}
    for name in ev["figures"].values():
        assert (run.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t = ev["probe_timings"]
    assert t["codes_cached"] is False and t["encoded_images"] == 1797
    assert set(t["probe_fit_predict_s"]) == set(res) and t["total_s"] > 0
    md = (run.path / "report.md").read_text()
    assert "| Model | RE | KL | MPD | STD | L_elbo | NLL |" in md
    assert "| tiny | — | 1.50 | 0.70 | 0.20 | — | 30.00 |" in md
    assert "K-means K=10" in md and "SVM-RBF All" in md and "## Timings" in md
    for name in ev["figures"].values():
        assert f"]({name})" in md
    assert "(paper)" not in md  # tiny_test has no published row


def test_cached_codes_are_the_posterior_means_of_thresholded_images(probed):
    run, _ = probed
    from maevae.runs.load import load_run_config, load_trained_model

    cfg = load_run_config(run)
    model, _ = load_trained_model(run, cfg, torch.device("cpu"))
    data = load_run_data(cfg, None)
    arrays, info = run_codes(run.path, device=torch.device("cpu"), log=lambda m: None,
                             progress=False)
    assert info["cached"] is True
    with torch.no_grad():
        q = model.encoder(model_inputs(data.test_x, True))
    np.testing.assert_allclose(arrays["test_codes"], q.mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays["test_logvar"], q.logvar.numpy(), rtol=1e-5, atol=1e-6)
    assert arrays["train_codes"].shape == (1350, 4) and arrays["val_codes"].shape == (150, 4)


def test_second_call_reuses_the_cache_and_a_new_model_invalidates_it(probed, monkeypatch):
    run, _ = probed

    def boom(*a, **k):
        raise AssertionError("encoded again although the cache is valid")

    monkeypatch.setattr(suite, "encode_images", boom)
    added = run_probes(run.path, device=torch.device("cpu"), figures=False,
                       **{**FAST, "runs": 1, "labels": "all"})
    assert added["probe_timings"]["codes_cached"] is True
    assert added["figures"] == {}
    monkeypatch.undo()

    # a new best model (new sha256) makes the cache stale: the codes are encoded again
    tensors, meta = run.load_best()
    tensors = {k: (v * 1.5 if k.startswith("encoder") and v.is_floating_point() else v)
               for k, v in tensors.items()}
    old = run_codes(run.path, device=torch.device("cpu"), log=lambda m: None, progress=False)[0]
    run.save_best(tensors, {k: v for k, v in meta.items() if k != "sha256"})
    logs = []
    new, info = run_codes(run.path, device=torch.device("cpu"), log=logs.append,
                          progress=False)
    assert info["cached"] is False and info["reason"] == "the model changed"
    assert "the model changed" in logs[0]
    assert not np.allclose(new["test_codes"], old["test_codes"])
    again, info = run_codes(run.path, device=torch.device("cpu"), log=lambda m: None,
                            progress=False)
    assert info["cached"] is True
    np.testing.assert_array_equal(again["test_codes"], new["test_codes"])
    # a corrupted cache file is detected by its checksum and rebuilt
    path = run.path / "codes-mu.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    _, info = run_codes(run.path, device=torch.device("cpu"), log=lambda m: None,
                        progress=False)
    assert info["cached"] is False and info["reason"] == "the cache file is corrupt"


class _FixedEncoder(torch.nn.Module):
    """q(z|x) = N(mu, exp(logvar)) with the same mu/logvar for every image."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.mu, self.logvar = torch.tensor(mu), torch.tensor(logvar)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b = x.shape[0]
        return DiagGaussian(self.mu.expand(b, -1), self.logvar.expand(b, -1))


def test_latent_switches_have_the_right_noise():
    model = torch.nn.Module()
    model.encoder = _FixedEncoder([1.0, -2.0], [0.0, math.log(4.0)])  # sigma = 1, 2
    x = np.zeros((4000, 1, 8, 8), np.uint8)
    g = torch.Generator().manual_seed(0)
    mu = encode_images(model, x, True, "mu", torch.device("cpu"), g)
    np.testing.assert_array_equal(mu["codes"].numpy(), np.tile([1.0, -2.0], (4000, 1)))
    m50 = encode_images(model, x, True, "mean50", torch.device("cpu"), g)["codes"].numpy()
    one = encode_images(model, x, True, "sample", torch.device("cpu"), g)["codes"].numpy()
    # mean of 50 samples: mu + sigma / sqrt(50) noise; one sample: mu + sigma noise
    np.testing.assert_allclose(m50.mean(0), [1.0, -2.0], atol=0.01)
    np.testing.assert_allclose(m50.std(0), np.array([1.0, 2.0]) / math.sqrt(50), rtol=0.05)
    np.testing.assert_allclose(one.std(0), [1.0, 2.0], rtol=0.05)


def test_model_inputs_threshold_at_half():
    x = np.array([0, 127, 128, 255], np.uint8).reshape(1, 1, 2, 2)
    assert model_inputs(x, True).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert model_inputs(x, False).flatten().tolist() == pytest.approx(
        [-1.0, -0.00392, 0.00392, 1.0], abs=1e-4)


@pytest.mark.parametrize("labels, expected", [
    ("100,1000,all", [100, 1000, "all"]), ("all", ["all"]), (" 10 , ALL,10", [10, "all"]),
    ([100, "all"], [100, "all"]), (5, [5])])
def test_parse_label_budgets(labels, expected):
    assert parse_label_budgets(labels) == expected


@pytest.mark.parametrize("labels", ["0", "-5", "abc", "", "100,,all", "1.5", [True]])
def test_bad_label_budgets_are_one_line_errors(labels):
    with pytest.raises(MaevaeError) as e:
        parse_label_budgets(labels)
    assert "\n" not in str(e.value) and "--labels" in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": "0"}, "at least 1"),
    ({"labels": "100000"}, "--labels 100000: the run has only 1500 training codes"),
    ({"runs": 0}, "--runs 0"),
    ({"latent": "median"}, "--latent"),
    ({"ks": (10, 5000)}, "K=5000 is larger than the 1500 training codes"),
])
def test_bad_input_fails_in_one_line_before_encoding(tmp_path, kwargs, match):
    run = make_run(tmp_path / "r")
    with pytest.raises(MaevaeError, match=match) as e:
        run_probes(run.path, device=torch.device("cpu"), **{**FAST, **kwargs})
    assert "\n" not in str(e.value)
    assert not list(run.path.glob("codes-*")) and not (run.path / "eval.json").exists()


def test_corrupt_eval_json_fails_before_encoding(tmp_path):
    run = make_run(tmp_path / "r")
    (run.path / "eval.json").write_text("{half written")
    with pytest.raises(MaevaeError, match="is not valid JSON") as e:
        run_probes(run.path, device=torch.device("cpu"), **FAST)
    assert "\n" not in str(e.value) and not list(run.path.glob("codes-*"))


def test_run_without_model_or_not_a_run(tmp_path):
    run = make_run(tmp_path / "empty", with_model=False)
    with pytest.raises(MaevaeError, match="has no trained model yet") as e:
        run_probes(run.path, device=torch.device("cpu"), **FAST)
    assert "\n" not in str(e.value)
    with pytest.raises(MaevaeError, match="does not exist"):
        run_probes(tmp_path / "nowhere", device=torch.device("cpu"), **FAST)
    (tmp_path / "plain").mkdir()
    with pytest.raises(MaevaeError, match="not a maevae run directory"):
        run_probes(tmp_path / "plain", device=torch.device("cpu"), **FAST)


def test_cli_bad_labels_is_one_line_error(tmp_path, capsys):
    from maevae.cli import main

    run = make_run(tmp_path / "r")
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run.path), "--probes", "--labels", "0", "--nll-samples", "2",
              "--max-images", "4", "--device", "cpu", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maevae: error: --labels 0")
