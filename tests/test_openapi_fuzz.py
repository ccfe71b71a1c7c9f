"""schemathesis against the served OpenAPI document, /v1 and the rest with an API key and /v2 with Twilio
credentials: no server errors, no response outside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from conftest import SECRET
from test_serve import clean_env, wait_until_ready

from otp.edge.embedded_redis import free_port
from otp.storage.store import Store


def admin_key(redis_url: str, *, twilio: bool = False) -> str:
    import asyncio

    import redis.asyncio as aioredis

    from otp.core import apikeys

    async def create() -> str:
        client = aioredis.Redis.from_url(redis_url)
        _, key = await apikeys.create(Store(client, partitions=16), "fuzz", admin=True, twilio=twilio)
        await client.aclose()
        return key

    return asyncio.run(create())


@pytest.fixture
def served(redis_url: str) -> Iterator[str]:
    """`otp serve` on ``redis_url``; its base URL."""
    port = free_port()
    env = clean_env(
        OTP_REDIS_URL=redis_url,
        OTP_SECRET_KEY=SECRET,
        OTP_PORT=str(port),
        OTP_ARGON2_TIME_COST="1",
        OTP_ARGON2_MEMORY_KIB="1024",
        OTP_LOG_LEVEL="WARNING",
        OTP_METRICS_TOKEN="metrics-token-0123456789abcdefghijklmnop",
        OTP_SMS="console",  # no Twilio here: the in-process worker writes the codes to the log, on purpose
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "otp", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=15)
        sync_redis.Redis.from_url(redis_url).flushall()


def fuzz(base: str, tmp_path: Path, *options: str) -> None:
    st = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not os.path.exists(st):
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [st, "run", f"{base}/openapi.json", "--seed", "20261126", "--checks", "all", *options],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**clean_env(), "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_fuzzing_the_documented_api_finds_no_server_error_and_no_undocumented_response(
    redis_url: str, served: str, tmp_path: Path
) -> None:
    key = admin_key(redis_url)
    fuzz(
        served,
        tmp_path,
        "-H",
        f"Authorization: Bearer {key}",
        # /v2 takes other credentials: the next test.
        "--exclude-path-regex",
        "^/v2/",
        "--max-examples",
        "25",
        # Our validation is stricter than a schema can say (a phone number's validity, one of two
        # query parameters): such rejections are 4xx by design, not a mismatch with the document.
        "--exclude-checks",
        "positive_data_acceptance",
    )


def test_fuzzing_the_twilio_compatible_api_finds_no_server_error_and_no_answer_outside_twilios_schemas(
    redis_url: str, served: str, tmp_path: Path
) -> None:
    account_sid, auth_token = admin_key(redis_url, twilio=True).split("_")[1:]
    fuzz(
        served,
        tmp_path,
        "--auth",
        f"{account_sid}:{auth_token}",
        "--include-path-regex",
        "^/v2/",
        "--max-examples",
        "15",
        # Besides the stricter validation above, Twilio's contract is lenient where a schema is
        # not, and otp answers as Twilio does: an unknown parameter is ignored, a boolean takes
        # 0 and 1, an empty filter (DateCreatedBefore=) filters nothing.
        "--exclude-checks",
        "positive_data_acceptance,negative_data_rejection",
    )
