"""``GET /v1/stats/overview?since=1h|24h|7d`` (admin keys): the dashboard's overview as JSON
(documented by ``models.Overview``).

The same ``aggregates.overview`` the dashboard page renders, so a script and the page always
agree: verifications started / approved / expired…, the conversion rate, the delivery funnel
with Twilio error codes, refusals by rule and reason, and the chart's buckets.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otp.core import stats as aggregates
from otp.errors import InvalidInput
from otp.storage.store import Store
from otp.web import models
from otp.web.admin import admin
from otp.web.body import check_query


async def overview(request: Request) -> JSONResponse:
    await admin(request)
    check_query(request.query_params, models.OverviewQuery)
    since = request.query_params.get("since")
    # Stricter than the dashboard's aggregates.window, which takes " 7d " and "" too.
    if since is not None and since not in aggregates.WINDOWS:
        raise InvalidInput(f"must be one of {', '.join(aggregates.WINDOWS)}", field="since")
    store: Store = request.app.state.store
    now_ms = int(request.app.state.verifier.clock() * 1000)
    figures = await aggregates.overview(store, since, now_ms)
    return JSONResponse(figures.as_dict(), headers={"Cache-Control": "no-store"})


routes = [Route("/v1/stats/overview", overview, methods=["GET"])]
