"""``eval.json``, the results file of a run directory: typed, with one reader and one writer.

``maevae eval`` writes it in two steps: :func:`maevae.evaluate.nll.evaluate_run` (the
likelihood, the test statistics and the run-level fields) and, with ``--probes``,
:func:`maevae.evaluate.representation.run_probes` (the representation part). Both go
through :func:`write_results`; every command that reads the file goes through
:func:`read_results`.

On disk the layout is FLAT: the fields of :class:`Likelihood`, :class:`TestStatistics`,
:class:`Representation` and the run-level fields of :class:`EvalResults` are top-level keys
(``{"schema_version": 2, "nll": ..., "elbo": ..., "clustering": {...}, ...}``).

* **Versions.** :data:`SCHEMA_VERSION` = 2 is written as ``schema_version``; a file without
  it is version 1 (written before the key existed, same keys otherwise) and is read as such.
* **Absent fields.** A field that is ``None`` is not in the file (a run evaluated with
  ``--probes`` only has no likelihood keys). Exception: ``bits_per_dim`` and ``best_epoch``
  are written as ``null`` whenever ``nll`` is there, as ``evaluate_run`` always did
  (binarised data have no bits/dim; a model saved without its epoch has no best epoch), and
  so are ``mpd`` and ``std`` (null = "n/a": no test batch was large enough for the statistic,
  see :mod:`maevae.statistics`; never written as 0).
* **Unknown keys** (from a newer writer) are kept in :attr:`EvalResults.extra` and written
  back unchanged.
* **Validation.** A file that is not JSON, not an object, or whose known fields have the
  wrong type raises a one-line :class:`~maevae.errors.MaevaeError` naming the file, the
  field and the fix. The representation sections are nested dicts produced by
  :mod:`maevae.evaluate.clustering`, :mod:`maevae.evaluate.probes` and
  :mod:`maevae.evaluate.representation`; only their top-level type is checked here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maevae.errors import MaevaeError
from maevae.runs.files import atomic_write_text

__all__ = [
    "EVAL_FILE",
    "SCHEMA_VERSION",
    "EvalResults",
    "Likelihood",
    "Representation",
    "TestStatistics",
    "read_results",
    "write_results",
]

EVAL_FILE = "eval.json"
SCHEMA_VERSION = 2

# the kinds of value a field holds; "?" = null allowed in the file
_KIND_TEXT = {
    "number": "a number", "number?": "a number or null", "int": "an integer",
    "int?": "an integer or null", "str": "a string", "bool": "true or false",
    "str_list": "a list of strings", "num_dict": "an object of numbers",
    "str_dict": "an object of strings", "dict": "an object",
}


_ABSENT = object()  # a key that is not in the file


def _f(kind: str) -> Any:
    return field(default=None, metadata={"kind": kind})


@dataclass
class Likelihood:
    """The importance-sampled test NLL (nats) and the settings it was computed with."""

    nll: float | None = _f("number")
    nll_stderr: float | None = _f("number")  # standard error over the test images
    nll_mc_stderr: float | None = _f("number")  # Monte-Carlo error of the IS estimate
    nll_elbo: float | None = _f("number")  # the ELBO bound from the same samples
    is_recon: float | None = _f("number")
    is_kl: float | None = _f("number")
    bits_per_dim: float | None = _f("number?")  # null for binarised data
    nll_samples: int | None = _f("int")  # K importance samples per image
    nll_images: int | None = _f("int")
    test_copies: int | None = _f("int")  # fixed binarised copies (0 = dynamic)
    test_images: int | None = _f("int")
    precision: str | None = _f("str")  # "fp32" / "bf16"
    compiled: bool | None = _f("bool")


@dataclass
class TestStatistics:
    """ELBO, RE, KL, MPD and STD on the test set (Table 4) and how they were computed."""

    __test__ = False  # not a pytest test class

    elbo: float | None = _f("number")
    recon: float | None = _f("number")
    kl: float | None = _f("number")
    mpd: float | None = _f("number?")  # null: no test batch had 2 images (n/a)
    std: float | None = _f("number?")  # null: no test batch had 3 images (n/a)
    stat_images: int | None = _f("int")
    stat_posterior_samples: int | None = _f("int")
    stat_batch: int | None = _f("int")


@dataclass
class Representation:
    """``maevae eval --probes``: K-means clustering, label-budget probes, diagnostics."""

    clustering: dict | None = _f("dict")  # clustering.clustering_suite
    probes: dict | None = _f("dict")  # probes.probe_suite
    diagnostics: dict | None = _f("dict")  # active units, KL per dim, I(x; z), MPD/STD 512
    figures: dict[str, str] | None = _f("str_dict")  # figure name -> file in the run dir
    probe_settings: dict | None = _f("dict")  # latent, pool, runs, labels, model sha256 ...
    probe_timings: dict | None = _f("dict")  # wall times of each stage


_RUN_KINDS = {"best_epoch": "int?", "dataset": "str", "data_notes": "str_list",
              "seconds": "num_dict"}
_SECTIONS = {"likelihood": Likelihood, "statistics": TestStatistics,
             "representation": Representation}
_ALWAYS_WITH_NLL = ("bits_per_dim", "best_epoch", "mpd", "std")

# the order of the keys on disk: that of evaluate_run, then run_probes' keys
_KEY_ORDER = (
    "nll", "nll_stderr", "nll_mc_stderr", "nll_elbo", "elbo", "recon", "kl", "mpd", "std",
    "is_recon", "is_kl", "bits_per_dim", "nll_samples", "nll_images", "test_copies",
    "test_images", "stat_images", "stat_posterior_samples", "stat_batch", "precision",
    "compiled", "best_epoch", "dataset", "data_notes", "seconds", "clustering", "probes",
    "diagnostics", "probe_settings", "figures", "probe_timings",
)


@dataclass
class EvalResults:
    """The whole of ``eval.json``: its sections, the run-level fields and unknown keys."""

    likelihood: Likelihood = field(default_factory=Likelihood)
    statistics: TestStatistics = field(default_factory=TestStatistics)
    representation: Representation = field(default_factory=Representation)
    best_epoch: int | None = None  # epoch of the best (EMA) model that was evaluated
    dataset: str | None = None
    data_notes: list[str] | None = None  # how the dataset was made (split, scaling, source)
    seconds: dict[str, float] | None = None  # wall times of evaluate_run's stages
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back as-is
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """The flat JSON object (``schema_version`` first, then the known keys, then extra)."""
        values: dict[str, Any] = {}
        for name in _SECTIONS:
            values.update(dataclasses.asdict(getattr(self, name)))
        values.update({k: getattr(self, k) for k in _RUN_KINDS})
        with_nll = self.likelihood.nll is not None
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for key in _KEY_ORDER:
            if values[key] is not None or (with_nll and key in _ALWAYS_WITH_NLL):
                out[key] = values[key]
        out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out

    @classmethod
    def from_dict(cls, raw: dict, source: str | Path = EVAL_FILE) -> EvalResults:
        """Validate and type a flat eval.json object; ``source`` names it in errors."""
        version = raw.get("schema_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            _invalid(source, "schema_version", version, "a positive integer")
        sections = {}
        for name, section in _SECTIONS.items():
            sections[name] = section(**{
                f.name: _checked(source, f.name, raw.get(f.name, _ABSENT), f.metadata["kind"])
                for f in dataclasses.fields(section)})
        run = {k: _checked(source, k, raw.get(k, _ABSENT), kind) for k, kind in _RUN_KINDS.items()}
        extra = {k: v for k, v in raw.items() if k not in _KEY_ORDER and k != "schema_version"}
        return cls(**sections, **run, extra=extra, schema_version=version)


def read_results(path: str | Path, missing_ok: bool = False) -> EvalResults:
    """Read and validate ``eval.json`` (schema 1 or 2; newer files keep their unknown keys).

    A missing file raises a one-line :class:`MaevaeError`, or gives an empty
    :class:`EvalResults` with ``missing_ok``.
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return EvalResults()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise MaevaeError(f"{path} does not exist: evaluate the run first with "
                          f"`maevae eval {path.parent}`") from None
    except OSError as e:
        raise MaevaeError(f"cannot read {path}: {e.strerror or e}; check its permissions"
                          ) from None
    except ValueError:  # also UnicodeDecodeError
        raise MaevaeError(f"{path} is not valid JSON; delete it and run `maevae eval "
                          f"{path.parent}` again") from None
    if not isinstance(raw, dict):
        raise MaevaeError(f"{path} does not hold a JSON object (it holds a "
                          f"{type(raw).__name__}); delete it and run `maevae eval "
                          f"{path.parent}` again")
    return EvalResults.from_dict(raw, path)


