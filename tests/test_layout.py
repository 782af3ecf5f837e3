"""The package layout, checked on the source (AST): imports point one way, each job lives in one place.

- no import cycle among edgeopt modules (module-level imports; ``if TYPE_CHECKING:`` blocks are types only);
- no edgeopt import inside a function, unless its line says why it is lazy (an optional dependency, or
  ``lazy:`` and the reason, as the CLI's commands import the library only when they run);
- no module outside ``edgeopt/tflite/`` parses a .tflite flatbuffer (edgeopt, benchmarks and tests);
- only ``edgeopt/export.py`` calls the TFLite converter and only ``edgeopt/compress/`` imports TF-MOT;
- no benchmark script imports a private edgeopt name (``edgeopt._x`` or ``from edgeopt.x import _y``).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeopt"
FLATBUFFER_MODULES = ("tensorflow.lite.python.schema_py_generated", "tensorflow.lite.tools.flatbuffer_utils", "flatbuffers", "tflite")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            stack += node.body + node.orelse
        elif isinstance(node, (ast.Try, ast.With, ast.ClassDef)):
            stack += [n for field in ("body", "orelse", "finalbody", "handlers") for n in getattr(node, field, [])]
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body


def _targets(node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The edgeopt modules an import statement loads explicitly (``from a.b import c`` -> a.b.c if it is a module)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if node.level or not node.module or node.module not in known:
        return set()
    subs = {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    plain = [a for a in node.names if f"{node.module}.{a.name}" not in known]
    return subs | ({node.module} if plain else set())


def _import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set().union(*[_targets(n, known) for n in _module_level_imports(ast.parse(path.read_text()))]) - {name}
            for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as a sorted list."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def _imported_modules(tree: ast.AST):
    """(module name, imported names, node) of every import anywhere in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, (), node
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, tuple(a.name for a in node.names), node


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_edgeopt_modules():
    graph = _import_graph()
    assert {"edgeopt.pipeline.runner", "edgeopt.pipeline.stage", "edgeopt.tflite.flatbuffer"} <= set(graph)
    assert "edgeopt.pipeline.stage" in graph["edgeopt.pipeline.stages.compress"]  # the graph sees real edges
    assert _cycles(graph) == []


def test_no_edgeopt_import_inside_a_function_unless_it_says_why():
    offenders = []
    for path in _modules().values():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for name, _, node in _imported_modules(fn):
                if name.split(".")[0] == "edgeopt" and not {"optional", "lazy"} & set(lines[node.lineno - 1].replace(":", " ").split()):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []


def test_only_the_tflite_package_parses_flatbuffers():
    offenders = []
    for path in _python_files("edgeopt", "benchmarks", "tests"):
        if path.is_relative_to(PACKAGE / "tflite"):
            continue
        for name, names, node in _imported_modules(ast.parse(path.read_text())):
            full = {name, *(f"{name}.{n}" for n in names)}
            if full & set(FLATBUFFER_MODULES) or name.startswith("tflite."):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
        if "GetRootAs" in path.read_text() and path.name != Path(__file__).name:
            offenders.append(f"{path.relative_to(ROOT)}: GetRootAs")
    assert offenders == []


def test_only_export_converts_and_only_compress_imports_tfmot():
    converts, tfmot = [], []
    for path in _python_files("edgeopt"):
        rel = path.relative_to(ROOT)
        if "TFLiteConverter" in path.read_text() and rel != Path("edgeopt/export.py"):
            converts.append(str(rel))
        if any(n.startswith("tensorflow_model_optimization") for n, _, _ in _imported_modules(ast.parse(path.read_text()))) \
                and not path.is_relative_to(PACKAGE / "compress"):
            tfmot.append(str(rel))
    assert converts == [] and tfmot == []


def test_benchmark_scripts_use_only_public_edgeopt_names():
    offenders = []
    for path in _python_files("benchmarks"):
        for name, names, node in _imported_modules(ast.parse(path.read_text())):
            if name.split(".")[0] != "edgeopt":
                continue
            private = [part for part in name.split(".") if part.startswith("_")] + [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name} {private}")
    assert offenders == []
