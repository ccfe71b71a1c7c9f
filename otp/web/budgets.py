"""/v1/budgets (admin API keys only): today's spend per budget scope, and each key's own budget."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otp.audit_fields import AdminAction
from otp.core import apikeys
from otp.core.budget import Budgets, parse_amount
from otp.errors import InvalidInput, NotFound
from otp.web import models
from otp.web.admin import _audit_admin_action, _now_ms, admin
from otp.web.body import read_model
from otp.web.models import render


def _budgets(request: Request) -> Budgets:
    found: Budgets = request.app.state.budgets
    return found


async def _status(request: Request, tenants: list[str]) -> models.BudgetStatus:
    status = await _budgets(request).status(tenants, [], _now_ms(request))
    return models.BudgetStatus(
        day=status["day"],
        timezone=status["timezone"],
        resets_at=status["resets_at"],
        scopes=[models.BudgetScope(**row) for row in status["scopes"]],
    )


async def budgets(request: Request) -> Response:
    await admin(request)
    keys = await apikeys.list_keys(request.app.state.store)
    return render(await _status(request, sorted(k.key_id for k in keys if not k.admin)))


async def key_budget(request: Request) -> Response:
    """PUT sets a key's daily budget ({"amount": "25.00"}); DELETE removes it (its spend still counts)."""
    key = await admin(request)
    key_id = request.path_params["key_id"]
    if key_id not in {k.key_id for k in await apikeys.list_keys(request.app.state.store)}:
        raise NotFound("no such API key", field="key_id")
    if request.method == "PUT":
        body = await read_model(request, models.BudgetRequest)
        try:
            amount = parse_amount(body.amount, "amount")
        except ValueError as exc:
            raise InvalidInput(str(exc).removeprefix("amount: "), field="amount") from None
        await _budgets(request).set_tenant_budget(key_id, amount)
        await _audit_admin_action(request, key, AdminAction.BUDGET_SET, f"{key_id}={amount}")
    else:
        await _budgets(request).set_tenant_budget(key_id, None)
        await _audit_admin_action(request, key, AdminAction.BUDGET_REMOVE, key_id)
    status = await _status(request, [key_id])
    return render(status.scopes[-1])


routes = [
    Route("/v1/budgets", budgets, methods=["GET"]),
    Route("/v1/budgets/keys/{key_id}", key_budget, methods=["PUT", "DELETE"]),
]
