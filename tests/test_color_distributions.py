"""Discretised logistic mixture (SPEC §1.7): normalisation, closed forms, the sampler."""

import math

import pytest
import torch

from maevae.distributions.logistic_mixture import (
    discretized_logistic_channel_log_probs,
    discretized_logistic_mixture_log_prob,
    discretized_logistic_mixture_pixel_log_prob,
    sample_discretized_logistic_mixture,
)

LEVELS = torch.linspace(-1, 1, 256, dtype=torch.float64)  # the 8-bit grid in [-1, 1]


def _params(nmix, means, log_scales, coeffs, logits=None):
    """One pixel's parameter vector [1, 10 nmix, 1, 1] from [K, 3] tables (raw coefficients)."""
    logits = torch.zeros(nmix) if logits is None else torch.as_tensor(logits)
    p = torch.cat([torch.as_tensor(logits, dtype=torch.float64).flatten(),
                   torch.as_tensor(means, dtype=torch.float64).flatten(),
                   torch.as_tensor(log_scales, dtype=torch.float64).flatten(),
                   torch.as_tensor(coeffs, dtype=torch.float64).flatten()])
    return p.view(1, 10 * nmix, 1, 1)


def _hard_params():
    """Three components covering both edges, the -7 clamp and a wide logistic."""
    means = [[-0.99, 0.2, 0.995], [0.0, -1.0, 0.5], [0.7, 0.9, -0.3]]
    log_scales = [[-9.0, -3.0, -2.0], [0.5, -5.0, -7.0], [-4.0, -1.0, -3.5]]
    coeffs = [[0.8, -1.5, 2.0], [-0.4, 0.3, 0.1], [3.0, -3.0, 0.7]]
    return _params(3, means, log_scales, coeffs, logits=[0.3, -1.0, 0.8])


def _channel_probs(x, params, nmix):
    """x [N, 3, H, W] -> p_{k,c}(x_c | x_<c) [N, K, 3, H, W] for params of one pixel."""
    n, _, h, w = x.shape
    _, log_p = discretized_logistic_channel_log_probs(x, params.expand(n, -1, h, w), nmix)
    return log_p.exp()


def test_every_channel_conditional_sums_to_one_over_its_256_values():
    """p(R,G,B) = sum_k pi_k p_k(R) p_k(G|R) p_k(B|R,G) sums to 1 over the 256^3 joint iff
    each conditional sums to 1 for every context: check R, G for all 256 values of R, and B
    for many (R, G) contexts including the four corners."""
    params = _hard_params()
    k = 3
    # R: [1, 3, 1, 256] (G, B arbitrary: R does not depend on them)
    x = torch.zeros(1, 3, 1, 256, dtype=torch.float64)
    x[0, 0, 0] = LEVELS
    pr = _channel_probs(x, params, k)[0, :, 0, 0]  # [K, 256]
    assert torch.allclose(pr.sum(-1), torch.ones(k, dtype=torch.float64), atol=1e-5)
    # G given every R: [1, 3, 256 (R), 256 (G)]
    x = torch.zeros(1, 3, 256, 256, dtype=torch.float64)
    x[0, 0] = LEVELS[:, None]
    x[0, 1] = LEVELS[None, :]
    pg = _channel_probs(x, params, k)[0, :, 1]  # [K, R, G]
    assert (pg.sum(-1) - 1).abs().max() < 1e-5
    # B given (R, G): 300 random contexts + the 4 corners: [1, 3, 304, 256 (B)]
    g = torch.Generator().manual_seed(0)
    ctx = torch.randint(0, 256, (300, 2), generator=g)
    ctx = torch.cat([ctx, torch.tensor([[0, 0], [0, 255], [255, 0], [255, 255]])])
    x = torch.zeros(1, 3, len(ctx), 256, dtype=torch.float64)
    x[0, 0] = LEVELS[ctx[:, 0]][:, None]
    x[0, 1] = LEVELS[ctx[:, 1]][:, None]
    x[0, 2] = LEVELS[None, :]
    pb = _channel_probs(x, params, k)[0, :, 2]  # [K, contexts, B]
    assert (pb.sum(-1) - 1).abs().max() < 1e-5


def test_pixel_log_prob_mixes_components_and_images_sum_their_pixels():
    """log p(pixel) = logsumexp_k(log pi_k + sum_c log p_{k,c}); log p(image) = sum of pixels."""
    params = _hard_params()
    x = torch.zeros(1, 3, 1, 256, dtype=torch.float64)
    x[0, 0, 0] = LEVELS
    x[0, 1], x[0, 2] = 0.2, -0.4
    lp = discretized_logistic_mixture_pixel_log_prob(x, params.expand(1, -1, 1, 256), 3)
    log_pi, log_p = discretized_logistic_channel_log_probs(x, params.expand(1, -1, 1, 256), 3)
    ref = torch.logsumexp(log_pi + log_p.sum(2), dim=1)
    assert torch.allclose(lp, ref)
    assert discretized_logistic_mixture_log_prob(x, params.expand(1, -1, 1, 256), 3).item() \
        == pytest.approx(lp.sum().item())


def _logistic_cdf(u):
    return 1.0 / (1.0 + math.exp(-u))


