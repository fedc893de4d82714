"""The package's imports point one way, with no cycles (read from the source with ``ast``).

Layers, lowest first; a module may import its own package (same first name under
``maevae``) and any lower layer, never a higher one; ``train`` and ``evaluate`` share a layer
and never import each other::

    errors, fsutil, console < safe_yaml < data < config < {device, kl_schedule} < nn
        < distributions < models
        < objectives < {statistics, inference} < runs < {train, evaluate}
        < {digits_comparison, sweep} < cli < __main__

Every import counts: module level, inside functions, and under ``if TYPE_CHECKING``.
``maevae/__init__.py`` (the package's face) may import anything, and anything may read
``maevae.__version__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "maevae"

LAYERS: list[set[str]] = [
    {"errors", "fsutil", "console"},
    {"safe_yaml", "signals"},
    {"data"},
    {"config"},
    {"compile_backend"},
    {"device", "kl_schedule"},
    {"nn"},
    {"distributions"},
    {"models"},
    {"objectives"},
    {"statistics", "inference"},
    {"runs"},
    {"train", "evaluate"},
    {"digits_comparison", "sweep"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The maevae modules ``path`` imports (``from maevae.x import y`` counts maevae.x.y when
    that is a module, else maevae.x)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "maevae")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "maevae":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in known else mod)
    return {m for m in out if m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: {m for m in _imports(path, name, known) if m in known}
            for name, path in mods.items()}


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        if mod == "maevae":  # the package's face
            continue
        src = _component(mod)
        if src not in RANK:
            bad.append(f"{mod}: not in any layer; add it to LAYERS in this test")
            continue
        for dep in deps:
            dst = _component(dep)
            if dep == "maevae" or dst == src:
                continue
            if dst not in RANK:
                bad.append(f"{mod} -> {dep}: {dep} is in no layer")
            elif RANK[dst] >= RANK[src]:
                how = "a module of the same layer" if RANK[dst] == RANK[src] else "a higher layer"
                bad.append(f"{mod} -> {dep}: imports {how}")
    return sorted(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_point_one_way():
    bad = _violations(_graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_module_is_read():
    graph = _graph()
    assert "maevae.runs.directory" in graph and "maevae.cli" in graph
    assert "maevae.runs.directory" in graph["maevae.evaluate.nll"]


# the checker itself, on made-up graphs: it must catch what it is for
@pytest.mark.parametrize(("graph", "expected"), [
    ({"maevae.train.trainer": {"maevae.evaluate.nll"}, "maevae.evaluate.nll": set()},
     ["maevae.train.trainer -> maevae.evaluate.nll: imports a module of the same layer"]),
    ({"maevae.runs.load": {"maevae.train.trainer"}, "maevae.train.trainer": set()},
     ["maevae.runs.load -> maevae.train.trainer: imports a higher layer"]),
    ({"maevae.data.mnist": {"maevae.config"}, "maevae.config": set()},
     ["maevae.data.mnist -> maevae.config: imports a higher layer"]),
    ({"maevae.cli": {"maevae.runs.load", "maevae"}, "maevae.runs.load": {"maevae.errors"},
      "maevae.errors": set(), "maevae": {"maevae.cli"}}, []),
])
def test_the_checker_catches_upward_and_sideways_imports(graph, expected):
    assert _violations(graph) == expected


def test_the_cycle_finder_catches_a_cycle_inside_one_package():
    graph = {"maevae.models.vae": {"maevae.models.build"},
             "maevae.models.build": {"maevae.models.vae"}, "maevae.nn.made": set()}
    assert _cycles(graph) == [["maevae.models.build", "maevae.models.vae"]]


def test_relative_and_function_level_imports_are_read(tmp_path):
    pkg = tmp_path / "maevae" / "evaluate"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from maevae.train import trainer\n    from . import nll\n")
    known = {"maevae.train.trainer", "maevae.evaluate.nll"}
    global SRC
    old, SRC = SRC, tmp_path / "maevae"
    try:
        assert _imports(f, "maevae.evaluate.x", known) == known
    finally:
        SRC = old
