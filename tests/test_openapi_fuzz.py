"""schemathesis against the served OpenAPI document: no server errors, no response outside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis
from conftest import SECRET
from test_serve import clean_env, wait_until_ready

from otp.edge.embedded_redis import free_port
from otp.storage.store import Store


def admin_key(redis_url: str) -> str:
    import asyncio

    import redis.asyncio as aioredis

    from otp.core import apikeys

    async def create() -> str:
        client = aioredis.Redis.from_url(redis_url)
        _, key = await apikeys.create(Store(client, partitions=16), "fuzz", admin=True)
        await client.aclose()
        return key

    return asyncio.run(create())


def test_fuzzing_the_documented_api_finds_no_server_error_and_no_undocumented_response(
    redis_url: str, tmp_path: Path
) -> None:
    st = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not os.path.exists(st):
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
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
        key = admin_key(redis_url)
        result = subprocess.run(
            [
                st,
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "-H",
                f"Authorization: Bearer {key}",
                "--max-examples",
                "25",
                "--seed",
                "20261126",
                "--checks",
                "all",
                # Our validation is stricter than a schema can say (a phone number's validity, one of two
                # query parameters): such rejections are 4xx by design, not a mismatch with the document.
                "--exclude-checks",
                "positive_data_acceptance",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
            env={**env, "NO_COLOR": "1"},
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=15)
        sync_redis.Redis.from_url(redis_url).flushall()
