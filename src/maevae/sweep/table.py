"""The sweep's one result table (``results.md``, ``results.csv``) and its figures.

One row per variant × grid point; for each metric the mean and the sample standard deviation
(ddof = 1) over the seeds whose ``eval.json`` has it, and n. The values are read from each
run's ``eval.json`` through :func:`maevae.runs.results.read_results` (:data:`METRICS` says
where each one is). A metric no run of a row has is "n/a", never 0; with one value its std
is "n/a".
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

from maevae.errors import MaevaeError
from maevae.evaluate.markdown import lookup, mean_of
from maevae.runs.files import atomic_write_text
from maevae.runs.results import EVAL_FILE, EvalResults, read_results
from maevae.sweep.spec import RunSpec

__all__ = ["METRICS", "aggregate", "mean_std", "run_metrics", "write_figures",
           "write_tables"]


def _mean(stat) -> float | None:
    """The mean of an eval.json stat (a number or ``{"mean": ...}``) as a float, or None."""
    m = mean_of(stat)
    return None if m is None else float(m)


def _kmeans(k: int) -> Callable[[EvalResults], float | None]:
    return lambda r: _mean(lookup(r.representation.clustering, "kmeans", str(k), "acc_test"))


def _diag(key: str) -> Callable[[EvalResults], float | None]:
    return lambda r: _mean(lookup(r.representation.diagnostics, key))


# column key, heading, reader of one eval.json
METRICS: list[tuple[str, str, Callable[[EvalResults], float | None]]] = [
    ("nll", "NLL (IS)", lambda r: r.likelihood.nll),
    ("elbo", "ELBO", lambda r: r.statistics.elbo),
    ("kl", "KL", lambda r: r.statistics.kl),
    ("mi", "MI", _diag("mutual_information")),
    ("active_units", "AU", _diag("active_units")),
    ("mpd", "MPD", lambda r: r.statistics.mpd),
    ("std", "STD", lambda r: r.statistics.std),
    ("kmeans10", "K-means K=10", _kmeans(10)),
    ("kmeans20", "K-means K=20", _kmeans(20)),
    ("kmeans30", "K-means K=30", _kmeans(30)),
]


def _probe_metrics(results: list[EvalResults]) -> list[tuple[str, str, Callable]]:
    """One column per (classifier, label budget) that any run's ``probes.results`` has."""
    seen: dict[tuple[str, str], None] = {}
    for r in results:
        for name, per in (lookup(r.representation.probes, "results") or {}).items():
            for budget in per:
                seen[(name, budget)] = None

    def reader(name: str, budget: str):
        return lambda r: _mean(lookup(r.representation.probes, "results", name, budget,
                                      "acc_test"))

    return [(f"{n}@{b}", f"{n} {b}", reader(n, b)) for n, b in seen]


def mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample std with ddof = 1, n); std None for n < 2, both None for n = 0."""
    n = len(values)
    if n == 0:
        return None, None, 0
    mean = sum(values) / n
    if n < 2:
        return mean, None, 1
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), n


def _read(out: Path, run: RunSpec) -> EvalResults | None:
    path = out / run.run_id / EVAL_FILE
    if not path.exists():
        return None
    try:
        res = read_results(path)
    except MaevaeError:
        return None
    return res if res.likelihood.nll is not None else None


def run_metrics(out: Path, runs: list[RunSpec]) -> tuple[list[tuple], dict[str, dict]]:
    """The metric columns and, per run id with a finished evaluation, its metric values."""
    results = {run.run_id: r for run in runs if (r := _read(out, run)) is not None}
    cols = METRICS + _probe_metrics(list(results.values()))
    values = {rid: {key: get(r) for key, _, get in cols} for rid, r in results.items()}
    return cols, values


def aggregate(out: Path, runs: list[RunSpec]) -> tuple[list[tuple], list[dict]]:
    """The metric columns and one row per variant × grid point: ``variant``, ``point``,
    ``n`` (seeds with an evaluation) and ``(mean, std, n)`` per metric key."""
    cols, values = run_metrics(out, runs)
    groups: dict[tuple, list[RunSpec]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    rows = []
    for (variant, point), members in groups.items():
        done = [values[m.run_id] for m in members if m.run_id in values]
        row = {"variant": variant, "point": point, "n": len(done), "seeds": len(members)}
        for key, _, _ in cols:
            row[key] = mean_std([v[key] for v in done if v[key] is not None])
        rows.append(row)
    return cols, rows


def _fmt(v: float | None, key: str) -> str:
    if v is None:
        return "n/a"
    if key == "active_units":
        return f"{v:.1f}"
    if key.startswith("kmeans") or "@" in key:
        return f"{100 * v:.1f}"
    return f"{v:.2f}"


def _cell(stat: tuple, key: str, n_row: int) -> str:
    mean, std, n = stat
    if mean is None:
        return "n/a"
    text = _fmt(mean, key) + (f" ± {_fmt(std, key)}" if std is not None else " ± n/a")
    return text + (f" (n={n})" if n != n_row else "")


def write_tables(out: Path, name: str, runs: list[RunSpec], grid_keys: list[str]) -> list[dict]:
    """Write ``OUT/results.md`` and ``OUT/results.csv``; returns the rows."""
    cols, rows = aggregate(out, runs)
    heads = ["variant"] + grid_keys + ["n"] + [h for _, h, _ in cols]
    md = [f"# Sweep {name}: {len(runs)} run(s)", "",
          "Mean ± sample std (ddof = 1) over the seeds with a finished evaluation (n); "
          "NLL, ELBO, KL, MPD, STD, MI in nats per image; K-means and probe accuracies in % "
          "(test set). n/a: no run has the value (or one seed: no std). See docs/sweeps.md.",
          "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["variant"] + grid_keys + ["n", "seeds"]
               + [f"{k}_{s}" for k, _, _ in cols for s in ("mean", "std", "n")])
    for row in rows:
        point = dict(row["point"])
        grid_cells = [str(point.get(k, "")) for k in grid_keys]
        md.append("| " + " | ".join([row["variant"]] + grid_cells
                                    + [f"{row['n']}/{row['seeds']}"]
                                    + [_cell(row[k], k, row["n"]) for k, _, _ in cols]) + " |")
        w.writerow([row["variant"]] + grid_cells + [row["n"], row["seeds"]]
                   + [("" if x is None else repr(x)) for k, _, _ in cols for x in row[k]])
    atomic_write_text(out / "results.md", "\n".join(md) + "\n")
    atomic_write_text(out / "results.csv", buf.getvalue())
    return rows


def write_figures(out: Path, runs: list[RunSpec]) -> list[Path]:
    """``OUT/kl_vs_nll.png`` (KL against NLL, one point per run, coloured by variant) and
    ``OUT/kmeans_vs_nll.png`` (K-means K=10 test accuracy against NLL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, values = run_metrics(out, runs)
    variants = list(dict.fromkeys(r.variant for r in runs))
    written = []
    for fname, ykey, ylabel in (("kl_vs_nll.png", "kl", "KL (nats)"),
                                ("kmeans_vs_nll.png", "kmeans10",
                                 "K-means K=10 test accuracy (%)")):
        fig, ax = plt.subplots(figsize=(7, 4))
        plotted = 0
        for i, variant in enumerate(variants):
            pts = [(values[r.run_id]["nll"], values[r.run_id][ykey]) for r in runs
                   if r.variant == variant and r.run_id in values
                   and values[r.run_id][ykey] is not None]
            if ykey == "kmeans10":
                pts = [(x, 100 * y) for x, y in pts]
            if pts:
                ax.scatter(*zip(*pts), label=variant, color=f"C{i % 10}", s=24)
                plotted += len(pts)
        if not plotted:
            ax.text(0.5, 0.5, "no evaluated runs with this value", ha="center",
                    transform=ax.transAxes)
        else:
            # beside the axes: inside, it can hide points
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        ax.set_xlabel("test NLL (IS, nats)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel.split(' (')[0]} vs NLL, one point per run", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(out / fname)
    return written


