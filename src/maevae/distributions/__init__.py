"""Closed-form densities as small pure functions (SPEC §1.1, §1.2, §1.7, §2), in nats.

* :mod:`.gaussian`: the diagonal-Gaussian posterior, Gaussian and standard-normal
  log-densities, the analytic KL to N(0, I);
* :mod:`.bernoulli`: the Bernoulli likelihood of binary images;
* :mod:`.logistic_mixture`: the discretised logistic mixture over 8-bit RGB (PixelCNN++);
* :mod:`.mmd`: the maximum mean discrepancy between two samples (InfoVAE).

Every public name is re-exported here: ``from maevae.distributions import X``.
"""

from maevae.distributions.bernoulli import bernoulli_log_prob
from maevae.distributions.gaussian import (
    LOG_2PI,
    VAR_EPS,
    DiagGaussian,
    bn_vae_kl_lower_bound,
    gaussian_log_prob,
    kl_diag_gaussian_standard_normal,
    standard_normal_log_prob,
)
from maevae.distributions.logistic_mixture import (
    CDF_DELTA_MIN,
    HALF_BIN,
    LOG_BIN,
    MIN_LOG_SCALE,
    discretized_logistic_channel_log_probs,
    discretized_logistic_mixture_log_prob,
    discretized_logistic_mixture_pixel_log_prob,
    sample_discretized_logistic_mixture,
    split_mixture_params,
)
from maevae.distributions.mmd import (
    MMD_ESTIMATORS,
    MMD_KERNELS,
    default_mmd_bandwidth,
    mmd2,
    mmd_kernel,
)

__all__ = [
    "CDF_DELTA_MIN",
    "HALF_BIN",
    "LOG_2PI",
    "LOG_BIN",
    "MIN_LOG_SCALE",
    "MMD_ESTIMATORS",
    "MMD_KERNELS",
    "VAR_EPS",
    "DiagGaussian",
    "bernoulli_log_prob",
    "bn_vae_kl_lower_bound",
    "default_mmd_bandwidth",
    "discretized_logistic_channel_log_probs",
    "discretized_logistic_mixture_log_prob",
    "discretized_logistic_mixture_pixel_log_prob",
    "gaussian_log_prob",
    "kl_diag_gaussian_standard_normal",
    "mmd2",
    "mmd_kernel",
    "sample_discretized_logistic_mixture",
    "split_mixture_params",
    "standard_normal_log_prob",
]
