"""Evaluating a trained run: the IS log-likelihood, representation probes, figures, reports
and the comparison of runs. Built on ``runs`` (and ``inference``); never imports ``train``.
"""

__all__: list[str] = []