def write_results(path: str | Path, results: EvalResults) -> None:
    """Write ``results`` to ``path`` atomically (temp file, fsync, rename), flat, as
    schema :data:`SCHEMA_VERSION`."""
    out = dataclasses.replace(results, schema_version=SCHEMA_VERSION).to_dict()
    atomic_write_text(Path(path), json.dumps(out, indent=2))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _checked(source, name: str, v: Any, kind: str) -> Any:
    """``v`` if it is of ``kind`` (numbers as float), else a one-line MaevaeError."""
    if v is _ABSENT or (v is None and kind.endswith("?")):
        return None
    base = kind.rstrip("?")
    if base == "number" and _is_number(v):
        return float(v)
    if base == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if (base == "str" and isinstance(v, str)) or (base == "bool" and isinstance(v, bool)):
        return v
    if base == "str_list" and isinstance(v, list) and all(isinstance(s, str) for s in v):
        return v
    if base == "num_dict" and isinstance(v, dict) and all(map(_is_number, v.values())):
        return {k: float(x) for k, x in v.items()}
    if base == "str_dict" and isinstance(v, dict) and all(isinstance(s, str)
                                                          for s in v.values()):
        return v
    if base == "dict" and isinstance(v, dict):
        return v
    _invalid(source, name, v, _KIND_TEXT[kind])


def _invalid(source, name: str, v: Any, expected: str) -> None:
    try:
        shown = json.dumps(v)
    except (TypeError, ValueError):
        shown = repr(v)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    run = Path(source).parent if str(source) != EVAL_FILE else "RUN"
    raise MaevaeError(f"{source}: field {name!r} is {shown}, expected "
                      f"{expected}; delete it and run `maevae eval {run}` again")
