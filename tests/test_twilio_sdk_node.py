"""examples/twilio_sdk_node against the live app: Twilio's official Node.js SDK (from npm) creates a
service, starts a verification and checks the code the user got, unchanged but for its base URL.

Needs ``node`` and ``npm`` on PATH and the npm registry reachable; skips, saying which, otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import repo_root
from test_twilio_compat import new_number, serve

EXAMPLE = repo_root() / "examples" / "twilio_sdk_node"
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


def installed_example(tmp_path: Path) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Node.js SDK example (apt-get install nodejs npm)")
    folder = tmp_path / "twilio_sdk_node"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("node_modules", "package-lock.json"))
    try:
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=45,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install took over 45 s (is the npm registry reachable?)")
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(code in output for code in NETWORK_ERRORS):
        pytest.skip(f"the npm registry is unreachable: {output.strip().splitlines()[-1]}")
    assert result.returncode == 0, output
    return folder


def test_node_sdk_example_creates_a_service_starts_and_checks(redis_url: str, tmp_path: Path) -> None:
    folder = installed_example(tmp_path)
    with serve(redis_url) as v2:
        to = new_number()
        example = subprocess.Popen(
            ["node", "index.js", "--url", v2.base, "--account-sid", v2.account[0], "--auth-token", v2.account[1], to],
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            code = v2.code(to, timeout=20)  # the example waits at its prompt meanwhile
            out, _ = example.communicate(code + "\n", timeout=20)
        finally:
            if example.poll() is None:
                example.kill()
                example.wait()
    assert example.returncode == 0, out
    assert "created service VA" in out and "sent a code to " + to in out and "approved" in out
