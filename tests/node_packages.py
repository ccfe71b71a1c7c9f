"""Node packages a test runs (the Node SDK example, redocly, jose): installed with `npm ci` from a
committed package.json and package-lock.json, so exactly the locked versions, in a temporary copy
(the repository gets no node_modules/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# npm's words for a registry it cannot reach: that is a skip (which tests/conftest.py fails unless
# OTP_ALLOW_SKIPS=1), any other failure of `npm ci` fails the test.
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


def npm_installed(source: Path, tmp_path_factory: pytest.TempPathFactory, needed_for: str, timeout: float) -> Path:
    """A copy of the folder ``source`` (without its node_modules/) with `npm ci` run in it."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are needed for {needed_for} (scripts/bootstrap test installs them)")
    folder = tmp_path_factory.mktemp(source.name) / source.name
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("node_modules"))
    try:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm ci took over {timeout:.0f} s (is the npm registry reachable?)")
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(code in output for code in NETWORK_ERRORS):
        pytest.skip(f"the npm registry is unreachable: {output.strip().splitlines()[-1]}")
    assert result.returncode == 0, f"npm ci of {source.name} failed:\n{output}"
    return folder
