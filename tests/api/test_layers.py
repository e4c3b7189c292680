"""The import graph of lndeploy keeps its layers (README 'Layout') and has no circle.

Layers, each importing only itself and the ones before it: nn -> exporter -> passes -> backends ->
checker (and benchmark, serving, inspection) -> cli. Leaf helpers (parity, inputs, input_sets, errors,
fileio, onnxfile, modelfile, plugin_spec, trt_env, outpaths) import only leaves; anyone may import them.
plugins/ (installed as lndeploy.plugins) sits with nn: the custom op runs its kernel and the TensorRT
backend registers its plugin, so it imports no backend.
Every import counts, also those inside functions (imported lazily is still a dependency). Test modules
(test_*.py, _testing.py) are not installed and are left out.

Read with ``ast`` from the source: nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path


from tests.conftest import REPO

ROOTS = {"lndeploy": REPO / "lndeploy", "lndeploy.plugins": REPO / "plugins"}
LEAVES = {"lndeploy", "lndeploy.parity", "lndeploy.inputs", "lndeploy.errors", "lndeploy.fileio",
          "lndeploy.onnxfile", "lndeploy.modelfile", "lndeploy.plugin_spec", "lndeploy.trt_env", "lndeploy.outpaths",
          "lndeploy.input_sets"}
RANKS = [  # (module or package prefix, rank); the longest matching prefix wins
    ("lndeploy.nn", 0), ("lndeploy.plugins", 0),
    ("lndeploy.exporter", 1),
    ("lndeploy.passes", 2),
    ("lndeploy.backends", 3), ("lndeploy.session", 3),  # Session: the backends' public face
    ("lndeploy.pipeline", 3.5),  # wires a backend into export and fuse verification, below check
    ("lndeploy.checker", 4), ("lndeploy.benchmark", 4), ("lndeploy.inspection", 4), ("lndeploy.serving", 4),
    ("lndeploy.cli", 5), ("lndeploy.__main__", 5),
]
BELOW_BACKENDS = ("lndeploy.exporter", "lndeploy.passes", "lndeploy.plugins")
OPTIONAL = ("tensorrt", "tensorrt_rtx", "matplotlib", "pytriton", "tritonclient")


def is_test_module(path: Path) -> bool:
    return path.name.startswith("test_") or path.name in ("_testing.py", "conftest.py")


def module_files() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if is_test_module(path) or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = module_files()


def imports_of(name: str, path: Path) -> dict[str, bool]:
    """lndeploy modules ``name`` imports -> True when one import of it is at module top level."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    found = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: level 1 is this package, 2 its parent, ...
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from pkg import mod` names the module mod when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            found[target] = found.get(target, False) or id(node) in top
    return found


def graph() -> dict[str, set[str]]:
    """module -> the lndeploy modules it imports."""
    return {name: {_known(t) for t in imports_of(name, path)} - {None, name} for name, path in MODULES.items()}


def _known(target: str) -> str | None:
    """The lndeploy module an import names (``lndeploy.plugins`` spelled either way), else None."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def rank(name: str) -> float | None:
    matches = [(len(prefix), value) for prefix, value in RANKS if name == prefix or name.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def test_every_module_has_a_layer():
    assert [name for name in MODULES if name not in LEAVES and rank(name) is None] == []


def test_import_graph_has_no_circle():
    edges = graph()
    cycles = [sorted(c) for c in strongly_connected(edges) if len(c) > 1]
    assert cycles == []


def test_layers_import_only_layers_before_them_and_leaves_only_leaves():
    wrong = []
    for source, targets in graph().items():
        for target in sorted(targets):
            if target in LEAVES or None in (rank(target), rank(source)) and source not in LEAVES:
                continue  # a module without a layer: test_every_module_has_a_layer names it
            if source in LEAVES:
                wrong.append(f"leaf {source} imports {target}")
            elif rank(target) > rank(source):
                wrong.append(f"{source} (layer {rank(source)}) imports {target} (layer {rank(target)})")
    assert wrong == []


def test_exporter_passes_and_plugins_import_no_backend():
    wrong = [f"{source} imports {target}" for source, targets in graph().items()
             if source.startswith(BELOW_BACKENDS)
             for target in targets if target.startswith("lndeploy.backends")]
    assert wrong == []


def test_optional_modules_are_imported_lazily():
    """tensorrt, matplotlib, pytriton...: never at module top, so `import lndeploy.x` works without them."""
    wrong = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{name} imports {n}" for n in names if n.split(".")[0] in OPTIONAL]
    assert wrong == []


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    """The reader itself: a lazy import inside a function and a relative import are edges."""
    edges = graph()
    assert "lndeploy.plugins.layernorm.kernel" in edges["lndeploy.plugins.layernorm.aot"]  # `from . import kernel`
    assert "lndeploy.backends.onnxruntime" in edges["lndeploy.pipeline"]  # inside verification_runner()


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found
