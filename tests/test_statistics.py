"""Validation / test statistics: chunking the decoder's work changes nothing but rounding."""

import pytest
import torch

from maevae.config import load_config
from maevae.data import load_dataset
from maevae.data.transforms import evaluation_inputs
from maevae.models.build import build_model
from maevae.objectives import batch_mpd_std
from maevae.statistics import batch_statistics


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    cfg = load_config("tiny/test")
    data = load_dataset("digits", None, seed=cfg.seed)
    model = build_model(cfg.model, data.image_shape)
    x, _ = evaluation_inputs(data.val_x[:45], cfg.data, seed=1)
    model.initialize(x)
    return model.eval(), x


@pytest.mark.parametrize("chunk", [7, 15, 64])
def test_chunked_statistics_equal_unchunked(model_and_images, chunk):
    model, x = model_and_images
    # batches of 20, 20, 5 images x 3 samples: 60 decoder images per batch unchunked
    whole = batch_statistics(model, x, batch=20, n_samples=3,
                             generator=torch.Generator().manual_seed(5))
    parts = batch_statistics(model, x, batch=20, n_samples=3,
                             generator=torch.Generator().manual_seed(5), chunk=chunk)
    assert set(parts) == {"recon", "kl", "elbo", "mpd", "std"}
    for key in whole:  # the same noise; per-image sums in float32 on smaller batches
        assert parts[key] == pytest.approx(whole[key], rel=1e-5), key


def test_statistics_against_the_per_batch_terms(model_and_images):
    """RE/KL: means over images; MPD/STD: unweighted means over the batches' own values."""
    model, x = model_and_images
    g = torch.Generator().manual_seed(3)
    got = batch_statistics(model, x, batch=20, n_samples=2, generator=g, chunk=9)
    g = torch.Generator().manual_seed(3)
    recon, kl, pairs = [], [], []
    with torch.no_grad():
        for s in range(0, 45, 20):
            t = model.terms(x[s:s + 20], 2, g)  # the unchunked path draws the same noise
            recon.append(t.recon)
            kl.append(t.kl)
            pairs.append(batch_mpd_std(t.mu, t.logvar))
    assert got["recon"] == pytest.approx(float(torch.cat(recon).double().mean()), rel=1e-5)
    assert got["kl"] == pytest.approx(float(torch.cat(kl).double().mean()), rel=1e-5)
    assert got["mpd"] == pytest.approx(sum(p[0] for p in pairs) / 3, rel=1e-5)
    assert got["std"] == pytest.approx(sum(p[1] for p in pairs) / 3, rel=1e-5)


def test_chunked_statistics_encode_each_image_once(model_and_images):
    """The chunked path encodes every image once (plus one image per batch for the noise's
    dtype), not the whole batch once more to draw the noise."""
    model, x = model_and_images
    seen = []
    handle = model.encoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        batch_statistics(model, x, batch=20, n_samples=3,
                         generator=torch.Generator().manual_seed(5), chunk=7)
    finally:
        handle.remove()
    assert sum(seen) == x.shape[0] + 3  # 45 images in 3 batches
