"""The options of the representation suite, checked before any expensive work.

``maevae eval --probes`` calls :func:`validate_probe_args` before the likelihood pass, so a
bad ``--labels`` or ``--runs`` fails at once in one line; given the run's split sizes
(``run.json`` "sizes"), it also fits the defaults to small data (:func:`fit_to_sizes`):
default label budgets and K-means K's that are not smaller than the training pool are
dropped with a note, explicit ones that do not fit are an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from maevae.errors import MaevaeError
from maevae.evaluate.codes import LATENTS
from maevae.evaluate.probes import label_subset

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_LABELS",
    "POOLS",
    "ProbePlan",
    "check_suite_args",
    "fit_to_sizes",
    "parse_label_budgets",
    "pool_size",
    "validate_budgets",
    "validate_probe_args",
]

DEFAULT_KS = (10, 20, 30)
DEFAULT_LABELS = "100,1000,all"
POOLS = ("train+val", "train")


@dataclass
class ProbePlan:
    """What the representation suite will run: label budgets, K-means K's, and the notes
    saying which defaults were dropped because the data is small."""

    labels: list
    ks: list[int]
    notes: list[str] = field(default_factory=list)


def pool_size(sizes: Sequence[int], pool: str = "train+val") -> int:
    """Training codes of ``pool`` from the (train, val, test) split sizes."""
    if pool not in POOLS:
        raise MaevaeError(f"pool {pool!r}: choose one of {', '.join(POOLS)}")
    return int(sizes[0]) + (int(sizes[1]) if pool == "train+val" else 0)


def fit_to_sizes(labels, ks, sizes: Sequence[int], pool: str = "train+val") -> ProbePlan:
    """Label budgets and K-means K's that fit a dataset of ``sizes`` (train, val, test).

    ``labels`` / ``ks`` ``None`` mean the defaults (``"100,1000,all"``, K = 10, 20, 30):
    a budget or K not smaller than the ``pool`` is dropped, with a note naming it. Given
    explicitly, a budget above the pool or a K above it is a one-line :class:`MaevaeError`,
    as is a test split of fewer than 3 images (the probes and the t-SNE need 3).
    """
    n_pool, n_test = pool_size(sizes, pool), int(sizes[2])
    if n_test < 3:
        raise MaevaeError(f"the run has only {n_test} test images: the probes and the t-SNE "
                          "need at least 3; train with more images or a larger "
                          "data.test_fraction")
    where = f"{n_pool} training codes ({pool} split)"
    notes: list[str] = []
    budgets = parse_label_budgets(DEFAULT_LABELS if labels is None else labels)
    too_big = [b for b in budgets if b != "all" and b > n_pool]
    if labels is not None and too_big:
        raise MaevaeError(f"--labels {too_big[0]}: the run has only {where}; use budgets "
                          f"up to {n_pool}, or 'all'")
    if labels is None:
        keep = [b for b in budgets if b == "all" or b < n_pool]
        if len(keep) < len(budgets):
            dropped = [str(b) for b in budgets if b not in keep]
            notes.append(f"label budget(s) {', '.join(dropped)} dropped: the run has only "
                         f"{where}; probing with {', '.join(map(str, keep))} labels")
        budgets = keep
    k_list = list(DEFAULT_KS if ks is None else ks)
    big_k = [k for k in k_list if k > n_pool]
    if ks is not None and big_k:
        raise MaevaeError(f"K-means K={big_k[0]} is larger than the {where}: use a smaller K")
    if ks is None:
        fit = [k for k in k_list if k < n_pool]
        if not fit:
            raise MaevaeError(f"the run has only {where}: K-means with the default K = "
                              f"{', '.join(map(str, k_list))} needs more; pass smaller ks")
        if len(fit) < len(k_list):
            notes.append(f"K-means K={', '.join(str(k) for k in k_list if k not in fit)} "
                         f"dropped: the run has only {where}")
        k_list = fit
    return ProbePlan(budgets, k_list, notes)


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


def validate_probe_args(latent: str = "mu", runs: int = 5, labels=None,
                        ks: Sequence[int] | None = None,
                        sizes: Sequence[int] | None = None, pool: str = "train+val",
                        labelled: bool | None = None):
    """Check the probe options without touching the model or the data.

    For command lines: call it before any long evaluation so that ``--labels 0``,
    ``--runs 0`` or ``--labels 1000`` on a 200-image dataset fails at once with a one-line
    :class:`MaevaeError`. Without ``sizes`` it returns the parsed label budgets (the
    defaults for ``labels=None``); with the run's (train, val, test) ``sizes`` it returns
    the :class:`ProbePlan` of :func:`fit_to_sizes`. ``labelled=False`` (``run.json``
    "labelled") is an error: the suite needs labels.
    """
    check_suite_args(latent, runs, DEFAULT_KS if ks is None else ks)
    if labelled is False:
        raise MaevaeError("the run's dataset has no labels (an image folder without class "
                          "subfolders): clustering accuracy and the probes need labels; drop "
                          "--probes, or train on a folder with one subfolder per class")
    if sizes is None:
        return parse_label_budgets(DEFAULT_LABELS if labels is None else labels)
    return fit_to_sizes(labels, ks, sizes, pool)


def check_suite_args(latent: str, runs, ks) -> list[int]:
    """``latent``, ``runs`` and the K-means ``ks`` checked; returns the K's as ints."""
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
    """Every budget can be drawn from ``labels`` (class-balanced when ``balanced``)."""
    for b in budgets:
        try:
            label_subset(labels, b, np.random.default_rng(0), balanced=balanced)
        except MaevaeError as e:
            raise MaevaeError(f"--labels {b}: {e}") from None
