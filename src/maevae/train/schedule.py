"""The authors' learning-rate schedule and stopping rule (SPEC §3.2).

* Per-iteration exponential decay: lr = base · decay^(iterations since the last reset).
* After each epoch the EMA model's validation ELBO is compared with the best so far:
  improved -> patience 0; else if patience >= ``patience`` -> halve the *current* lr,
  make a fresh optimizer (the trainer does that), patience 0, decays += 1; else patience += 1.
* Stop at ``max_decays`` halvings or when lr < lr0 · ``min_lr_ratio``.
``lr_schedule="constant"`` keeps lr0 and never halves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from maevae.config import TrainConfig

__all__ = ["Schedule"]


@dataclass
class Schedule:
    """The learning rate: per-iteration exponential decay from ``base`` (or constant),
    halved after ``patience_limit`` epochs without a better validation ELBO; stops after
    ``max_decays`` halvings or below ``lr0 × min_lr_ratio``."""
    lr0: float
    decay: float
    patience_limit: int
    max_decays: int
    min_lr_ratio: float
    constant: bool = False
    base: float = 0.0
    iters: int = 0  # since the last reset
    patience: int = 0
    decays: int = 0
    best: float = float("inf")

    @classmethod
    def from_config(cls, t: TrainConfig) -> Schedule:
        """The schedule of a ``train`` config section."""
        return cls(t.lr, t.lr_decay, t.patience, t.max_decays, t.min_lr_ratio,
                   t.lr_schedule == "constant", base=t.lr)

    def lr(self) -> float:
        """The learning rate now."""
        return self.base if self.constant else self.base * self.decay ** self.iters

    def step(self) -> None:
        """Count one optimizer step."""
        self.iters += 1

    def end_epoch(self, val_elbo: float) -> tuple[bool, bool]:
        """Record a validation ELBO; return (improved, reset_optimizer)."""
        if val_elbo < self.best:
            self.best, self.patience = val_elbo, 0
            return True, False
        if self.constant:
            return False, False
        if self.patience >= self.patience_limit:
            self.base, self.iters = self.lr() / 2, 0
            self.patience, self.decays = 0, self.decays + 1
            return False, True
        self.patience += 1
        return False, False

    def should_stop(self) -> str | None:
        """Why training should stop (a sentence), or None."""
        if self.decays >= self.max_decays:
            return f"learning rate halved {self.decays} times"
        if self.lr() < self.lr0 * self.min_lr_ratio:
            return f"learning rate {self.lr():.3g} fell below lr0 × {self.min_lr_ratio}"
        return None

    def state(self) -> dict:
        """Every field as plain data (for a checkpoint)."""
        return asdict(self)

    def load_state(self, state: dict) -> None:
        """Restore the fields from :meth:`state`."""
        for k, v in state.items():
            setattr(self, k, v)
