"""``AsyncClient``: otp's ``/v1`` API over an asyncio httpx client; ``Client``'s methods (otp.client.sync),
awaited. The two differ only in ``await``: what each call sends and what its answer means are the
endpoint table's (otp.client.endpoints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from otp.client import endpoints as ep
from otp.web import models


class AsyncClient:
    """``AsyncClient("https://otp.example.com", "otpk_…")``; an async context manager (or ``await aclose()``).
    ``transport``: an httpx transport (a proxy's, a mounted test app's); ``timeout`` in seconds."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(**ep.options(base_url, api_key, timeout), transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        endpoint: ep.Endpoint[ep.R],
        path_params: Mapping[str, str] | None = None,
        *,
        query: models.Request | None = None,
        body: models.Request | None = None,
    ) -> ep.R:
        wire = endpoint.request(path_params, query=query, body=body)
        try:
            answer = await self._http.request(
                wire.method, wire.path, params=wire.params, content=wire.content, headers=wire.headers
            )
        except httpx.TransportError as exc:
            raise ep.unreachable(exc) from exc
        return endpoint.answer(answer.status_code, answer.headers, answer.content)

    # -- verifications -------------------------------------------------------------------------

    async def start(
        self,
        to: str,
        channel: str = "sms",
        *,
        locale: str | None = None,
        ip: str | None = None,
        risk_check: str | None = None,
        app_hash: str | None = None,
        template: str | None = None,
        substitutions: dict[str, str] | None = None,
    ) -> models.Verification:
        """Send a code to ``to`` (a second start for a pending number is a resend)."""
        body = models.StartRequest(
            to=to,
            channel=channel,
            locale=locale,
            ip=ip,
            risk_check=risk_check,
            app_hash=app_hash,
            template=template,
            substitutions=substitutions,
        )
        return await self._call(ep.START, body=body)

    async def check(
        self, code: str, *, verification_id: str | None = None, to: str | None = None, ip: str | None = None
    ) -> models.CheckResult:
        """The approval (``token`` set) for the right code; ``WrongCode`` otherwise. ``ip``: the end
        user's, recorded on the check's audit events."""
        result = await self._call(ep.CHECK, body=models.CheckRequest(id=verification_id, to=to, code=code, ip=ip))
        return ep.approved(result)

    async def get(self, verification_id: str) -> models.Verification:
        return await self._call(ep.GET, {"id": verification_id})

    async def cancel(self, verification_id: str) -> models.Verification:
        return await self._call(ep.CANCEL, {"id": verification_id}, body=models.CancelRequest())

    async def verify_token(
        self, token: str, *, max_age: int | None = None, consume: bool | None = None
    ) -> models.TokenResult:
        """``valid`` and what the token approved, or why not (``reason``); ``consume`` makes this its one use."""
        return await self._call(
            ep.VERIFY_TOKEN, body=models.TokenVerifyRequest(token=token, max_age=max_age, consume=consume)
        )

    # -- the key's webhook ---------------------------------------------------------------------

    async def get_webhook(self) -> models.KeyWebhook:
        return await self._call(ep.GET_WEBHOOK)

    async def set_webhook(self, url: str, event_types: Sequence[str] = ("*",)) -> models.KeyWebhook:
        return await self._call(ep.SET_WEBHOOK, body=models.WebhookRequest(url=url, event_types=list(event_types)))

    async def delete_webhook(self) -> models.WebhookRemoved:
        return await self._call(ep.DELETE_WEBHOOK)

    # -- admin keys only -----------------------------------------------------------------------

    async def audit(self, *, cursor: str | None = None, limit: int | None = None, **filters: str) -> models.AuditPage:
        """One page, newest first; ``filters`` are ``otp audit``'s (since, until, reason, rule,
        country, number, ip, key, decision, event). Follow ``next_cursor`` until it is None."""
        return await self._call(ep.AUDIT, query=models.AuditQuery(**filters, cursor=cursor, limit=limit))

    async def overview(self, since: str | None = None, *, window: str | None = None) -> Any:
        """The dashboard's overview (``models.Overview``) for ``window`` (or ``since``) 1h, 6h, 24h or 7d."""
        return await self._call(ep.OVERVIEW, query=models.OverviewQuery(window=window, since=since))

    async def conversion(
        self, *, country: str | None = None, prefix: str | None = None, since: str | None = None
    ) -> models.Conversion:
        return await self._call(
            ep.CONVERSION, query=models.ConversionQuery(country=country, prefix=prefix, since=since)
        )

    async def safe_list(self) -> models.SafeList:
        return await self._call(ep.SAFE_LIST)

    async def add_to_safe_list(self, entry: str, *, country: bool | None = None) -> models.SafeEntry:
        """Exempt a number or prefix from the fraud rules; a whole country calling code (``+44``)
        needs ``country=True``."""
        return await self._call(ep.ADD_TO_SAFE_LIST, body=models.SafeEntryRequest(entry=entry, country=country))

    async def remove_from_safe_list(self, entry: str) -> models.SafeRemoved:
        return await self._call(ep.REMOVE_FROM_SAFE_LIST, {"entry": entry})

    async def unblock(self, *, country: str | None = None, prefix: str | None = None) -> models.Unblocked:
        """Lift the SMS-pumping block of a country or a prefix (give one)."""
        return await self._call(ep.UNBLOCK, query=models.ScopeQuery(country=country, prefix=prefix))

    async def opt_out(self, number: str, *, messaging_service_sid: str | None = None) -> models.OptOut:
        return await self._call(
            ep.OPT_OUT, {"number": number}, query=models.OptOutQuery(messaging_service_sid=messaging_service_sid)
        )

    async def clear_opt_out(self, number: str, *, messaging_service_sid: str | None = None) -> models.OptOut:
        return await self._call(
            ep.CLEAR_OPT_OUT, {"number": number}, query=models.OptOutQuery(messaging_service_sid=messaging_service_sid)
        )

    async def budgets(self) -> models.BudgetStatus:
        return await self._call(ep.BUDGETS)

    async def set_budget(self, key_id: str, amount: str) -> models.BudgetScope:
        return await self._call(ep.SET_BUDGET, {"key_id": key_id}, body=models.BudgetRequest(amount=amount))

    async def remove_budget(self, key_id: str) -> models.BudgetScope:
        return await self._call(ep.REMOVE_BUDGET, {"key_id": key_id})
