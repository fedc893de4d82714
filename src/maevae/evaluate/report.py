"""Markdown reports of evaluated runs, laid out like the paper's tables.

* Table 4 layout (density): RE, KL, MPD, STD, L_elbo, NLL in nats (+ bits/dim for colour).
* Table 2 layout (representation): K-means K = 10/20/30, KNN 100/1000/all, Linear
  (logistic regression) 100/1000/all, accuracies in % with one decimal.
* Table 5 layout: SVM-Linear and SVM-RBF 100/1000/all as mean ± std (%).

The evaluation dict read here (keys may be missing; a missing number renders as "—")::

    {"nll": float, "nll_stderr": float, "elbo": float, "recon": float, "kl": float,
     "mpd": float, "std": float, "nll_samples": int, "test_copies": int,
     "bits_per_dim": float | None,
     "clustering": <clustering_suite output, see maevae.evaluate.clustering>,
     "probes": <probe_suite output, see maevae.evaluate.probes>,
     "diagnostics": {"active_units": int, "mutual_information": float,
                     "kl_per_dim": [float, ...], "mpd_512": float, "std_512": float}}

Table 4's MPD/STD columns read ``mpd``/``std`` and fall back to ``diagnostics.mpd_512`` /
``diagnostics.std_512``. Our accuracies are fractions and are shown ×100; the paper's
numbers (:mod:`maevae.evaluate.paper_numbers`) are already in % and appear in rows whose
label ends in "(paper)".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from maevae.errors import MaevaeError
from maevae.evaluate.markdown import (
    DASH,
    cell_text,
    is_num,
    lookup,
    mean_of,
    num,
    paper_pm,
    pct,
    pct_pm,
    table,
)
from maevae.evaluate.paper_numbers import paper_entry
from maevae.statistics import NA

__all__ = ["render_comparison", "render_representation_tables", "render_run_report"]

_BUDGETS = ("100", "1000", "all")
_BUDGET_TITLES = {"100": "100", "1000": "1000", "all": "All"}
_KS = ("10", "20", "30")
_T4_COLS = ("RE", "KL", "MPD", "STD", "L_elbo", "NLL")
_PROBE_TITLES = {
    "knn": "KNN (k=10)",
    "logreg": "Linear (logistic regression)",
    "svm_linear": "SVM-Linear",
    "svm_rbf": "SVM-RBF",
    "svm_linear_libsvm": "SVM-Linear (libsvm, one-vs-one)",
}


# ---- rows in the paper's layouts ------------------------------------------------------------


def _mpd_std(ev) -> tuple:
    mpd = ev.get("mpd") if is_num(ev.get("mpd")) else lookup(ev, "diagnostics", "mpd_512")
    std = ev.get("std") if is_num(ev.get("std")) else lookup(ev, "diagnostics", "std_512")
    return mpd, std


def _t4_row(name: str, ev: Mapping, with_bpd: bool) -> list[str]:
    mpd, std = _mpd_std(ev)
    # null in eval.json: no test batch was large enough for the statistic (n/a, not missing)
    row = [name, num(ev.get("recon")), num(ev.get("kl")),
           NA if mpd is None and "mpd" in ev else num(mpd),
           NA if std is None and "std" in ev else num(std),
           num(ev.get("elbo")), num(ev.get("nll"))]
    if with_bpd:
        row.append(num(ev.get("bits_per_dim"), 3))
    return row


def _t4_paper_row(entry: Mapping, with_bpd: bool) -> list[str] | None:
    t4, t1, t3 = entry.get("table4"), entry.get("table1"), entry.get("table3")
    if not (t4 or t1 or (t3 and with_bpd)):
        return None
    src = t4 or {}
    kl = src.get("kl", lookup(t1, "kl"))
    nll = src.get("nll", lookup(t1, "nll"))
    row = [f"{entry['label']} (paper)", num(src.get("re")), num(kl), num(src.get("mpd")),
           num(src.get("std")), num(src.get("elbo")), num(nll)]
    if with_bpd:
        row.append(num(lookup(t3, "bits_per_dim"), 2))
    return row


def _t2_row(name: str, ev: Mapping) -> list[str]:
    row = [name]
    row += [pct(lookup(ev, "clustering", "kmeans", k, "acc_test")) for k in _KS]
    for clf in ("knn", "logreg"):
        row += [pct(lookup(ev, "probes", "results", clf, b, "acc_test")) for b in _BUDGETS]
    return row


def _t2_paper_row(entry: Mapping) -> list[str] | None:
    t2 = entry.get("table2")
    if not t2:
        return None
    row = [f"{entry['label']} (paper)"]
    row += [num(lookup(t2, "kmeans", k), 1) for k in _KS]
    for clf in ("knn", "logreg"):
        row += [num(lookup(t2, clf, b), 1) for b in _BUDGETS]
    return row


def _t5_row(name: str, ev: Mapping) -> list[str]:
    row = [name]
    for clf in ("svm_linear", "svm_rbf"):
        row += [pct_pm(lookup(ev, "probes", "results", clf, b, "acc_test")) for b in _BUDGETS]
    return row


def _t5_paper_row(entry: Mapping) -> list[str] | None:
    t5 = entry.get("table5")
    if not t5:
        return None
    row = [f"{entry['label']} (paper)"]
    for clf in ("svm_linear", "svm_rbf"):
        row += [paper_pm(lookup(t5, clf, b)) for b in _BUDGETS]
    return row


def _t4_header(with_bpd: bool) -> list[str]:
    return ["Model", *_T4_COLS] + (["bits/dim"] if with_bpd else [])


_T2_HEADER = (["Model"] + [f"K-means K={k}" for k in _KS]
              + [f"KNN {_BUDGET_TITLES[b]}" for b in _BUDGETS]
              + [f"Linear {_BUDGET_TITLES[b]}" for b in _BUDGETS])
_T5_HEADER = (["Model"] + [f"SVM-Linear {_BUDGET_TITLES[b]}" for b in _BUDGETS]
              + [f"SVM-RBF {_BUDGET_TITLES[b]}" for b in _BUDGETS])


def _diag_row(name: str, ev: Mapping) -> list[str]:
    d = ev.get("diagnostics") if isinstance(ev.get("diagnostics"), Mapping) else {}
    kl = d.get("kl_per_dim")
    au = d.get("active_units")
    n_dims = len(kl) if isinstance(kl, Sequence) else None
    au_txt = DASH if not is_num(au) else (f"{int(au)}/{n_dims}" if n_dims else str(int(au)))
    kl_sum = sum(float(v) for v in kl) if isinstance(kl, Sequence) and kl else None
    return [name, au_txt, num(d.get("mutual_information")), num(kl_sum),
            num(d.get("mpd_512")), num(d.get("std_512"))]


_DIAG_HEADER = ["Model", "active units", "I(x;z) (nats)", "Σ_d KL(q‖N(0,1)) (nats)",
                "MPD (512)", "STD (512)"]


# ---- details of one run ---------------------------------------------------------------------


def _clustering_details(cl: Mapping) -> list[str]:
    if not isinstance(cl, Mapping) or not isinstance(cl.get("kmeans"), Mapping):
        return []
    rows = []
    for k, e in cl["kmeans"].items():
        rows.append([f"K={k}", pct_pm(e.get("acc_test")), pct_pm(e.get("acc_train")),
                     pct_pm(e.get("acc_test_majority")), num(mean_of(e.get("nmi_test")), 3),
                     num(mean_of(e.get("ari_test")), 3), num(e.get("wall_time_s"), 1)])
    out = ["### K-means clustering (all metrics, mean ± std over runs)", "",
           table(["K", "test acc (nearest sample)", "train acc (nearest sample)",
                   "test acc (majority)", "NMI (test)", "ARI (test)", "time (s)"], rows)]
    h = cl.get("hungarian")
    if isinstance(h, Mapping):
        out += ["", f"Hungarian accuracy, K={h.get('k', DASH)}: test {pct_pm(h.get('acc_test'))}"
                f" %, train {pct_pm(h.get('acc_train'))} %."]
    p = cl.get("protocol")
    if isinstance(p, Mapping):
        out += ["", f"Protocol: K-means ({p.get('algorithm', DASH)}, "
                f"n_init={p.get('n_init', DASH)}) fit on {p.get('n_train', DASH)} "
                f"{p.get('fit_on', 'train')} codes, scored on "
                f"{p.get('n_test', DASH)} {p.get('scored_on', 'test')} codes; cluster label = "
                f"{p.get('labelling', DASH)}; {p.get('runs', DASH)} runs."]
    return out


def _probe_details(pr: Mapping) -> list[str]:
    res = pr.get("results") if isinstance(pr, Mapping) else None
    if not isinstance(res, Mapping) or not res:
        return []
    budgets: list[str] = []
    for per_clf in res.values():
        for b in per_clf:
            if b not in budgets:
                budgets.append(b)
    rows = []
    for clf, per_clf in res.items():
        row = [_PROBE_TITLES.get(clf, clf)]
        for b in budgets:
            e = per_clf.get(b, {})
            t = lookup(e, "time_s", "mean")
            cell = pct_pm(e.get("acc_test"))
            if cell != DASH and is_num(t):
                cell += f" ({float(t):.1f} s)" if float(t) >= 1 else f" ({float(t):.2f} s)"
            if e.get("converged") is False:
                cell += " [not converged]"
            row.append(cell)
        rows.append(row)
    out = ["### Label-budget probes (test accuracy %, mean ± std; wall time per run)", "",
           table(["Classifier"] + [f"{_BUDGET_TITLES.get(b, b)} labels" for b in budgets], rows)]
    p = pr.get("protocol")
    if isinstance(p, Mapping):
        out += ["", f"Protocol: {'class-balanced' if p.get('balanced') else 'uniform'} labelled "
                f"subsets, {p.get('runs', DASH)} runs per budget (one for 'all'), "
                f"{'standardized' if p.get('standardize') else 'raw'} codes; "
                f"{p.get('n_train', DASH)} training / {p.get('n_test', DASH)} test codes."]
    return out


def _with_paper(own: list[str], entry: Mapping | None, paper) -> list[list[str]]:
    rows = [own]
    if entry is not None:
        prow = paper(entry)
        if prow is not None:
            rows.append(prow)
    return rows


def render_run_report(
    run_name: str,
    eval_dict: Mapping,
    figures: Mapping[str, str] | None = None,
    notes: Sequence[str] | None = None,
    paper_key: str | None = None,
) -> str:
    """Markdown report of one evaluated run (layout of ``eval_dict`` in the module docstring).

    ``figures`` maps a caption to an image path (written as given, so pass paths relative
    to where the Markdown file will live); ``notes`` become a bullet list. ``paper_key``
    (see ``paper_numbers.PAPER_KEYS``) adds the paper's published row, labelled "(paper)",
    under the run's row in each table where the paper has one.
    """
    if not isinstance(eval_dict, Mapping):
        raise MaevaeError(f"the evaluation result must be a dict, got {type(eval_dict).__name__}")
    ev = eval_dict
    entry = None if paper_key is None else paper_entry(paper_key)
    with_bpd = is_num(ev.get("bits_per_dim"))
    out = [f"# Evaluation report: {run_name}", ""]
    out += ["## Density estimation (paper Table 4 layout, nats)", "",
            table(_t4_header(with_bpd), _with_paper(
                _t4_row(run_name, ev, with_bpd), entry, lambda e: _t4_paper_row(e, with_bpd))),
            ""]
    details = []
    if is_num(ev.get("nll")):
        se = f" ± {num(ev.get('nll_stderr'), 3)} (std. error)" if is_num(
            ev.get("nll_stderr")) else ""
        details.append(f"NLL {num(ev.get('nll'))}{se}")
    if is_num(ev.get("nll_samples")):
        details.append(f"{int(ev['nll_samples'])} importance samples")
    if is_num(ev.get("test_copies")):
        c = int(ev["test_copies"])
        details.append(f"{c} binarised test cop{'y' if c == 1 else 'ies'}" if c else
                       "test images binarised anew on every pass")
    if details:
        out += ["; ".join(details) + ".", ""]
    out += ["## K-means, KNN and linear probes (paper Table 2 layout, accuracy %)", "",
            table(_T2_HEADER, _with_paper(_t2_row(run_name, ev), entry, _t2_paper_row)), ""]
    out += ["## SVM probes (paper Table 5 layout, accuracy %, mean ± std)", "",
            table(_T5_HEADER, _with_paper(_t5_row(run_name, ev), entry, _t5_paper_row)), ""]
    if entry is not None:
        out += ["Rows marked (paper) are the published numbers of Ma, Zhou & Hovy (ICLR 2019) "
                f"for {entry['label']}, not results of this run.", ""]
        out += [f"- {cell_text(n)}" for n in entry["notes"]] + ([""] if entry["notes"] else [])
    blocks = [b for b in (_clustering_details(ev.get("clustering")),
                          _probe_details(ev.get("probes"))) if b]
    if blocks:
        out += ["## Clustering and probes in detail", ""]
    for block in blocks:
        out += block + [""]
    out += ["## Latent diagnostics", "", table(_DIAG_HEADER, [_diag_row(run_name, ev)]), ""]
    if figures:
        out += ["## Figures", ""]
        for caption, path in figures.items():
            out += [f"### {caption}", "", f"![{caption}]({path})", ""]
    if notes:
        out += ["## Notes", ""] + [f"- {cell_text(n)}" for n in notes] + [""]
    return "\n".join(out).rstrip() + "\n"


def _runs_and_paper_entries(runs, paper_keys, empty: str) -> tuple[list, list]:
    """(runs as a list, the paper entry of each run or None), checking the two line up."""
    runs = list(runs)
    if not runs:
        raise MaevaeError(f"{empty}: pass at least one (name, eval dict) pair")
    keys = [None] * len(runs) if paper_keys is None else list(paper_keys)
    if len(keys) != len(runs):
        raise MaevaeError(
            f"{len(runs)} runs but {len(keys)} paper keys: give one key (or None) per run"
        )
    return runs, [None if k is None else paper_entry(k) for k in keys]


def render_comparison(
    runs: Sequence[tuple[str, Mapping]],
    paper_keys: Sequence[str | None] | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """Several runs side by side in the paper's layouts, with the paper's rows interleaved.

    ``paper_keys[i]`` is the preset key (see ``paper_numbers.PAPER_KEYS``) whose published
    numbers follow run ``i`` in each table, or None. Paper rows end in "(paper)"; a table
    gets a paper row only where the paper has one (e.g. Table 4 exists for MNIST only;
    OMNIGLOT rows show Table 1's NLL and KL); the note on the paper rows is written only
    when some table has one. ``warnings`` are lines shown under the title, each marked
    "Warning:".
    """
    runs, entries = _runs_and_paper_entries(runs, paper_keys, "nothing to compare")
    with_bpd = any(is_num(ev.get("bits_per_dim")) for _, ev in runs) or any(
        e is not None and "table3" in e for e in entries)

    shown: list[Mapping] = []  # entries with a paper row in some table

    def interleave(own, paper) -> list[list[str]]:
        rows = []
        for (name, ev), entry in zip(runs, entries):
            rows.append(own(name, ev))
            if entry is not None:
                prow = paper(entry)
                if prow is not None:
                    rows.append(prow)
                    shown.append(entry)
        return rows

    out = ["# Comparison", ""]
    out += [line for w in warnings for line in (f"**Warning:** {cell_text(w)}", "")]
    out += ["## Density estimation (paper Table 4 layout, nats)", "",
            table(_t4_header(with_bpd), interleave(
                lambda n, ev: _t4_row(n, ev, with_bpd), lambda e: _t4_paper_row(e, with_bpd))),
            ""]
    out += ["## K-means, KNN and linear probes (paper Table 2 layout, accuracy %)", "",
            table(_T2_HEADER, interleave(_t2_row, _t2_paper_row)), ""]
    out += ["## SVM probes (paper Table 5 layout, accuracy %, mean ± std)", "",
            table(_T5_HEADER, interleave(_t5_row, _t5_paper_row)), ""]
    out += ["## Latent diagnostics", "",
            table(_DIAG_HEADER, [_diag_row(n, ev) for n, ev in runs]), ""]
    notes = [f"{e['label']} (paper): {note}" for e in shown for note in e["notes"]]
    if shown:
        out += ["Rows marked (paper) are the published numbers of Ma, Zhou & Hovy (ICLR 2019); "
                "our accuracies are the mean over runs of test accuracy."]
    if notes:
        out += [""] + [f"- {cell_text(n)}" for n in dict.fromkeys(notes)]
    return "\n".join(out).rstrip() + "\n"


def _clustering_row(name: str, ev: Mapping) -> list[str]:
    cl = ev.get("clustering") if isinstance(ev.get("clustering"), Mapping) else {}
    km = cl.get("kmeans") if isinstance(cl.get("kmeans"), Mapping) else {}
    k0 = next(iter(km), None)
    e = km.get(k0, {}) if k0 is not None else {}
    h = cl.get("hungarian") if isinstance(cl.get("hungarian"), Mapping) else {}
    return [name, pct_pm(e.get("acc_test")), pct_pm(e.get("acc_test_majority")),
            pct_pm(h.get("acc_test")), num(mean_of(e.get("nmi_test")), 3),
            num(mean_of(e.get("ari_test")), 3)], k0, h.get("k")


def render_representation_tables(
    runs: Sequence[tuple[str, Mapping]],
    paper_keys: Sequence[str | None] | None = None,
    level: int = 2,
) -> str:
    """Clustering and probe results of several runs side by side, for embedding in a report.

    Tables (headings at Markdown ``level``): Table 2 layout (K-means, KNN, Linear), Table 5
    layout (SVMs, mean ± std), the other clustering scores at the smallest K (nearest-sample
    and majority-vote labelling, Hungarian accuracy at K = number of classes, NMI, ARI) and
    the latent diagnostics. ``paper_keys`` as in :func:`render_comparison` (paper rows are
    added to the Table 2 and Table 5 layouts only, marked "(paper)").
    """
    runs, entries = _runs_and_paper_entries(runs, paper_keys, "no runs to tabulate")
    hashes = "#" * max(1, int(level))

    def rows(own, paper) -> list[list[str]]:
        out = []
        for (name, ev), entry in zip(runs, entries):
            out += _with_paper(own(name, ev), entry, paper)
        return out

    cl_rows, k0, hk = [], None, None
    for name, ev in runs:
        row, k, h = _clustering_row(name, ev)
        cl_rows.append(row)
        k0, hk = k0 or k, hk or h
    k_txt, hk_txt = k0 or "K", hk or "C"
    out = [f"{hashes} K-means, KNN and linear probes (paper Table 2 layout, test accuracy %)", "",
           table(_T2_HEADER, rows(_t2_row, _t2_paper_row)), "",
           f"{hashes} SVM probes (paper Table 5 layout, test accuracy %, mean ± std)", "",
           table(_T5_HEADER, rows(_t5_row, _t5_paper_row)), "",
           f"{hashes} Clustering, other scores (test set, mean ± std over runs)", "",
           table(["Model", f"K={k_txt} nearest-sample", f"K={k_txt} majority vote",
                   f"Hungarian (K={hk_txt})", f"NMI (K={k_txt})", f"ARI (K={k_txt})"], cl_rows),
           "", f"{hashes} Latent diagnostics", "",
           table(_DIAG_HEADER, [_diag_row(n, ev) for n, ev in runs])]
    if any(e is not None for e in entries):
        out += ["", "Rows marked (paper) are the published numbers of Ma, Zhou & Hovy "
                "(ICLR 2019), not our results."]
    return "\n".join(out).rstrip() + "\n"
