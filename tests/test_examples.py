"""examples/ and the README's first steps, run as a new user runs them: against a development
`otp serve` subprocess, reading each code from its console log.  (examples/twilio_sdk_node has its
own tests in tests/test_twilio_sdk_node.py: it needs npm.)"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import repo_root
from dev_server import DevServer, running
from test_serve import clean_env, otp_command

from otp.edge.embedded_redis import free_port

ROOT = repo_root()
EXAMPLES = ROOT / "examples"
SCRIPTS = ("curl.sh", "python_client.py", "twilio_sdk_python.py", "twilio_sdk_node/index.js")
README_NUMBER = "+15017122661"  # the walk-through's; every other test here has its own last two digits


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """`otp serve` with nothing configured (OTP_DEV=1 names the development setup outright), started
    in a folder of its own as a user starts it in the repository: its .otp/ is there."""
    folder = tmp_path_factory.mktemp("dev")
    port = free_port()
    env = clean_env(OTP_DEV="1", OTP_PORT=str(port), OTP_ARGON2_MEMORY_KIB="8192", OTP_ARGON2_TIME_COST="1")
    with running(otp_command("serve"), env, folder, port) as server:
        yield server


@pytest.fixture(scope="module")
def twilio_account(dev: DevServer) -> tuple[str, str]:
    """An account SID and auth token from `otp keys create my-app --twilio`, run beside the server."""
    created = subprocess.run(
        otp_command("keys", "create", "my-app", "--twilio"),
        env=clean_env(),
        cwd=dev.folder,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    found = re.search(r"account SID (AC\w+), auth token (\w+)", created.stdout)
    assert found, created.stdout
    return found.group(1), found.group(2)


def example_env(dev: DevServer) -> dict[str, str]:
    return clean_env(OTP_URL=dev.base)


def start_twice(dev: DevServer, to: str) -> None:
    """A start and its free resend with the development key: the next start to ``to``, by any key,
    comes within the resend cooldown and is refused (429, retry_after)."""
    key = (dev.folder / ".otp" / "dev-api-key").read_text().strip()
    for _ in range(2):
        answer = httpx.post(f"{dev.base}/v1/verifications", json={"to": to}, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 201, answer.text


def answer_at_the_prompt(dev: DevServer, command: list[str], to: str, *, env: dict[str, str] | None = None) -> str:
    """Runs ``command`` (an example that starts a verification to ``to`` and then asks for the code),
    types the code the console SMS carried, and returns what it printed; it must exit 0."""
    since = len(dev.lines)
    example = subprocess.Popen(
        command,
        env=env or example_env(dev),
        cwd=dev.folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        code = dev.code(to, since=since)  # the example waits at its prompt meanwhile
        out, _ = example.communicate(code + "\n", timeout=30)
    finally:
        if example.poll() is None:
            example.kill()
            example.wait()
    assert example.returncode == 0, out
    return out


def refused_start(command: list[str], dev: DevServer, *, env: dict[str, str] | None = None) -> str:
    """Runs ``command`` with nothing on stdin and returns what it printed; it must exit 1."""
    result = subprocess.run(
        command,
        env=env or example_env(dev),
        cwd=dev.folder,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout + result.stderr


# -- the files themselves ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_is_executable_with_a_shebang(name: str) -> None:
    path = EXAMPLES / name
    assert os.access(path, os.X_OK), f"chmod +x examples/{name} (and commit the mode)"
    first = path.read_text().splitlines()[0]
    assert first in ("#!/bin/sh", "#!/usr/bin/env python3", "#!/usr/bin/env node"), first


def test_the_git_index_records_the_exec_bit() -> None:
    if not (ROOT / ".git").exists():
        pytest.fail("not a git checkout: the exec bits are checked in the index")
    staged = subprocess.run(
        ["git", "ls-files", "-s", "--", *[f"examples/{n}" for n in SCRIPTS]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    modes = {line.split("\t")[1]: line.split()[0] for line in staged.splitlines()}
    assert modes == {f"examples/{n}": "100755" for n in SCRIPTS}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - {"__future__"}


def test_the_python_client_needs_nothing_but_the_standard_library() -> None:
    assert imported_modules(EXAMPLES / "python_client.py") <= set(sys.stdlib_module_names)


def test_the_python_sdk_example_needs_only_what_the_service_install_brings() -> None:
    """`scripts/bootstrap` (no test tools) installs pyproject's dependencies, nothing else."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    service = {re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower() for spec in declared}
    providers = importlib.metadata.packages_distributions()
    for module in imported_modules(EXAMPLES / "twilio_sdk_python.py") - set(sys.stdlib_module_names):
        assert {d.lower() for d in providers.get(module, [])} & service, f"{module} is not a service dependency"


def test_node_modules_stays_out_of_git_and_the_lock_is_committed() -> None:
    assert "node_modules/" in (ROOT / ".gitignore").read_text().splitlines()
    lock = EXAMPLES / "twilio_sdk_node" / "package-lock.json"
    assert '"node_modules/twilio"' in lock.read_text()


