"""eval.json through maevae.runs.results: schema versions, validation, round trips, writers.

A copy of ``tests/fixtures/legacy_run_v1`` (written by fc594bd, schema 1) is evaluated
again with K = 4 on 6 images, as when it was made, so the new writer's key set can be
compared with the old one.
"""

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch

from maevae.errors import MaevaeError
from maevae.evaluate.nll import evaluate_run
from maevae.runs import results as R
from maevae.runs.results import (
    SCHEMA_VERSION,
    EvalResults,
    Likelihood,
    Representation,
    read_results,
    write_results,
)

LEGACY = Path(__file__).parent / "fixtures" / "legacy_run_v1"
REPRESENTATION = {"clustering": {"kmeans": {"10": {"acc_test": {"mean": 0.5}}}},
                  "probes": {"results": {"knn": {}}}, "diagnostics": {"active_units": 3},
                  "figures": {"tsne": "tsne.png"}, "probe_settings": {"latent": "mu"},
                  "probe_timings": {"total_s": 1.0}}


def legacy_raw() -> dict:
    return json.loads((LEGACY / "eval.json").read_text())


def write_raw(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_the_legacy_file_reads_as_schema_1():
    r = read_results(LEGACY / "eval.json")
    assert r.schema_version == 1 and r.extra == {}
    assert r.likelihood.nll == 26.528035948701586 and r.likelihood.nll_samples == 4
    assert r.likelihood.bits_per_dim is None and r.likelihood.compiled is False
    assert r.likelihood.precision == "fp32" and r.likelihood.test_copies == 1
    assert r.statistics.kl == 0.7248010536034902 and r.statistics.stat_batch == 64
    assert r.dataset == "digits" and r.best_epoch == 0 and r.seconds["nll"] == 0.01
    assert r.data_notes[0].startswith("scikit-learn 8x8 digits")
    assert r.representation == Representation()
    assert r.to_dict() == {"schema_version": 1, **legacy_raw()}


def test_write_then_read_is_the_same(tmp_path):
    r = EvalResults.from_dict({**legacy_raw(), **REPRESENTATION})
    write_results(tmp_path / "eval.json", r)
    back = read_results(tmp_path / "eval.json")
    assert back == EvalResults.from_dict({**legacy_raw(), **REPRESENTATION,
                                          "schema_version": SCHEMA_VERSION})
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk == {"schema_version": 2, **legacy_raw(), **REPRESENTATION}
    assert next(iter(on_disk)) == "schema_version"
    assert not list(tmp_path.glob(".eval.json.tmp*"))  # written through atomic_write_text


def test_absent_fields_stay_absent(tmp_path):
    partial = {"nll": 30.0, "kl": 1.5, "mpd": 0.7, "std": 0.2}
    write_results(tmp_path / "a.json", read_results(write_raw(tmp_path / "a.json", partial)))
    # a file with nll gets bits_per_dim and best_epoch (null), as evaluate_run always wrote
    assert json.loads((tmp_path / "a.json").read_text()) == {
        "schema_version": 2, **partial, "bits_per_dim": None, "best_epoch": None}
    only_probes = {"dataset": "digits", "data_notes": [], **REPRESENTATION}
    write_results(tmp_path / "b.json", EvalResults.from_dict(only_probes))
    assert json.loads((tmp_path / "b.json").read_text()) == {"schema_version": 2,
                                                            **only_probes}
    assert read_results(tmp_path / "missing.json", missing_ok=True) == EvalResults()
    with pytest.raises(MaevaeError, match="does not exist"):
        read_results(tmp_path / "missing.json")


def test_unknown_keys_round_trip(tmp_path):
    newer = {"schema_version": 3, **legacy_raw(), "fid": 12.5, "notes": {"a": [1, 2]}}
    r = read_results(write_raw(tmp_path / "eval.json", newer))
    assert r.schema_version == 3 and r.extra == {"fid": 12.5, "notes": {"a": [1, 2]}}
    write_results(tmp_path / "eval.json", r)
    assert json.loads((tmp_path / "eval.json").read_text()) == {**newer, "schema_version": 2}


@pytest.mark.parametrize("field,value", [
    ("nll", "abc"), ("nll_samples", 4.5), ("compiled", "no"), ("precision", 32),
    ("bits_per_dim", "1.2"), ("nll_stderr", None),  # likelihood
    ("kl", [1.0]), ("stat_batch", True), ("elbo", None),  # test statistics
    ("clustering", [1, 2]), ("probes", "x"), ("figures", {"tsne": 1}),  # representation
    ("data_notes", 5), ("data_notes", [1]), ("dataset", 3), ("best_epoch", "0"),
    ("seconds", {"nll": "fast"}), ("schema_version", "2"), ("schema_version", 0),
])
def test_a_wrong_type_names_the_file_the_field_and_the_fix(tmp_path, field, value):
    path = write_raw(tmp_path / "eval.json", {**legacy_raw(), **REPRESENTATION, field: value})
    with pytest.raises(MaevaeError) as e:
        read_results(path)
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 2
    assert str(path) in msg and f"'{field}'" in msg
    assert f"delete it and run `maevae eval {tmp_path}` again" in msg


@pytest.mark.parametrize("text,match", [
    ("[1, 2]", "does not hold a JSON object"), ('"nll"', "does not hold a JSON object"),
    ("{half", "is not valid JSON"), ("", "is not valid JSON"),
])
def test_not_an_object_is_refused_in_one_line(tmp_path, text, match):
    (tmp_path / "eval.json").write_text(text)
    with pytest.raises(MaevaeError, match=match) as e:
        read_results(tmp_path / "eval.json")
    assert "\n" not in str(e.value) and "maevae eval" in str(e.value)


def test_numbers_are_floats_and_null_only_where_allowed():
    r = EvalResults.from_dict({"nll": 27, "bits_per_dim": None, "best_epoch": None})
    assert r.likelihood == Likelihood(nll=27.0) and isinstance(r.likelihood.nll, float)


def test_results_module_stays_in_the_run_layer():
    tree = ast.parse(Path(R.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    bad = {m for m in imported if m and m.startswith(("maevae.train", "maevae.evaluate",
                                                      "maevae.cli"))}
    assert not bad


@pytest.fixture(scope="module")
def legacy_copy(tmp_path_factory):
    run = tmp_path_factory.mktemp("results") / "run"
    shutil.copytree(LEGACY, run)
    return run


def _evaluate(run: Path) -> dict:
    return evaluate_run(run, None, torch.device("cpu"), nll_samples=4, max_images=6,
                        progress=False, log=lambda *a: None)


def test_a_fresh_evaluation_writes_the_old_keys_and_schema_version(legacy_copy):
    (legacy_copy / "eval.json").unlink()
    out = _evaluate(legacy_copy)
    ev = json.loads((legacy_copy / "eval.json").read_text())
    assert ev["schema_version"] == SCHEMA_VERSION == 2
    assert set(ev) == set(legacy_raw()) | {"schema_version"}
    assert out == ev and isinstance(out["nll"], float)
    assert read_results(legacy_copy / "eval.json").to_dict() == ev


def test_evaluate_run_keeps_the_representation_of_an_older_file(legacy_copy):
    older = {**legacy_raw(), **REPRESENTATION, "nll": 99.0, "fid": 1.0}
    write_raw(legacy_copy / "eval.json", older)
    _evaluate(legacy_copy)
    ev = json.loads((legacy_copy / "eval.json").read_text())
    for key in ("clustering", "probes", "diagnostics", "figures"):
        assert ev[key] == REPRESENTATION[key]
    # as before the typed schema: probe settings / timings and unknown keys are not kept
    assert not {"probe_settings", "probe_timings", "fid"} & set(ev)
    assert ev["nll"] != 99.0


def test_evaluate_run_replaces_an_invalid_file(legacy_copy):
    write_raw(legacy_copy / "eval.json", {**REPRESENTATION, "nll": "abc"})
    _evaluate(legacy_copy)
    ev = read_results(legacy_copy / "eval.json")
    assert isinstance(ev.likelihood.nll, float) and ev.representation == Representation()
