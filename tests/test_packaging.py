"""What pyproject.toml promises: every package folder is installed, and every lower bound is the one CI tests."""

from __future__ import annotations

import tomllib

from helpers import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def test_every_package_folder_is_installed():
    """A non-editable install (pip install ., a wheel) has all of lmrecipes, not only what an editable one finds."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = setuptools["package-dir"]
    on_disk = set()
    for package, folder in package_dirs.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder).parts
            on_disk.add(".".join((package, *relative)))
    assert "lmrecipes.metrics" in on_disk and "lmrecipes.models.mini_gpt" in on_disk
    assert on_disk == set(setuptools["packages"])


def test_lowest_versions_pin_every_direct_dependency_at_its_lower_bound():
    """CI's lower-bound run installs .ci/lowest-versions.txt: it must test exactly the lower bounds pyproject claims."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lower_bounds = {}
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(line)
        minimums = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(minimums) == 1, f"{line}: give exactly one lower bound (>=)"
        lower_bounds[canonicalize_name(requirement.name)] = minimums[0]

    pins = {}
    for line in (REPO_ROOT / ".ci" / "lowest-versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: pin with =="
            pins[canonicalize_name(requirement.name)] = spec.version

    assert pins.keys() == lower_bounds.keys()
    for name, minimum in lower_bounds.items():
        assert Version(pins[name]) == Version(minimum), (
            f"{name}: pyproject says >={minimum}, CI pins {pins[name]}"
        )


def test_ci_installs_every_tracker_extra_the_launch_check_points_to():
    """`report_to` names a missing tracker with `pip install 'lmrecipes[<extra>]'`: each such extra exists, and dev
    (what CI installs) holds the same requirement, so the trackers are tested."""
    from lmrecipes.launch import TRACKER_EXTRAS

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in TRACKER_EXTRAS.values():
        assert set(extras[extra]) <= set(extras["dev"]), extra
