"""Only the package layout lives here; everything else is in pyproject.toml.

plugins/ sits at the top of the repo (a deliverable of its own: kernel, TensorRT plugin, README) but
installs as ``lndeploy.plugins``, so a non-editable install still finds the kernel. pyproject's
``packages.find`` cannot map a top-level folder under another package name, hence this file.
"""
from setuptools import find_packages, setup

plugin_packages = ["lndeploy.plugins"] + [
    "lndeploy.plugins." + name for name in find_packages(where="plugins")
]
setup(
    packages=find_packages(include=["lndeploy", "lndeploy.*"]) + plugin_packages,
    package_dir={"lndeploy.plugins": "plugins"},
)
