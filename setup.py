"""Only the package layout lives here; everything else is in pyproject.toml.

plugins/ sits at the top of the repo (a deliverable of its own: kernel, TensorRT plugin, README) but
installs as ``lndeploy.plugins``, so a non-editable install still finds the kernel. pyproject's
``packages.find`` cannot map a top-level folder under another package name, hence this file.

Tests live beside the rewrite rules and the kernel they test (``test_*.py``, and the rules' shared
``_testing.py``); they are not installed: the wheel holds the library only.
"""
import fnmatch

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

TEST_MODULES = ("test_*", "*_test", "_testing", "conftest")


class build_py_without_tests(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, name, path) for pkg, name, path in modules
                if not any(fnmatch.fnmatch(name, pattern) for pattern in TEST_MODULES)]


plugin_packages = ["lndeploy.plugins"] + [
    "lndeploy.plugins." + name for name in find_packages(where="plugins")
]
setup(
    packages=find_packages(include=["lndeploy", "lndeploy.*"]) + plugin_packages,
    package_dir={"lndeploy.plugins": "plugins"},
    cmdclass={"build_py": build_py_without_tests},
)
