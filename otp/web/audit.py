"""``GET /v1/audit``: the audit log for admin API keys, filtered and paged newest first.

Query parameters are the ``otp audit`` options (``since``, ``until``, ``reason``, ``rule``,
``country``, ``number``, ``ip``, ``key``, ``decision``, ``event``) plus ``limit`` (1..1000, default
100) and ``cursor`` (``next_cursor`` of the previous page). Without ``since`` the window is the
``audit.DEFAULT_WINDOW`` (24 hours) before ``until``, or before now; give ``since`` (and the same
filters) on every page to page a fixed window. A page may hold fewer than ``limit`` events (even
none) while ``next_cursor`` is set: one request examines at most ``audit.DEFAULT_SCAN_LIMIT``
entries, matching or not, so Redis (shared by every tenant) is never held up for more than a few
milliseconds; keep following the cursor until it is null. ``summary`` counts this page's events only.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otp.core import audit
from otp.core.validators import whole_number
from otp.errors import Forbidden, InvalidInput
from otp.storage.store import Store
from otp.web import models
from otp.web.body import check_query

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _limit(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_LIMIT
    return whole_number(raw.strip(), field="limit", low=1, high=MAX_LIMIT)


def _cursor(raw: str | None, partitions: int) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        audit.decode_cursor(raw.strip(), partitions)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="cursor") from None
    return raw.strip()


async def list_events(request: Request) -> Response:
    key = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    if not key.admin:
        raise Forbidden("only admin API keys may read the audit log", field="Authorization")
    params = request.query_params
    check_query(params, models.AuditQuery)
    state = request.app.state
    store: Store = state.store
    flt = audit.filter_from_params(
        {name: params.get(name) for name in audit.FILTER_PARAMS},
        now=state.verifier.clock(),
        default_region=state.settings.default_region,
        keyring=state.verifier.keyring,
        default_window=audit.DEFAULT_WINDOW,
    )
    limit = _limit(params.get("limit"))
    cursor = _cursor(params.get("cursor"), store.partitions)
    events, next_cursor = await audit.read(store, flt, limit=limit, before=cursor)
    page = models.AuditPage(
        events=[e.as_dict() for e in events], next_cursor=next_cursor, summary=audit.summary(events)
    )
    # Masked, but still about people's numbers: no shared cache keeps a copy.
    return models.render(page, headers={"Cache-Control": "no-store"})


routes = [Route("/v1/audit", list_events, methods=["GET"])]