E164 = re.compile(r"\+\d{11}")


def test_each_example_and_the_walk_through_have_a_sample_number_of_their_own() -> None:
    """A new user runs the walk-through, then each example as its usage line says: one number for
    all would meet the per-number cooldown (429 resend_too_soon) by the third."""
    examples = readme_section("Examples")
    walk_through = set(E164.findall(readme_section("Walk-through with curl")))
    assert walk_through == {README_NUMBER}
    seen = {README_NUMBER: "the walk-through"}
    for name in SCRIPTS:
        text = (EXAMPLES / name).read_text()  # its header's usage lines, and its own usage message
        if name.endswith("index.js"):
            text += (EXAMPLES / "twilio_sdk_node" / "README.md").read_text()
        numbers = set(E164.findall(text))
        assert len(numbers) == 1, (name, numbers)
        number = numbers.pop()
        assert number not in seen, f"examples/{name} and {seen[number]} both use {number}"
        seen[number] = f"examples/{name}"
        row = next((line for line in examples.splitlines() if line.startswith("|") and name.split("/")[0] in line), "")
        assert number in row or "README.md" in row, (name, row)


# -- run against a development otp serve ------------------------------------------------------------


def test_curl_example_starts_and_checks(dev: DevServer) -> None:
    assert shutil.which("curl"), "curl is needed (scripts/bootstrap test installs it)"
    out = answer_at_the_prompt(dev, [str(EXAMPLES / "curl.sh"), "+15017120111"], "+15017120111")
    assert '"status":"pending"' in out and '"status":"approved"' in out


def test_curl_example_prints_retry_after_when_a_start_is_refused(dev: DevServer) -> None:
    start_twice(dev, "+15017120122")
    out = refused_start([str(EXAMPLES / "curl.sh"), "+15017120122"], dev)
    assert "start refused (HTTP 429)" in out
    assert re.search(r"^retry_after: \d+ s$", out, re.M), out


def test_python_client_starts_and_checks(dev: DevServer) -> None:
    out = answer_at_the_prompt(dev, [str(EXAMPLES / "python_client.py"), "+15017120133"], "+15017120133")
    assert "sent a code to +1*******0133" in out and "approved; token: " in out


def test_python_client_prints_retry_after_when_a_start_is_refused(dev: DevServer) -> None:
    start_twice(dev, "+15017120144")
    out = refused_start([str(EXAMPLES / "python_client.py"), "+15017120144"], dev)
    assert re.search(r"^start refused: .*\(retry_after: \d+ s\)$", out, re.M), out


def sdk_example(dev: DevServer, account: tuple[str, str], to: str) -> list[str]:
    """The command its header gives: the venv's python, the URL and the --twilio credentials."""
    script = str(EXAMPLES / "twilio_sdk_python.py")
    return [sys.executable, script, "--url", dev.base, "--account-sid", account[0], "--auth-token", account[1], to]


def test_twilio_sdk_python_example_starts_and_checks(dev: DevServer, twilio_account: tuple[str, str]) -> None:
    out = answer_at_the_prompt(dev, sdk_example(dev, twilio_account, "+15017120155"), "+15017120155")
    assert "created service VA" in out and "sent a code to +15017120155" in out and "approved" in out


def test_twilio_sdk_python_example_prints_retry_after_when_a_start_is_refused(
    dev: DevServer, twilio_account: tuple[str, str]
) -> None:
    start_twice(dev, "+15017120166")
    out = refused_start(sdk_example(dev, twilio_account, "+15017120166"), dev)
    assert "start refused: 20429 " in out
    assert re.search(r"^retry_after: \d+ s$", out, re.M), out


# -- the README's first steps -----------------------------------------------------------------------


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_curl_walk_through_pastes_as_is(dev: DevServer) -> None:
    """Every sh block of the walk-through, unedited but for the port, in a shell in the folder where
    `otp serve` runs; the code typed at its prompt is the one the serve log shows."""
    blocks = re.findall(r"```sh\n(.*?)```", readme_section("Walk-through with curl"), re.S)
    assert len(blocks) >= 2, "the walk-through's sh blocks"
    script = "\n".join(blocks)
    assert "URL=http://127.0.0.1:8000\n" in script and "VE3f" not in re.sub(r"#.*", "", script)
    script = script.replace("URL=http://127.0.0.1:8000\n", f"URL={dev.base}\n")
    out = answer_at_the_prompt(dev, ["sh", "-c", script], README_NUMBER, env=clean_env())
    assert '"status":"pending"' in out and '"status":"approved"' in out and '"token":' in out


def test_readme_first_steps_run_otp_from_the_venv_and_ci_runs_the_readme_test_command() -> None:
    steps = readme_section("Two commands")
    assert "scripts/bootstrap && .venv/bin/otp serve" in steps
    assert "scripts/bootstrap test && .venv/bin/pytest" in steps
    assert "scripts/bootstrap test && .venv/bin/pytest" in (ROOT / ".ci" / "run").read_text()
    walk_through = readme_section("Walk-through with curl")
    assert ".venv/bin/otp serve" in walk_through
