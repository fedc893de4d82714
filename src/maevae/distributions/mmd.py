"""Maximum mean discrepancy between two samples (InfoVAE / MMD-VAE, Zhao et al., 2017).

For samples x_1..x_n ~ q and y_1..y_m ~ p in R^D and a kernel k::

    biased   (V-statistic):  1/n^2 sum_ij k(x_i, x_j) + 1/m^2 sum_ij k(y_i, y_j)
                             - 2/(nm) sum_ij k(x_i, y_j)
    unbiased (U-statistic):  1/(n(n-1)) sum_{i != j} k(x_i, x_j)
                             + 1/(m(m-1)) sum_{i != j} k(y_i, y_j) - 2/(nm) sum_ij k(x_i, y_j)

(Gretton et al., 2012, Eq. 3 and Lemma 6). The biased form is >= 0 and 0 for equal samples;
the unbiased one can be negative. Kernels, with C the bandwidth::

    rbf:  k(x, y) = exp(-||x - y||^2 / C)
    imq:  k(x, y) = C / (C + ||x - y||^2)        (inverse multiquadratic)

The default C = 2 D sigma_p^2 with sigma_p = 1 (a standard normal prior): the rule of the
Wasserstein auto-encoder (Tolstikhin et al., 2018, §4), used here for both kernels.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["MMD_ESTIMATORS", "MMD_KERNELS", "default_mmd_bandwidth", "mmd2", "mmd_kernel"]

MMD_KERNELS = ("imq", "rbf")
MMD_ESTIMATORS = ("unbiased", "biased")


def default_mmd_bandwidth(latent_dim: int, prior_var: float = 1.0) -> float:
    """C = 2 D sigma_p^2 (Tolstikhin et al., 2018): 64 for D = 32 and a N(0, I) prior."""
    return 2.0 * latent_dim * prior_var


def mmd_kernel(x: torch.Tensor, y: torch.Tensor, kernel: Literal["imq", "rbf"],
               bandwidth: float) -> torch.Tensor:
    """The kernel matrix k(x_i, y_j): x [n, D], y [m, D] -> [n, m] (see the module)."""
    sq = (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)  # [n, m]
    if kernel == "rbf":
        return torch.exp(-sq / bandwidth)
    if kernel == "imq":
        return bandwidth / (bandwidth + sq)
    raise ValueError(f"unknown kernel {kernel!r}; allowed: {', '.join(MMD_KERNELS)}")


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Literal["imq", "rbf"] = "imq",
         bandwidth: float | None = None,
         estimator: Literal["unbiased", "biased"] = "unbiased") -> torch.Tensor:
    """The squared MMD between samples x [n, D] and y [m, D] (0-d tensor, differentiable);
    ``bandwidth`` None = :func:`default_mmd_bandwidth` of D. The unbiased estimator needs
    n, m >= 2."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd2: x and y must be [n, D] and [m, D], got {list(x.shape)} and "
                         f"{list(y.shape)}")
    c = default_mmd_bandwidth(x.shape[1]) if bandwidth is None else bandwidth
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = mmd_kernel(x, x, kernel, c), mmd_kernel(y, y, kernel, c), \
        mmd_kernel(x, y, kernel, c)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()
    if estimator != "unbiased":
        raise ValueError(f"unknown estimator {estimator!r}; allowed: {', '.join(MMD_ESTIMATORS)}")
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples of each, got {n} and {m}")
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return xx + yy - 2.0 * kxy.mean()
