"""The built wheel holds the library only: no test module (``test_*.py``, ``_testing.py``, ``conftest.py``)
is installed, although rule and kernel tests live beside the code they test (setup.py's build_py)."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

SOURCES = ("setup.py", "pyproject.toml", "README.md", "lndeploy", "plugins")


@pytest.mark.slow
def test_wheel_has_the_library_and_no_test_module(tmp_path):
    tree = tmp_path / "tree"  # a copy: building in the checkout would leave build/ and egg-info there
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(tree)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("lndeploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tests = [n for n in names if n.rsplit("/", 1)[-1].startswith("test_")
             or n.endswith(("/_testing.py", "/conftest.py"))]
    assert tests == []
    # what sits beside those tests is installed, under the one plugin name
    for module in ("lndeploy/passes/fuse/layer_norm.py", "lndeploy/plugins/layernorm/kernel.py",
                   "lndeploy/plugins/layernorm/trt_plugin.py", "lndeploy/plugins/layernorm/README.md",
                   "lndeploy/passes/precision/dtypes.py"):
        assert module in names
    assert not [n for n in names if n.startswith(("plugins/", "tests/"))]
