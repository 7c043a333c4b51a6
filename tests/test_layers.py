"""The layers hold: every import (module-level or inside a function) points to the same or a lower
layer, and no module imports itself back through others (no import cycle, hidden ones included).

Layers, lowest first (docs/ARCHITECTURE.md):

    base        errors, files, vocabulary, countries   (the domain's words, one file writer)
    formats     portfolio CSVs, the checkpoint, the NetCDF writer
    simulator   the JAX kernel, its driver, metrics, capital, reinsurance, the checkpoint store
    models      the Bayesian models, fitting, the posterior file
    scenarios   scenario files, shocks, composition into engine tables, stress, predictive checks
    data        the embedded synthetic data and its generator
    application summary, app, outputs, runtime, text, exports, report, plots, benchmarks; api and cli on top
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    ("errors", "files", "vocabulary", "countries"),
    ("formats",),
    ("simulator",),
    ("models",),
    ("scenarios",),
    ("data",),
    ("summary", "outputs", "runtime", "text", "exports", "app", "report", "plots", "benchmarks"),
    ("api",),
    ("cli", "__init__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] in ("tests", "examples", "build", "docs") or parts[0].startswith("."):
            continue
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The leisim modules ``module`` imports, anywhere in its file."""
    package = module.split(".")[:-1] if not path.name == "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" if target else a.name for a in node.names]
            hits = [n for n in names if n in known] or ([target] if target in known else [])
            found.update(hits)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("leisim"):
            target = node.module.removeprefix("leisim").lstrip(".")
            names = [f"{target}.{a.name}" if target else a.name for a in node.names]
            found.update([n for n in names if n in known] or ([target] if target in known else []))
    found.discard(module)
    return {f for f in found if f}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known) for m, p in modules.items()}


def _rank(module: str) -> int:
    top = module.split(".")[0]
    assert top in RANK, f"{module}: not in a layer of tests/test_layers.py (add it where it belongs)"
    return RANK[top]


def test_every_import_points_down_the_layers():
    upward = [f"{m} -> {t}" for m, targets in _graph().items() for t in sorted(targets)
              if _rank(t) > _rank(m) and not (m.endswith("__init__") and m.count(".") == 0)]
    assert not upward, "imports against the layer order:\n  " + "\n  ".join(upward)


def test_no_import_cycle():
    graph = {m: {t for t in ts if not t.endswith("__init__")} for m, ts in _graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_the_checker_sees_function_local_imports():
    # The cycle this test was written against hid in a function body (compose -> models.posterior).
    graph = _graph()
    assert "scenarios.tables" in graph["scenarios.compose"]  # imported inside compose()
    assert "simulator.driver" in graph["runtime"]  # imported inside setup_jax()


def test_the_reference_implementation_imports_nothing_from_leisim():
    """benchmarks/reference_model.py checks the engine; sharing code with it would hide shared bugs."""
    graph = _graph()
    assert "benchmarks.reference_model" in graph
    assert not graph["benchmarks.reference_model"], graph["benchmarks.reference_model"]
    tree = ast.parse((ROOT / "benchmarks" / "reference_model.py").read_text())
    absolute = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0
                and (n.module or "").startswith("leisim")]
    absolute += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                 if a.name.startswith("leisim")]
    assert not absolute, absolute


def test_every_relative_import_names_a_module_that_exists():
    # A function-local import of a module that moved away fails only when that code path runs;
    # the layer checks above would not see it (they follow imports to modules that exist).
    modules = _modules()
    known = set(modules) | {m.removesuffix(".__init__") for m in modules if m.endswith("__init__")}
    known.add("")  # the package root (from .. import x at the top)
    broken = []
    for module, path in modules.items():
        package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if target not in known:
                    broken.append(f"{module}: from {'.' * node.level}{node.module or ''} import ...")
    assert not broken, "imports of modules that do not exist:\n  " + "\n  ".join(broken)
