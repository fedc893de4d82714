"""Discretised logistic mixture over 8-bit RGB pixels (PixelCNN++; SPEC §1.7).

Pixels are scaled to [-1, 1]; the 256 levels sit at ``-1 + 2k/255`` (bin width 2/255).
The network emits ``10 * nmix`` channels per pixel, laid out as::

    [0, nmix)          mixture logits pi_k (log-softmax)
    [nmix, 4nmix)      means mu_{k,c},            viewed as nmix x 3
    [4nmix, 7nmix)     log-scales log s_{k,c},    viewed as nmix x 3, clamped at min -7
    [7nmix, 10nmix)    coefficients a_{k,c},      viewed as nmix x 3, passed through tanh

Within one component the three colour channels are autoregressive through the means::

    mu_R' = mu_R,   mu_G' = mu_G + a_0 x_R,   mu_B' = mu_B + a_1 x_R + a_2 x_G

and each channel is a logistic discretised to its bin::

    x = -1 (x < -1 + 1/255):  log F(x + 1/255)
    x = +1 (x >  1 - 1/255):  log(1 - F(x - 1/255))
    otherwise:                log(F(x + 1/255) - F(x - 1/255)),
                              or log f(x) + log(2/255) when that difference is < 1e-5

with F, f the logistic CDF and pdf. A pixel's log-probability is
``logsumexp_k(log pi_k + sum_c log p_{k,c})``; an image's is the sum over pixels, in nats.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "CDF_DELTA_MIN",
    "HALF_BIN",
    "LOG_BIN",
    "MIN_LOG_SCALE",
    "discretized_logistic_channel_log_probs",
    "discretized_logistic_mixture_log_prob",
    "discretized_logistic_mixture_pixel_log_prob",
    "sample_discretized_logistic_mixture",
    "split_mixture_params",
]

HALF_BIN = 1.0 / 255.0  # bin half-width in [-1, 1] units
LOG_BIN = math.log(2.0 / 255.0)  # log bin width (pdf fallback)
MIN_LOG_SCALE = -7.0
CDF_DELTA_MIN = 1e-5


def split_mixture_params(params: torch.Tensor, nmix: int):
    """[N, 10 nmix, H, W] -> logit [N, K, H, W], mean, log_scale, coeff [N, K, 3, H, W]."""
    n, ch, h, w = params.shape
    if ch != 10 * nmix:
        raise ValueError(f"expected {10 * nmix} parameter channels for nmix={nmix}, got {ch}")
    logit = params[:, :nmix]  # [N, K, H, W]
    mean = params[:, nmix:4 * nmix].reshape(n, nmix, 3, h, w)  # [N, K, 3, H, W]
    log_scale = params[:, 4 * nmix:7 * nmix].reshape(n, nmix, 3, h, w).clamp(min=MIN_LOG_SCALE)
    coeff = torch.tanh(params[:, 7 * nmix:10 * nmix].reshape(n, nmix, 3, h, w))
    return logit, mean, log_scale, coeff


def discretized_logistic_channel_log_probs(x: torch.Tensor, params: torch.Tensor, nmix: int):
    """Per-component, per-channel conditional log-probabilities.

    x [N, 3, H, W] in [-1, 1], params [N, 10 nmix, H, W] -> (log pi [N, K, H, W],
    log p_{k,c}(x_c | x_<c) [N, K, 3, H, W]).
    """
    logit, mean, log_scale, coeff = split_mixture_params(params, nmix)
    xr, xg = x[:, None, 0], x[:, None, 1]  # [N, 1, H, W]
    mu = torch.stack([mean[:, :, 0],
                      mean[:, :, 1] + coeff[:, :, 0] * xr,
                      mean[:, :, 2] + coeff[:, :, 1] * xr + coeff[:, :, 2] * xg],
                     dim=2)  # [N, K, 3, H, W]
    xc = x.unsqueeze(1)  # [N, 1, 3, H, W]
    centered = xc - mu
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + HALF_BIN)
    min_in = inv_s * (centered - HALF_BIN)
    mid_in = inv_s * centered
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log F(x + 1/255), for x = -1
    log_one_minus_cdf_min = -F.softplus(min_in)  # log(1 - F(x - 1/255)), for x = 1
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)  # log f(x)
    interior = torch.where(cdf_delta > CDF_DELTA_MIN,
                           torch.log(cdf_delta.clamp(min=1e-12)),
                           log_pdf_mid + LOG_BIN)
    log_p = torch.where(xc < -1.0 + HALF_BIN, log_cdf_plus,
                        torch.where(xc > 1.0 - HALF_BIN, log_one_minus_cdf_min, interior))
    return torch.log_softmax(logit, dim=1), log_p


def discretized_logistic_mixture_pixel_log_prob(x: torch.Tensor, params: torch.Tensor,
                                                nmix: int) -> torch.Tensor:
    """log p(x) per pixel: x [N, 3, H, W] in [-1, 1], params [N, 10 nmix, H, W] -> [N, H, W]."""
    log_pi, log_p = discretized_logistic_channel_log_probs(x, params, nmix)
    return torch.logsumexp(log_p.sum(2) + log_pi, dim=1)  # [N, H, W]


def discretized_logistic_mixture_log_prob(x: torch.Tensor, params: torch.Tensor,
                                          nmix: int) -> torch.Tensor:
    """log p(x) per image, summed over pixels: [N, 3, H, W], [N, 10 nmix, H, W] -> [N]."""
    return discretized_logistic_mixture_pixel_log_prob(x, params, nmix).flatten(1).sum(1)


def sample_discretized_logistic_mixture(
        params: torch.Tensor, nmix: int, greedy: bool = False,
        mixture: Literal["argmax", "categorical"] = "argmax",
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw x [N, 3, H, W] in [-1, 1] from params [N, 10 nmix, H, W].

    ``mixture="argmax"`` (the authors' rule, SPEC §6 row 23) picks the component with the
    largest logit even when sampling; ``"categorical"`` samples it (Gumbel-max). The value
    is then mean + logistic noise (``greedy``: the mean itself), with the channel
    conditioning applied to the already clamped R and G, and clamped to [-1, 1]. Values
    are not snapped to the 256-level grid (as in the authors' code).
    """
    logit, mean, log_scale, coeff = split_mixture_params(params, nmix)
    if mixture == "categorical":
        u = torch.rand(logit.shape, generator=generator, device=logit.device, dtype=logit.dtype)
        logit = logit - torch.log(-torch.log(u.clamp(1e-5, 1 - 1e-5)))
    elif mixture != "argmax":
        raise ValueError(f"mixture must be 'argmax' or 'categorical', got {mixture!r}")
    k = logit.argmax(dim=1)  # [N, H, W]
    idx = k[:, None, None].expand(-1, 1, 3, -1, -1)  # [N, 1, 3, H, W]
    mu = mean.gather(1, idx)[:, 0]  # [N, 3, H, W]
    ls = log_scale.gather(1, idx)[:, 0]
    a = coeff.gather(1, idx)[:, 0]
    if greedy:
        v = mu
    else:
        u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = u.clamp(1e-5, 1 - 1e-5)
        v = mu + ls.exp() * (torch.log(u) - torch.log1p(-u))
    r = v[:, 0].clamp(-1, 1)
    g = (v[:, 1] + a[:, 0] * r).clamp(-1, 1)
    b = (v[:, 2] + a[:, 1] * r + a[:, 2] * g).clamp(-1, 1)
    return torch.stack([r, g, b], dim=1)
