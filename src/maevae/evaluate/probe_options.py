"""The options of the representation suite, checked before any expensive work.

``maevae eval --probes`` calls :func:`validate_probe_args` before the likelihood pass, so a
bad ``--labels`` or ``--runs`` fails at once in one line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maevae.errors import MaevaeError
from maevae.evaluate.codes import LATENTS
from maevae.evaluate.probes import label_subset

__all__ = [
    "DEFAULT_KS",
    "check_suite_args",
    "parse_label_budgets",
    "validate_budgets",
    "validate_probe_args",
]

DEFAULT_KS = (10, 20, 30)


def parse_label_budgets(labels) -> list:
    """``"100,1000,all"`` (or a sequence) -> ``[100, 1000, "all"]``; duplicates dropped.

    Raises a one-line :class:`MaevaeError` for an empty list, a non-number, or a budget < 1.
    """
    if isinstance(labels, str):
        parts: list = [p.strip() for p in labels.split(",")]
        shown = labels
    elif isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        parts, shown = [labels], str(labels)
    else:
        parts = list(labels)
        shown = ",".join(str(p) for p in parts)
    hint = "give comma-separated label budgets, e.g. --labels 100,1000,all"
    out: list = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                raise MaevaeError(f"--labels {shown!r}: empty entry; {hint}")
            if p.lower() == "all":
                v = "all"
            else:
                try:
                    v = int(p)
                except ValueError:
                    raise MaevaeError(f"--labels {shown!r}: {p!r} is not a number of labels; "
                                      f"{hint}") from None
        elif isinstance(p, (int, np.integer)) and not isinstance(p, bool):
            v = int(p)
        else:
            raise MaevaeError(f"--labels {shown!r}: {p!r} is not a number of labels; {hint}")
        if v != "all" and v < 1:
            raise MaevaeError(f"--labels {shown}: a label budget must be at least 1 "
                              f"(got {v}); {hint}")
        if v not in out:
            out.append(v)
    if not out:
        raise MaevaeError(f"--labels {shown!r}: no budget given; {hint}")
    return out


def validate_probe_args(latent: str = "mu", runs: int = 5, labels="100,1000,all",
                        ks: Sequence[int] = DEFAULT_KS) -> list:
    """Check the probe options without touching the run; returns the parsed label budgets.

    For command lines: call it before any long evaluation so that ``--labels 0`` or
    ``--runs 0`` fails at once with a one-line :class:`MaevaeError`.
    """
    check_suite_args(latent, runs, ks)
    return parse_label_budgets(labels)


def check_suite_args(latent: str, runs, ks) -> list[int]:
    """Validate the probe options: ``latent`` one of the latent modes, ``runs`` >= 1 and
    the K-means ``ks`` positive integers; returns ``ks`` as ints, or raises one
    :class:`~maevae.errors.MaevaeError` line."""
    if latent not in LATENTS:
        raise MaevaeError(f"--latent {latent!r}: choose one of {', '.join(LATENTS)}")
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise MaevaeError(f"--runs {runs}: use at least 1 run (the paper uses 5)")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MaevaeError(f"K-means K={k!r}: use positive integers such as 10, 20, 30")
        out.append(int(k))
    if not out:
        raise MaevaeError("no K-means K given: use e.g. ks=(10, 20, 30)")
    return out


def validate_budgets(budgets: list, labels: np.ndarray, balanced: bool) -> None:
    """Check that every label budget in ``budgets`` can be drawn from ``labels``
    (``balanced``: the same number per class) before any encoding; one error line if not."""
    for b in budgets:
        try:
            label_subset(labels, b, np.random.default_rng(0), balanced=balanced)
        except MaevaeError as e:
            raise MaevaeError(f"--labels {b}: {e}") from None
