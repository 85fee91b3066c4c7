"""Debian packages that some tests drive (chromium, prometheus): installed by the test setup when missing.

CI runs as root on a fresh machine, so a missing package is installed with
apt-get once per session. Where that is impossible (not root, no apt-get, no
network), the test is skipped on a developer's machine and fails under
CI=true, with the command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

_tried: dict[str, str | None] = {}


def debian_tool(path: str, package: str, *extra: str) -> str:
    """The path of a tool from a Debian package, installing the package (and ``extra``) if it is missing."""
    if Path(path).exists():
        return path
    if package not in _tried:
        _tried[package] = _install([package, *extra])
    if Path(path).exists():
        return path
    message = f"{path} is missing and could not be installed ({_tried[package]}); run: apt-get update && apt-get install -y {package}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _install(packages: list[str]) -> str | None:
    """None on success, else why not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root, or no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-300:]}"
    return None
