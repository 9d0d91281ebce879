"""The installed package is the source tree: every Python package folder is listed in pyproject.toml, so a
non-editable install (pip install ., a wheel, pip install git+...) has all of lmrecipes, not only what an editable
install happens to find."""

from __future__ import annotations

import pytest
from launch import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_package_folder_is_installed():
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = setuptools["package-dir"]
    on_disk = set()
    for package, folder in package_dirs.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder).parts
            on_disk.add(".".join((package, *relative)))
    assert "lmrecipes.metrics" in on_disk and "lmrecipes.models.mini_gpt" in on_disk
    assert on_disk == set(setuptools["packages"])
