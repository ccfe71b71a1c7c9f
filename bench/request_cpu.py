"""CPU per request of one `otp serve` (minimal argon2, console SMS, its own Redis) answering
GET /v1/verifications/{id} (a delivery poll: the key lookup and fetch.lua), beside the plain
Starlette app (plain_app.py) under the same uvicorn, from the same client: two rounds of N each.

    .venv/bin/python bench/request_cpu.py            # N=3000 by default; N=5000 … to change it
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/request_cpu.py   # another checkout's otp

Prints {"poll": [ms, ms], "plain": [ms, ms]}: CPU (user + system, /proc) of the server process per
request. A/B two trees by alternating runs: this box's runs spread about ±10 %."""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from otp.edge.embedded_redis import free_port, redis_server_path

BENCH_DIR = Path(__file__).resolve().parent


def cpu(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    pid: int, url: str, headers: dict[str, str], n: int, c: int, method: str = "GET", body: Any = None
) -> float:
    async with httpx.AsyncClient() as http:
        sem = asyncio.Semaphore(c)

        async def one() -> None:
            async with sem:
                r = await http.request(method, url, headers=headers, json=body)
                assert r.status_code < 500, r.text

        await asyncio.gather(*(one() for _ in range(200)))
        before = cpu(pid)
        await asyncio.gather(*(one() for _ in range(n)))
        return (cpu(pid) - before) * 1000 / n


def main() -> None:
    tmp = tempfile.mkdtemp()
    rport, port, pport = free_port(), free_port(), free_port()
    redis = subprocess.Popen(
        [redis_server_path(), "--port", str(rport), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env.update(
        OTP_REDIS_URL=f"redis://127.0.0.1:{rport}/0",
        OTP_SECRET_KEY="x" * 48,
        OTP_PORT=str(port),
        OTP_WORKER="off",
        OTP_SMS="console",
        OTP_DATA_DIR=tmp,
        OTP_ARGON2_MEMORY_KIB="8192",
        OTP_ARGON2_TIME_COST="1",
        OTP_LOG_LEVEL="WARNING",
    )
    time.sleep(0.3)
    key = subprocess.run(
        [sys.executable, "-m", "otp", "keys", "create", "micro"], env=env, capture_output=True, text=True
    ).stdout.split()[-1]
    api = subprocess.Popen(
        [sys.executable, "-m", "otp", "serve"], env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    plain = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "plain_app:app",
            "--app-dir",
            str(BENCH_DIR),
            "--port",
            str(pport),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                httpx.get(f"http://127.0.0.1:{pport}/docs")
                break
            except Exception:
                time.sleep(0.1)
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/verifications", json={"to": "+14155550123"}, headers=h)
        vid = r.json()["id"]
        n = int(os.environ.get("N", "3000"))
        res: dict[str, list[float]] = {}
        for _ in range(2):
            poll_url, plain_url = f"http://127.0.0.1:{port}/v1/verifications/{vid}", f"http://127.0.0.1:{pport}/echo"
            res.setdefault("poll", []).append(asyncio.run(measure(api.pid, poll_url, h, n, 8)))
            body = {"to": "+14155550123"}
            res.setdefault("plain", []).append(asyncio.run(measure(plain.pid, plain_url, h, n, 8, "POST", body)))
        print({k: [round(x, 3) for x in v] for k, v in res.items()})
    finally:
        for p in (api, plain, redis):
            p.terminate()


if __name__ == "__main__":
    main()
