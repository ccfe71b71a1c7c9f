"""Dashboard page times against a full audit log: a million events (the default OTP_AUDIT_MAXLEN).

    .venv/bin/python bench/dashboard_load.py [--events 1000000] [--runs 5] [--browser]

Starts its own redis-server on a free loopback port, fills the audit streams and the counters
beside them (hourly, refusal and source tallies, and the last hours' minute counters) with
synthetic traffic spread over the last 7 days (``otp.devtools.synthetic``: one Lua call per 5,000
entries), serves the app with the dashboard under uvicorn, signs in, and times every page over real
HTTP: min / median / max of ``--runs`` loads. ``--browser`` also times full page loads (HTML,
stylesheet, layout) in headless Chromium (/usr/bin/chromium, via Playwright).
Not a test: it asserts nothing and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from otp import dashboard
from otp.app import create_app
from otp.core import apikeys
from otp.devtools import synthetic
from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store
from otp.web import stats as stats_api

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105 - a throwaway Redis
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = [
    ("overview, 1 h", "/admin/?window=1h"),
    ("overview, 6 h", "/admin/?window=6h"),
    ("overview, 24 h", "/admin/?window=24h"),
    ("overview, 7 d", "/admin/?window=7d"),
    ("incidents, 1 h", "/admin/incidents?window=1h"),
    ("incidents, 6 h", "/admin/incidents?window=6h"),
    ("incidents, 24 h", "/admin/incidents?window=24h"),
    ("incidents, 7 d", "/admin/incidents?window=7d"),
    ("brute force, 7 d", "/admin/bruteforce?window=7d"),
    ("fraud, 1 h", "/admin/fraud?window=1h"),
    ("fraud, 24 h", "/admin/fraud?window=24h"),
    ("fraud, 7 d", "/admin/fraud?window=7d"),
    ("audit, first page", "/admin/audit"),
    ("audit, page 2", "{page2}"),
    ("audit, page 20", "{page20}"),
    ("audit, event=refused rule=ip_sends", "/admin/audit?event=refused&rule=ip_sends"),
    ("audit, country=NG event=approved since=1d", "/admin/audit?country=NG&event=approved&since=1d"),
    ("audit, rare filter (ip=203.0.113.7, whole log)", "/admin/audit?ip=203.0.113.7&event=canceled"),
    ("audit export, CSV (1,000 events)", "/admin/audit.csv"),
    ("GET /v1/stats/overview?window=7d", "/v1/stats/overview?window=7d"),
]
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


async def sign_in(http: httpx.AsyncClient, key: str) -> None:
    form = await http.get("/admin/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    response = await http.post("/admin/signin", data={"csrf": csrf.group(1), "key": key})
    if response.status_code != 303:
        raise SystemExit(f"sign-in failed: {response.status_code} {response.text[:200]}")


async def page_links(http: httpx.AsyncClient) -> dict[str, str]:
    links: dict[str, str] = {}
    url = "/admin/audit"
    for n in range(2, 21):
        match = NEXT.search((await http.get(url)).text)
        if not match:
            break
        url = match.group(1).replace("&amp;", "&")
        if n in (2, 20):
            links[f"page{n}"] = url
    return links


async def time_pages(http: httpx.AsyncClient, key: str, runs: int, links: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, path in PAGES:
        path = path.format(**links)
        headers = {"Authorization": f"Bearer {key}"} if path.startswith("/v1") else {}
        timings, size = [], 0
        for _ in range(runs):
            started = time.perf_counter()
            response = await http.get(path, headers=headers)
            timings.append((time.perf_counter() - started) * 1000)
            size = len(response.content)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code}")
        rows.append({"page": name, "min": min(timings), "median": statistics.median(timings), "max": max(timings)})
        rows[-1]["kb"] = size / 1024
    return rows


async def browser_times(base: str, key: str, runs: int, links: dict[str, str]) -> dict[str, float]:
    from playwright.async_api import async_playwright

    times: dict[str, float] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(base + "/admin/signin")
        await page.fill("#key", key)
        await page.click("button[type=submit]")
        await page.wait_for_url(base + "/admin/")
        for name, path in PAGES:
            if path.startswith("/v1") or ".csv" in path:
                continue
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                await page.goto(base + path.format(**links), wait_until="load")
                samples.append((time.perf_counter() - started) * 1000)
            times[name] = statistics.median(samples)
        await browser.close()
    return times


async def run(events: int, runs: int, browser: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="otp-dashboard-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", port=free_port(), appendonly=False)
        server.start()
        try:
            settings = Settings(redis_url=server.url, secret_keys=(SECRET,), worker=False, data_dir=tmp)
            app = create_app(settings)
            app.router.routes.extend([*stats_api.routes, dashboard.mount()])
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            task = asyncio.create_task(uv.serve())
            while not uv.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.02)
            client = connect(server.url)
            _, key = await apikeys.create(Store(client, partitions=16), "bench-admin", admin=True)
            await client.aclose()

            started = time.perf_counter()
            written = await synthetic.fill(app.state.store, events, now_ms=int(time.time() * 1000))
            fill_s = time.perf_counter() - started
            info = await app.state.store.client.info("memory")
            lengths = [await app.state.store.client.xlen(f"otp:{{p{p:02x}}}:audit") for p in range(16)]
            print(
                f"filled {written:,} events in {fill_s:.1f} s ({written / fill_s:,.0f}/s); streams hold "
                f"{sum(lengths):,} (MAXLEN ~ {settings.audit_maxlen:,}); Redis memory {info['used_memory_human']}",
                flush=True,
            )
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                await sign_in(http, key)
                links = await page_links(http)
                rows = await time_pages(http, key, runs, links)
            chromium = await browser_times(base, key, max(1, runs // 2), links) if browser else {}
            uv.should_exit = True
            await task
        finally:
            server.stop()
    header = "| page | min ms | median ms | max ms | KB |" + (" Chromium load ms |" if chromium else "")
    print("\n" + header)
    print("|" + "---|" * (5 + bool(chromium)))
    for row in rows:
        line = f"| {row['page']} | {row['min']:.0f} | {row['median']:.0f} | {row['max']:.0f} | {row['kb']:.0f} |"
        if chromium:
            line += f" {chromium[row['page']]:.0f} |" if row["page"] in chromium else " – |"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time full page loads in headless Chromium")
    args = parser.parse_args(argv)
    asyncio.run(run(args.events, args.runs, args.browser))
    return 0


if __name__ == "__main__":
    sys.exit(main())
