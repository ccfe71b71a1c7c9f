"""``GET /healthz`` and ``GET /readyz``.

- /healthz: the process can serve. With an embedded Redis (`otp serve`'s development setup) that
  includes the Redis it runs: while that one is down or being restarted the answer is 503 naming
  it. The checks are callables the shell hands to ``create_app`` (``health_checks``), so this
  module knows nothing of what they watch.
- /readyz: Redis reachable with the right configuration (``otp.core.readiness``).

Both answer ``{"status", "checks"}`` (``checks`` is ``{}`` when /healthz has none); a 503 carries
Retry-After like every other 503."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core.readiness import OK, Readiness
from otp.web import errors as web_errors

HealthChecks = Mapping[str, Callable[[], str]]  # name → "ok" or what is wrong


def _answer(checks: Mapping[str, str]) -> Response:
    good = all(value == OK for value in checks.values())
    status = 200 if good else 503
    return JSONResponse(
        {"status": "ok" if good else "unavailable", "checks": dict(checks)},
        status_code=status,
        # A 503 promises a retry: the one rule (otp.web.errors.headers) gives it its Retry-After.
        headers=web_errors.headers(status, None),
    )


async def healthz(request: Request) -> Response:
    health_checks: HealthChecks = request.app.state.health_checks
    # No checks (no embedded Redis to watch): {"status": "ok", "checks": {}}, the same shape as /readyz.
    return _answer({name: check() for name, check in health_checks.items()})


async def readyz(request: Request) -> Response:
    readiness: Readiness = request.app.state.readiness
    return _answer(await readiness.checks())
