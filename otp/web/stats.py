"""``GET /v1/stats/overview?window=1h|6h|24h|7d`` (or ``since``, its older name; admin keys): the
dashboard's overview as JSON (documented by ``models.Overview``).

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
    name = aggregates.WINDOW_PARAM if aggregates.WINDOW_PARAM in request.query_params else aggregates.OLD_WINDOW_PARAM
    chosen = request.query_params.get(name)
    # Stricter than the dashboard's aggregates.window, which takes " 7d " and "" too.
    if chosen is not None and chosen not in aggregates.WINDOWS:
        raise InvalidInput(f"must be one of {', '.join(aggregates.WINDOWS)}", field=name)
    store: Store = request.app.state.store
    now_ms = int(request.app.state.verifier.clock() * 1000)
    figures = await aggregates.overview(store, chosen, now_ms)
    return JSONResponse(figures.as_dict(), headers={"Cache-Control": "no-store"})


routes = [Route("/v1/stats/overview", overview, methods=["GET"])]
