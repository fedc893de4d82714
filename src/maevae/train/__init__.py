"""Training a run: the trainer, its learning-rate schedule, the EMA of the weights and the
multi-process (``torchrun``) helpers. Built on ``runs``; never imports ``evaluate``.
"""

__all__: list[str] = []
