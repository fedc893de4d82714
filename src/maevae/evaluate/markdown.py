"""Markdown cells and tables: numbers, percentages, mean ± std, escaped text ("—" = missing)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "DASH",
    "cell_text",
    "is_num",
    "lookup",
    "mean_of",
    "num",
    "paper_pm",
    "pct",
    "pct_pm",
    "table",
]

DASH = "—"


def lookup(d, *path):
    """Nested lookup that returns None when any level is missing or not a mapping."""
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def is_num(x) -> bool:
    """True for a real number (not a bool) or a 0-d array / tensor."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) or (
        hasattr(x, "dtype") and getattr(x, "ndim", 1) == 0
    )


def num(x, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; ``nan`` / ``inf`` spelt out, a dash for no number."""
    if not is_num(x):
        return DASH
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def mean_of(stat):
    """Mean of a ``{"mean", "std", "values"}`` stat (or a bare number); None if missing."""
    if isinstance(stat, Mapping):
        stat = stat.get("mean")
    return stat if is_num(stat) else None


def pct(stat, digits: int = 1) -> str:
    """The mean of ``stat`` (a number or ``{"mean": ...}``) as a percentage, or a dash."""
    m = mean_of(stat)
    return DASH if m is None else num(100.0 * float(m), digits)


def pct_pm(stat, digits: int = 1) -> str:
    """``mean ± std`` of ``stat`` as percentages (the mean alone without a std), or a dash."""
    m = mean_of(stat)
    if m is None:
        return DASH
    s = stat.get("std") if isinstance(stat, Mapping) else None
    if not is_num(s):
        return num(100.0 * float(m), digits)
    return f"{num(100.0 * float(m), digits)} ± {num(100.0 * float(s), digits)}"


def paper_pm(cell) -> str:
    """A paper cell ``{"mean": m, "std": s}`` as ``m ± s`` with one decimal, or a dash."""
    if not isinstance(cell, Mapping) or not is_num(cell.get("mean")):
        return DASH
    return f"{num(cell['mean'], 1)} ± {num(cell.get('std'), 1)}"


def cell_text(text: str) -> str:
    """``text`` made safe for a Markdown table cell (``|`` escaped, newlines as spaces)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(cell_text(h) for h in header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cell_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
