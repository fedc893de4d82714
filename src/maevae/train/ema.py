"""Exponential moving average ("Polyak") shadow of the parameters (SPEC §1.0).

shadow <- shadow + (1 - a_t) (theta - shadow) after every successful step, with
a_t = decay, or min(decay, (1 + t) / (10 + t)) when ``warmup`` is on (t = EMA updates so
far). Only parameters are averaged; buffers (masks) are copied once, except the running
statistics of batch normalisations (BN-VAE), which are copied from the model at every
update. The shadow is a frozen copy of the model used for all evaluation and for the saved
"best" model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """An exponential moving average of a model's parameters (``shadow``, in eval mode),
    with the optional warm-up rate min(decay, (1 + n) / (10 + n)) after n updates."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup = decay, warmup
        self.updates = 0
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self._bn_buffers = {f"{name}.{b}" if name else b for name, m in model.named_modules()
                            if isinstance(m, nn.modules.batchnorm._BatchNorm)
                            for b, _ in m.named_buffers(recurse=False)}

    def rate(self) -> float:
        """The decay of the next update."""
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- rate·shadow + (1 - rate)·model, parameter by parameter."""
        a = self.rate()
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach(), 1.0 - a)
        if self._bn_buffers:
            live = dict(model.named_buffers())
            for name, s in self.shadow.named_buffers():
                if name in self._bn_buffers:
                    s.copy_(live[name])
        self.updates += 1

    def state(self) -> dict:
        """The EMA's counters as plain data (for a checkpoint)."""
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup}

    def load_state(self, state: dict) -> None:
        """Restore the update count from :meth:`state` (the shadow weights load separately)."""
        self.updates = int(state["updates"])
