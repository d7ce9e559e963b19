"""Dependency floors that keep known vulnerabilities out (issue 22, item 14): torch >= 2.10
(weights_only=True bypasses: CVE-2025-32434 fixed in 2.6, CVE-2026-24747 in 2.10) and
gradio >= 6.16 (CVE-2026-28414 fixed in 6.7, GHSA-j36p-7w88-g82j in 6.16)."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from .helpers.paths import REPO

FLOORS = {"torch": (2, 10), "gradio": (6, 16)}


def _floor(text: str, package: str):
    found = re.findall(rf'"{package}>=([0-9][0-9.]*)', text)
    assert found, f"pyproject.toml has no floor for {package}"
    return [tuple(int(x) for x in f.split(".")[:2]) for f in found]


def test_pyproject_floors():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for package, floor in FLOORS.items():
        for found in _floor(text, package):
            assert found >= floor, f"{package}>={'.'.join(map(str, found))} admits vulnerable versions"
    assert '"hypothesis' in text  # the property tests need it in the test extra


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_installed_versions_meet_the_floors(package):
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed")
    got = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    assert got >= FLOORS[package], f"{package} {version} is older than the floor"
