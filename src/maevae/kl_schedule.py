"""The weight beta_t of the KL term at optimizer step t: constant, linear warm-up or cyclical.

Posterior-collapse remedies that reweight the KL in the training loss (never in the logged
or validated ELBO, which stays recon + KL)::

    off:       beta_t = beta
    linear:    beta_t = beta * min(1, t / T)                      (Bowman et al., 2016)
    cyclical:  tau = (t mod L) / L,  beta_t = beta * min(1, tau / R)   (Fu et al., 2019)

with beta = ``objective.kl_weight``, T = L = ``objective.kl_anneal_steps``, R =
``objective.kl_cycle_ratio`` and t the number of optimizer steps taken before this one
(0 at the first step). With ``objective.kl_cycles`` = M set, the cyclical schedule holds
beta_t = beta from t = M * L on (Fu et al.'s M cycles over a budget of M * L steps).

A pure function of the step, so a resumed run needs no extra state.
"""

from __future__ import annotations

from maevae.config import ObjectiveConfig

__all__ = ["kl_weight"]


def kl_weight(cfg: ObjectiveConfig, step: int) -> float:
    """beta_t for optimizer step ``step`` (0-based: the steps taken before it); see the
    module docstring for the linear (Bowman et al., 2016, "Generating Sentences from a
    Continuous Space") and cyclical (Fu et al., 2019, "Cyclical Annealing Schedule")
    schedules."""
    beta = cfg.kl_weight
    if cfg.kl_anneal == "off":
        return beta
    length = cfg.kl_anneal_steps
    if cfg.kl_anneal == "linear":
        return beta * min(1.0, step / length)
    if cfg.kl_cycles is not None and step >= cfg.kl_cycles * length:
        return beta
    tau = (step % length) / length
    return beta * min(1.0, tau / cfg.kl_cycle_ratio)
