"""No code execution on load: planted pickles are refused without being executed.

Weights and optimizer state are safetensors, everything else JSON / YAML (safe_load), CIFAR
batches go through a restricted unpickler. Each test plants a file whose unpickling would
create a marker file, feeds it to maevae where a checkpoint / model / dataset is expected,
and checks the one-line refusal and that the marker was never created. A static scan of
src/maevae checks that no unsafe loader is called anywhere.
"""

from __future__ import annotations

import ast
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import train_tiny_run
from maevae.cli import main as cli_main
from maevae.runs.directory import RunDir
from maevae.runs.files import read_signed_json, sha256_bytes, signed_json

SRC = Path(__file__).resolve().parents[1] / "src" / "maevae"


class _Evil:
    """Unpickling this runs ``touch <target>``."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _payload(marker: Path, kind: str = "pickle") -> bytes:
    if kind == "pickle":
        return pickle.dumps({"weight": _Evil(marker)})
    if kind == "torch.save":  # a zip archive whose data.pkl carries the payload
        import io

        buf = io.BytesIO()
        torch.save({"weight": _Evil(marker)}, buf)
        return buf.getvalue()
    raise ValueError(kind)


def test_the_payload_is_live(tmp_path):
    """Sanity: plain unpickling of the planted bytes does run code (so refusing matters)."""
    live = tmp_path / "live"
    pickle.loads(_payload(live))
    assert live.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("sec") / "run", "train.max_steps=6",
                          "train.checkpoint_every=3")


@pytest.fixture
def run(trained, tmp_path) -> Path:
    p = tmp_path / "run"
    shutil.copytree(trained, p)
    return p


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        cli_main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    # warnings (one per corrupt checkpoint skipped) may precede the single error line
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("maevae: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("maevae: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _plant(path: Path, data: bytes, forge_checksum_in: Path | None = None,
           key: str | None = None) -> None:
    path.write_bytes(data)
    if forge_checksum_in is not None:  # the attacker also rewrites the recorded checksums
        meta = read_signed_json(forge_checksum_in)
        if key:
            meta["sha256"][key] = sha256_bytes(data)
        else:
            meta["sha256"] = sha256_bytes(data)
        forge_checksum_in.write_bytes(signed_json(meta))


def _ckpts(run: Path) -> list[Path]:
    return RunDir(run).checkpoint_paths()


@pytest.mark.parametrize("forge", [False, True], ids=["checksum-kept", "checksum-forged"])
@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_as_newest_checkpoint_is_refused(run, tmp_path, capsys, kind, forge):
    marker = tmp_path / "pwned"
    newest = _ckpts(run)[-1]
    _plant(newest / "model.safetensors", _payload(marker, kind),
           newest / "state.json" if forge else None, "model.safetensors")
    code, out, err = _cli(["train", "--resume", run, "--no-progress"], capsys)
    assert code == 0, err  # fell back to the previous checkpoint and finished the run
    warnings = [ln for ln in err.splitlines() if "warning" in ln]  # warnings go to stderr
    assert len(warnings) == 1 and newest.name in warnings[0], err
    assert ("checksum mismatch" if not forge else "not a valid safetensors") in warnings[0]
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model", "ema", "optim"])
def test_pickle_in_every_checkpoint_is_an_error(run, tmp_path, capsys, name):
    marker = tmp_path / "pwned"
    for ck in _ckpts(run):
        _plant(ck / f"{name}.safetensors", _payload(marker), ck / "state.json",
               f"{name}.safetensors")
    code, out, err = _cli(["train", "--resume", run], capsys)
    _one_line_error(code, err, "is valid")
    assert err.count("not a valid safetensors file") == len(_ckpts(run))
    assert not marker.exists()


@pytest.mark.parametrize("command", [["eval"], ["sample", "-n", "2"], ["reconstruct", "-n", "2"]])
@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_as_best_model_is_refused(run, tmp_path, capsys, command, kind):
    marker = tmp_path / "pwned"
    _plant(run / "best" / "model.safetensors", _payload(marker, kind), run / "best" / "meta.json")
    code, _, err = _cli([command[0], run, *command[1:]], capsys)
    _one_line_error(code, err, "not a valid safetensors file")
    assert not marker.exists()


@pytest.mark.parametrize("rel", ["run.json", "best/meta.json"])
def test_pickle_as_json_metadata_is_refused(run, tmp_path, capsys, rel):
    marker = tmp_path / "pwned"
    (run / rel).write_bytes(_payload(marker))
    code, _, err = _cli(["sample", run, "-n", "2"], capsys)
    # run.json is read as text first (a pickle is not UTF-8); meta.json is checksummed JSON
    _one_line_error(code, err, "is not UTF-8 text" if rel == "run.json" else "corrupt (not JSON)")
    assert not marker.exists()


def test_pickle_as_state_json_falls_back(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    newest = _ckpts(run)[-1]
    (newest / "state.json").write_bytes(_payload(marker))
    code, out, err = _cli(["train", "--resume", run], capsys)
    assert code == 0, err
    assert "state.json missing or corrupt" in err and not marker.exists()


def test_yaml_python_tags_are_refused(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = f"!!python/object/apply:os.system ['touch {marker}']\n"
    (tmp_path / "evil.yaml").write_text(f"name: {evil}")
    code, _, err = _cli(["train", tmp_path / "evil.yaml", "--out", tmp_path / "new"], capsys)
    _one_line_error(code, err, "is not valid YAML")
    (run / "config.yaml").write_text(f"name: {evil}")
    code, _, err = _cli(["eval", run], capsys)
    _one_line_error(code, err, "config.yaml is not valid YAML")
    assert not marker.exists()


def test_pickle_as_cifar_batch_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for n in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / n).write_bytes(b"")
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": []}))
    code, _, err = _cli(["train", "cifar10/vlae", "--out", tmp_path / "new", "--data-root",
                         tmp_path / "data"], capsys)
    _one_line_error(code, err, "refused to load", "not allowed")
    assert not marker.exists() and not (tmp_path / "new").exists()


# ------------------------------------------------------------------------ static scan
_FORBIDDEN_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("marshal", "load"),
    ("marshal", "loads"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"),
    ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
    ("joblib", "load"), ("shelve", "open"), ("jsonpickle", "decode"),
}


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """Calls that could execute code from a file: ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] + ([node.module] if getattr(node, "module",
                                                                              None) else [])
            for m in mods:
                if m.split(".")[0] in ("dill", "cloudpickle", "joblib", "shelve", "jsonpickle"):
                    found.append(f"{filename}:{node.lineno}: imports {m}")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("eval", "exec"):
            found.append(f"{filename}:{node.lineno}: {f.id}()")
            continue
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
            continue
        mod, attr = f.value.id, f.attr
        kw = {k.arg: k.value for k in node.keywords}

        def const(name, kw=kw):
            v = kw.get(name)
            return v.value if isinstance(v, ast.Constant) else ("<expr>" if v else None)
        if (mod, attr) in _FORBIDDEN_CALLS:
            found.append(f"{filename}:{node.lineno}: {mod}.{attr}()")
        elif mod == "torch" and attr == "load" and const("weights_only") is not True:
            found.append(f"{filename}:{node.lineno}: torch.load() without weights_only=True")
        elif mod in ("np", "numpy") and attr == "load" and const("allow_pickle") not in (None,
                                                                                       False):
            found.append(f"{filename}:{node.lineno}: np.load(allow_pickle=...)")
        elif mod == "yaml" and attr == "load":
            loader = kw.get("Loader") or (node.args[1] if len(node.args) > 1 else None)
            name = getattr(loader, "attr", getattr(loader, "id", None))
            if name not in ("SafeLoader", "CSafeLoader"):
                found.append(f"{filename}:{node.lineno}: yaml.load() without SafeLoader")
    return found


def test_scanner_catches_unsafe_loads():
    bad = ("import pickle, torch, numpy as np, yaml\n"
           "pickle.load(f)\npickle.loads(b)\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
           "np.load(p, allow_pickle=True)\nyaml.load(s)\nyaml.unsafe_load(s)\neval(s)\n"
           "import dill\n")
    assert len(unsafe_loads(bad)) == 9
    good = ("torch.load(p, weights_only=True)\nnp.load(p)\nnp.load(p, allow_pickle=False)\n"
            "yaml.safe_load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\nmodel.eval()\n")
    assert unsafe_loads(good) == []


def test_source_tree_has_no_unsafe_loads():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    found = [hit for p in files for hit in unsafe_loads(p.read_text(), str(p.relative_to(SRC)))]
    assert found == []
    # the one unpickler is the restricted one, with find_class overridden
    from maevae.data.cifar import RestrictedUnpickler

    assert RestrictedUnpickler.find_class is not pickle.Unpickler.find_class
    uses = [p for p in files if "Unpickler(" in p.read_text()]
    assert [p.name for p in uses] == ["cifar.py"]
