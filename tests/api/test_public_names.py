"""The public functions survive every import order (issue: "a Python API that cannot break").

``lndeploy.export`` used to be both a function and a subpackage: importing the subpackage replaced the
function on the package, so ``lndeploy.check(...)`` then ``lndeploy.export(...)`` raised "'module'
object is not callable". Each case runs in a fresh interpreter, since the import order is the point.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

PUBLIC = ["export", "check", "fuse", "build_engine", "bench", "Session", "load_model"]

IMPORT_EVERYTHING = """
import importlib, pkgutil, random, sys
import lndeploy
names = sorted(m.name for m in pkgutil.walk_packages(lndeploy.__path__, "lndeploy.")
               if ".test_" not in m.name and not m.name.endswith(("._testing", "__main__")))
order = {order!r}
if order == "reversed":
    names.reverse()
elif order == "shuffled":
    random.Random(7).shuffle(names)
public = {public!r}
if {public_first!r}:
    [getattr(lndeploy, n) for n in public]
for name in names:
    importlib.import_module(name)
for name in public:
    value = getattr(lndeploy, name)
    assert callable(value) and not isinstance(value, type(sys)), (name, value)
print("ok", len(names))
"""


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
@pytest.mark.parametrize("public_first", [False, True])
def test_public_names_stay_callable_after_importing_every_submodule(order, public_first):
    done = _run(IMPORT_EVERYTHING.format(order=order, public=PUBLIC, public_first=public_first), REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    count = int(done.stdout.split()[-1])
    assert count > 30  # the walk really imported the package's modules


@pytest.mark.slow
@pytest.mark.parametrize("first", ["check", "export"])
def test_issue_snippet_runs_in_either_order(first, tmp_path):
    calls = {"check": 'r = lndeploy.check("models/fnn.py"); assert r.passed, r.summary()',
             "export": f'lndeploy.export("models/fnn.py", {str(tmp_path / "f.onnx")!r})'}
    second = "export" if first == "check" else "check"
    done = _run(f"import lndeploy\n{calls[first]}\n{calls[second]}\nprint('ok')\n", REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "f.onnx").is_file()
