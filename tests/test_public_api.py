"""The public Python API: ``__all__`` and docstrings on every module, the lazy package face,
the ``Run`` methods and the README's "Use it from Python" block, executed."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import maevae
from conftest import train_tiny_run
from maevae.data.binarize import threshold
from maevae.data.transforms import model_inputs
from maevae.errors import MaevaeError
from maevae.inference.likelihood import importance_sampled_nll

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ __all__ and docstrings
def _modules() -> list[types.ModuleType]:
    names = ["maevae"] + [m.name for m in pkgutil.walk_packages(maevae.__path__, "maevae.")]
    # maevae.__main__ runs the CLI when imported
    return [importlib.import_module(n) for n in names if n != "maevae.__main__"]


def _undocumented(module: types.ModuleType) -> list[str]:
    """The names in ``module.__all__`` (and the public methods of its classes) that are
    functions or classes without a docstring of their own."""
    bad = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants and type aliases
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        # a @dataclass without a docstring gets its signature "Name(field: type, ...)"
        if not (doc or "").strip() or (inspect.isclass(obj) and doc.startswith(f"{name}(")):
            bad.append(f"{module.__name__}.{name}")
        if not inspect.isclass(obj) or obj.__module__ != module.__name__:
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            fn = member.fget if isinstance(member, property) else getattr(member, "__func__",
                                                                          member)
            if inspect.isfunction(fn) and not (fn.__doc__ or "").strip():
                bad.append(f"{module.__name__}.{name}.{attr}")
    return bad


def test_every_module_has_all_naming_only_what_exists():
    mods = _modules()
    assert len(mods) > 70 and "maevae.runs.facade" in {m.__name__ for m in mods}
    missing = [m.__name__ for m in mods if not isinstance(getattr(m, "__all__", None), list)]
    assert not missing, f"modules without __all__: {missing}"
    absent = [f"{m.__name__}.{n}" for m in mods for n in m.__all__ if not hasattr(m, n)]
    assert not absent, f"names in __all__ that do not exist: {absent}"


def test_every_public_definition_has_a_docstring():
    bad = [name for m in _modules() for name in _undocumented(m)]
    assert not bad, "public definitions without a docstring:\n" + "\n".join(bad)


def test_the_docstring_check_catches_what_it_is_for():
    fake = types.ModuleType("fake")

    def documented():
        """Has one."""

    def bare():
        pass

    class Cls:
        """Documented class."""

        def method(self):
            pass

        @property
        def prop(self):
            return 1

        def _private(self):
            pass

    from dataclasses import dataclass

    @dataclass
    class Data:
        x: int = 0

    for obj in (documented, bare, Cls, Data):
        obj.__module__ = "fake"
        setattr(fake, obj.__name__, obj)
    fake.CONSTANT = 3
    fake.__all__ = ["CONSTANT", "Cls", "Data", "bare", "documented"]
    assert _undocumented(fake) == ["fake.Cls.method", "fake.Cls.prop", "fake.Data", "fake.bare"]


# ------------------------------------------------------------------ the package's face
def test_import_maevae_is_cheap_and_names_resolve_lazily():
    code = ("import sys, maevae; heavy = sorted(m for m in sys.modules if m == 'torch' or "
            "m.startswith('maevae.')); print(heavy); maevae.load_run; "
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_the_public_names():
    assert maevae.__all__ == ["ConfigError", "MaevaeError", "PosteriorDivergence", "Run",
                              "build_model", "load_config", "load_run",
                              "posterior_divergence"]
    from maevae.objectives import posterior_divergence
    from maevae.runs.load import Run, load_run

    assert maevae.Run is Run and maevae.load_run is load_run
    assert maevae.posterior_divergence is posterior_divergence
    assert set(maevae.__all__) <= set(dir(maevae))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        maevae.nope  # noqa: B018


def test_build_model_takes_a_run_config_and_checks_the_shape():
    cfg = maevae.load_config("tiny/test")
    model = maevae.build_model(cfg, (1, 8, 8))
    same = maevae.build_model(cfg.model, [1, 8, 8])
    assert model.image_shape == same.image_shape == (1, 8, 8)
    assert model.latent_dim == cfg.model.encoder.latent_dim == 4
    with pytest.raises(maevae.ConfigError, match=r"image_shape=\(8, 8\): give \(C, H, W\)"):
        maevae.build_model(cfg, (8, 8))


def test_posterior_divergence_two_posteriors_by_hand():
    # two 1-d posteriors N(0, 1) and N(1, e): KL(1||2) = 1/2 (1/e + 1/e + 1 - 1) = 1/e,
    # KL(2||1) = 1/2 (e + 1 - 1 - 1) = (e - 1)/2; MPD = their mean, STD = |difference| / sqrt 2
    mu, logvar = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [1.0]])
    e = float(np.e)
    kl12, kl21 = 1 / e, (e - 1) / 2
    d = maevae.posterior_divergence(mu, logvar)
    assert float(d.mpd) == pytest.approx((kl12 + kl21) / 2, rel=1e-6)
    assert float(d.std) == pytest.approx(abs(kl12 - kl21) / np.sqrt(2), rel=1e-6)
    with pytest.raises(MaevaeError, match=r"mu and logvar must both be \[B, D\], got \[2\]"):
        maevae.posterior_divergence(mu[:, 0], logvar)
    with pytest.raises(MaevaeError, match="at least 2 posteriors, got B = 1"):
        maevae.posterior_divergence(mu[:1], logvar[:1])


# ------------------------------------------------------------------ a trained tiny run
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding ``runs/tiny``, the tiny/test preset trained (seconds)."""
    base = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    train_tiny_run(base / "runs" / "tiny")
    return base


@pytest.fixture(scope="module")
def run(workdir):
    return maevae.load_run(workdir / "runs" / "tiny", "cpu")


