"""examples/twilio_sdk_node against the live app: Twilio's official Node.js SDK (from npm) creates a
service, starts a verification and checks the code the user got, unchanged but for its base URL.

Needs ``node`` and ``npm`` on PATH and the npm registry reachable; skips, saying which, otherwise.
The example's package-lock.json is committed: `npm ci` installs exactly the versions it names.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import NO_PUMPING, repo_root
from node_packages import npm_installed
from test_twilio_compat import new_number, serve

EXAMPLE = repo_root() / "examples" / "twilio_sdk_node"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npm_installed(EXAMPLE, tmp_path_factory, "the Node.js SDK example", timeout=45)


def test_node_sdk_example_creates_a_service_starts_and_checks(redis_url: str, installed_example: Path) -> None:
    folder = installed_example
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


def test_node_sdk_example_prints_retry_after_when_a_start_is_refused(redis_url: str, installed_example: Path) -> None:
    # One send an hour per number: the example's start comes after another tenant's (/v1) one.
    with serve(redis_url, limits={"resend_cooldown": 0, "number_sends_per_hour": 1, **NO_PUMPING}) as v2:
        to = new_number()
        first = httpx.post(
            f"{v2.base}/v1/verifications", json={"to": to}, headers={"Authorization": f"Bearer {v2.v1_key}"}
        )
        assert first.status_code == 201, first.text
        result = subprocess.run(
            ["node", "index.js", "--url", v2.base, "--account-sid", v2.account[0], "--auth-token", v2.account[1], to],
            cwd=installed_example,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "start refused: 20429 " in result.stdout
    assert re.search(r"^retry_after: \d+ s$", result.stdout, re.M), result.stdout
