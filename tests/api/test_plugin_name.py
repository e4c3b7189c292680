"""The LayerNorm plugin has one import name, ``lndeploy.plugins.layernorm`` (setup.py installs plugins/
there): no file imports it as ``plugins...`` or under an alias package, and nothing puts a plugin
package into ``sys.modules`` by hand (the GPU scripts once did both). Read with ``ast``."""

from __future__ import annotations

import ast

from tests.conftest import REPO

FOLDERS = ("lndeploy", "plugins", "scripts", "benchmarks", "tests", "models")


def python_files():
    for folder in FOLDERS:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_the_plugin_is_imported_by_its_one_name_only():
    wrong = []
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{where}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in ("plugins", "ln_plugin", "layernorm")]
            # sys.modules[...] = ... : a package made up by hand
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Subscript) and ast.unparse(t.value) == "sys.modules" for t in node.targets):
                key = ast.unparse(node.targets[0].slice)
                if "plugin" in key or "lndeploy" in key:
                    wrong.append(f"{where}:{node.lineno} sets sys.modules[{key}]")
    assert wrong == []
