"""Aggressive inference-network training (He et al., 2019, "Lagging Inference Networks and
Posterior Collapse in Variational Autoencoders", ICLR 2019, Algorithm 1).

While the phase is on (``train.aggressive``), every outer training step is preceded by an
inner loop that updates the encoder alone, with its own Adam, on fresh mini-batches, and the
outer step then updates only the decoder and the prior (:class:`~maevae.train.trainer.Trainer`
drops the encoder's gradients before the fused Adam step, so that optimizer leaves the
encoder's weights and moments untouched; the encoder enters it with fresh moments when the
phase ends).

* :class:`InnerStop` -- the inner loop's stopping rule, as in the authors' code: the losses
  of each window of ``check_every`` inner steps are summed; the loop stops after a window
  whose sum is larger than the previous window's (the authors' ``burn_pre_loss -
  burn_cur_loss < 0``; the first window is compared with +inf, so it never stops it), or
  after ``max_inner`` steps.
* :func:`run_inner_loop` -- the loop itself: loss -> gradients of the given parameters only
  (``torch.autograd.grad``) -> clip -> optimizer step, until :class:`InnerStop` says stop.
  A non-finite loss or gradient ends the loop without a step.
* :class:`AggressivePhase` -- the phase controller: after each epoch the approximate mutual
  information I_q on validation data (:func:`maevae.statistics.approximate_mutual_information`)
  is recorded; the phase ends at the first epoch whose I_q is below the previous epoch's
  (the first epoch is compared with 0, the authors' ``pre_mi = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["AggressivePhase", "InnerStop", "run_inner_loop"]


class InnerStop:
    """The inner loop's stopping rule, fed one loss per inner step (see the module text):
    :meth:`update` returns True when the loop must stop after the step just made."""

    def __init__(self, max_inner: int, check_every: int):
        if not 1 <= check_every <= max_inner:
            raise ValueError(f"need 1 <= check_every <= max_inner, got {check_every}, "
                             f"{max_inner}")
        self.max_inner, self.check_every = max_inner, check_every
        self.steps = 0
        self.window = 0.0  # the current window's loss sum
        self.previous = math.inf  # the last complete window's sum

    def update(self, loss: float) -> bool:
        """Record one inner step's loss; True: stop (the window sum rose, or max_inner)."""
        self.steps += 1
        self.window += loss
        if self.steps % self.check_every == 0:
            if self.window > self.previous:
                return True
            self.previous, self.window = self.window, 0.0
        return self.steps >= self.max_inner


def run_inner_loop(loss_at: Callable[[int], torch.Tensor], params: Sequence[torch.Tensor],
                   optimizer: torch.optim.Optimizer, max_inner: int, check_every: int,
                   grad_clip: float = 0.0) -> int:
    """Inner steps k = 0, 1, ...: ``loss_at(k)`` (a scalar with a graph) -> its gradient with
    respect to ``params`` only (nothing else's ``.grad`` is touched) -> total-norm clip at
    ``grad_clip`` (0: none) -> ``optimizer.step()``; stops by :class:`InnerStop`. Returns
    the number of optimizer steps made."""
    rule = InnerStop(max_inner, check_every)
    params = list(params)
    made = 0
    while True:
        loss = loss_at(made)
        if not bool(torch.isfinite(loss)):
            return made
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.detach()
        with_grad = [p for p in params if p.grad is not None]
        clip = grad_clip if grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(with_grad, clip))
        if not math.isfinite(norm):
            optimizer.zero_grad(set_to_none=True)
            return made
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        made += 1
        if rule.update(float(loss.detach())):
            return made


@dataclass
class AggressivePhase:
    """Whether the aggressive phase is still on, and the I_q of each epoch so far (saved in
    checkpoints; a checkpoint without it resumes as a fresh phase)."""
    active: bool = True
    mi: list[float] = field(default_factory=list)

    def end_epoch(self, mi: float) -> bool:
        """Record this epoch's I_q; True when it ends the phase (I_q fell below the previous
        epoch's, or below 0 at the first epoch: He et al.'s ``cur_mi - pre_mi < 0``)."""
        previous = self.mi[-1] if self.mi else 0.0
        self.mi.append(float(mi))
        if self.active and mi < previous:
            self.active = False
            return True
        return False

    def state(self) -> dict:
        """Plain data for state.json."""
        return {"active": self.active, "mi": list(self.mi)}

    @classmethod
    def from_state(cls, state: dict | None) -> AggressivePhase:
        """The phase a checkpoint holds; a fresh one when it holds none (older runs)."""
        if state is None:
            return cls()
        if not isinstance(state.get("active"), bool) or not isinstance(state.get("mi"), list):
            raise TypeError("aggressive")
        return cls(state["active"], [float(v) for v in state["mi"]])
