"""The Bernoulli likelihood of binary images (SPEC §1.2), in nats."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bernoulli_log_prob"]


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over all but the first axis; -> [N]."""
    ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return ll.flatten(1).sum(1)