def test_single_component_matches_hand_computed_cdf_differences_and_edges():
    mu = [0.1, -0.2, 0.3]
    ls = [-2.0, -2.5, -1.5]
    a = [0.5, -0.25, 0.75]  # after tanh
    params = _params(1, [mu], [ls], [[math.atanh(v) for v in a]])

    def hand(r, g, b):
        mus = [mu[0], mu[1] + a[0] * r, mu[2] + a[1] * r + a[2] * g]
        total = 0.0
        for xc, m, s in zip((r, g, b), mus, (math.exp(v) for v in ls)):
            if xc == -1.0:
                total += math.log(_logistic_cdf((xc + 1 / 255 - m) / s))
            elif xc == 1.0:
                total += math.log(1 - _logistic_cdf((xc - 1 / 255 - m) / s))
            else:
                total += math.log(_logistic_cdf((xc + 1 / 255 - m) / s)
                                  - _logistic_cdf((xc - 1 / 255 - m) / s))
        return total

    lv = LEVELS.tolist()
    pixels = [(lv[140], lv[100], lv[170]), (-1.0, lv[3], 1.0), (1.0, -1.0, lv[128])]
    x = torch.tensor(pixels, dtype=torch.float64).T.reshape(1, 3, 1, 3)
    got = discretized_logistic_mixture_pixel_log_prob(x, params.expand(1, -1, 1, 3), 1)[0, 0]
    for i, pix in enumerate(pixels):
        assert got[i].item() == pytest.approx(hand(*pix), abs=1e-9)


def test_tiny_bins_fall_back_to_the_pdf_and_log_scales_clamp_at_minus_7():
    mu, ls = 0.0, -7.0
    params = _params(1, [[mu, 0, 0]], [[-20.0, 0, 0]], [[0, 0, 0]])  # clamps to -7
    x = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    x[0, 0] = LEVELS[160]  # ~ 32 bins from the mean: cdf difference far below 1e-5
    _, log_p = discretized_logistic_channel_log_probs(x, params, 1)
    s = math.exp(ls)
    u = (x[0, 0, 0, 0].item() - mu) / s
    log_pdf = u - ls - 2 * math.log1p(math.exp(u)) if u < 30 else -u - ls
    assert log_p[0, 0, 0, 0, 0].item() == pytest.approx(log_pdf + math.log(2 / 255), rel=1e-9)


def test_argmax_sampler_uses_the_largest_logit_and_the_greedy_mean_with_conditioning():
    means = [[0.1, 0.2, 0.3], [-0.5, 0.5, 0.25]]
    coeffs = [[0.0, 0.0, 0.0], [math.atanh(0.5), math.atanh(-0.5), math.atanh(0.5)]]
    params = _params(2, means, [[-3.0] * 3] * 2, coeffs, logits=[0.0, 0.1]).float()
    x = sample_discretized_logistic_mixture(params, 2, greedy=True)[0, :, 0, 0]
    r, g = -0.5, 0.5 + 0.5 * -0.5
    b = 0.25 - 0.5 * r + 0.5 * g
    assert x.tolist() == pytest.approx([r, g, b], abs=1e-6)
    # argmax also when sampling: the samples come from component 1 only (mean R = -0.5)
    many = params.expand(4000, -1, 1, 1)
    gen = torch.Generator().manual_seed(1)
    xs = sample_discretized_logistic_mixture(many, 2, generator=gen)[:, 0, 0, 0]
    assert abs(xs.mean().item() + 0.5) < 0.01
    # categorical sampling hits both components
    xs = sample_discretized_logistic_mixture(many, 2, mixture="categorical", generator=gen)
    assert (xs[:, 0] > -0.2).float().mean().item() == pytest.approx(0.475, abs=0.04)


def test_sampled_levels_follow_the_discretised_probabilities():
    params = _params(1, [[0.2, -0.1, 0.0]], [[-2.5, -3.0, -3.0]], [[0.4, 0.0, 0.0]])
    n = 20000
    gen = torch.Generator().manual_seed(2)
    xs = sample_discretized_logistic_mixture(params.expand(n, -1, 1, 1).float(), 1,
                                             generator=gen).double()
    idx = ((xs[:, 0, 0, 0] + 1) * 127.5).round().long()  # R levels
    freq = torch.bincount(idx, minlength=256).double() / n
    x = torch.zeros(1, 3, 1, 256, dtype=torch.float64)
    x[0, 0, 0] = LEVELS
    pr = _channel_probs(x, params, 1)[0, 0, 0, 0]
    assert 0.5 * (freq - pr).abs().sum().item() < 0.03  # total variation


@pytest.mark.slow
def test_brute_force_joint_over_all_256_cubed_values_sums_to_one():
    """The full joint of one pixel (16.7M values, three components); ~40-60 s on 2 cores."""
    params = _hard_params()
    total = 0.0
    n = 16
    for r0 in range(0, 256, n):
        x = torch.empty(n, 3, 256, 256, dtype=torch.float64)
        x[:, 0] = LEVELS[r0:r0 + n, None, None]
        x[:, 1] = LEVELS[None, :, None]
        x[:, 2] = LEVELS[None, None, :]
        lp = discretized_logistic_mixture_pixel_log_prob(x, params.expand(n, -1, 256, 256), 3)
        total += lp.exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)