def test_images_are_validated_with_one_line(run):
    x = run.load_data().test_x[:3]
    cases = [
        (x.astype(np.float32), "expected uint8 images [N, 1, 8, 8], got a numpy array of "
                               "float32 [3, 1, 8, 8]"),
        (torch.from_numpy(x).float(), "got a tensor of float32 [3, 1, 8, 8]"),
        (x[0], "got a numpy array of uint8 [1, 8, 8]; one image is images[None]"),
        (x[:, :, :4], "got a numpy array of uint8 [3, 1, 4, 8]"),
        (x[:0], "with N >= 1, got a numpy array of uint8 [0, 1, 8, 8]"),
        ((x > 127).astype(np.uint8), "the largest value is 1; give 8-bit intensities 0..255"),
        (x.tolist(), "(numpy or torch), got list"),
    ]
    for bad, message in cases:
        with pytest.raises(MaevaeError, match=re.escape(message)):
            run.encode(bad)
    with pytest.raises(MaevaeError, match="latent='z': choose one of mu, mean50, sample"):
        run.encode(x, latent="z")
    with pytest.raises(MaevaeError, match="k=0: the number of importance samples"):
        run.log_likelihood(x, k=0)
    with pytest.raises(MaevaeError, match="n=0: the number of samples"):
        run.sample(0)


def test_binary_models_threshold_at_128(run):
    flat = np.full((4, 1, 8, 8), 0, np.uint8)
    flat[1], flat[2], flat[3] = 127, 128, 255
    codes = run.encode(flat)
    assert torch.equal(codes[0], codes[1]) and torch.equal(codes[2], codes[3])
    assert not torch.equal(codes[0], codes[2])
    assert torch.equal(run.encode(torch.from_numpy(flat)), codes)  # numpy or torch: the same


def test_run_methods_agree_with_the_model(run):
    x = run.load_data().test_x[:10]
    xin = threshold(torch.from_numpy(x))  # [10, 1, 8, 8] in {0, 1}
    q = run.model.encoder(xin)
    mu, logvar = run.posterior(x)
    assert mu.shape == logvar.shape == (10, 4) and mu.dtype == torch.float32
    assert torch.allclose(mu, q.mu) and torch.allclose(logvar, q.logvar)
    assert torch.equal(run.encode(x), mu)
    assert torch.equal(run.encode(x, "sample", seed=3), run.encode(x, "sample", seed=3))
    assert not torch.equal(run.encode(x, "sample", seed=3), mu)
    recon = run.reconstruct(x)
    assert recon.dtype == torch.uint8 and recon.shape == (10, 1, 8, 8)
    assert torch.equal(recon, run.model.reconstruct(xin).to(torch.uint8) * 255)
    with torch.no_grad():  # the authors' reconstructions: greedy decoding of the mean of 50
        z50 = q.mu + (0.5 * q.logvar).exp() * torch.randn(
            (50, *q.mu.shape), generator=torch.Generator().manual_seed(4)).mean(0)  # [10, D]
        want = run.model.decoder.sample(z50, greedy=True).to(torch.uint8) * 255
    assert torch.equal(run.reconstruct(x, "mean50", seed=4), want)
    with pytest.raises(MaevaeError, match="code='z'"):
        run.reconstruct(x, "z")
    s = run.sample(5, seed=1)
    assert s.dtype == torch.uint8 and s.shape == (5, 1, 8, 8)
    assert set(s.unique().tolist()) <= {0, 255}
    assert torch.equal(s, run.sample(5, seed=1)) and not torch.equal(s, run.sample(5, seed=2))


def test_log_likelihood_with_one_sample_by_hand(run):
    # K = 1: log p(x) ≈ log p(x|z) + log p(z) - log q(z|x) with z drawn from seed 5
    x = run.load_data().test_x[:6]
    xin = threshold(torch.from_numpy(x))
    with torch.no_grad():
        q = run.model.encoder(xin)
        z = q.rsample(1, torch.Generator().manual_seed(5))  # [1, 6, D]
        want = (run.model.decoder.log_prob(xin, z) + run.model.prior.log_prob(z)
                - q.log_prob(z))[0]  # [6]
    got = run.log_likelihood(x, k=1, seed=5)
    assert got.dtype == torch.float64 and got.shape == (6,)
    assert torch.allclose(got, want.double(), atol=1e-5)


# ------------------------------------------------------------------ the README block
def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Use it from Python\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_python_block_runs(workdir, monkeypatch, capsys):
    block = _readme_block()
    assert 'maevae.load_run("runs/tiny"' in block
    monkeypatch.chdir(workdir)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    run, images = ns["run"], ns["images"]
    assert images.shape == (64, 1, 8, 8) and images.dtype == np.uint8
    assert ns["codes"].shape == (64, 4) and torch.isfinite(ns["codes"]).all()
    log_px = ns["log_px"]
    assert log_px.shape == (64,) and torch.isfinite(log_px).all()
    # the estimator of `maevae eval`, called directly with the same images, K and seed
    x = model_inputs(images, run.config.data.binarize)
    ref = importance_sampled_nll(run.model, x, 128, run.config.eval.nll_chunk,
                                 torch.Generator().manual_seed(0))
    assert torch.equal(log_px, -ref.nll.double())
    assert ns["samples"].shape == (16, 1, 8, 8) and ns["samples"].dtype == torch.uint8
    assert ns["recon"].shape == (64, 1, 8, 8)
    div = ns["div"]
    assert torch.isfinite(div.mpd) and float(div.mpd) > 0 and div.per_dim.shape == (4,)
    assert f"MPD {float(div.mpd):.2f}" in capsys.readouterr().out
    assert ns["model"].image_shape == (1, 8, 8)
