"""``Client``: otp's ``/v1`` API over a blocking httpx client.

Each method is one endpoint (otp.client.endpoints: method, path, answer model) and the request model
it sends (otp.web.models, the ones the server validates with); ``AsyncClient`` has the same methods,
awaited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from otp.client import endpoints as ep
from otp.web import models


class Client:
    """``Client("https://otp.example.com", "otpk_…")``; a context manager (or call ``close()``).
    ``transport``: an httpx transport (a proxy's, a mounted test app's); ``timeout`` in seconds."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(**ep.options(base_url, api_key, timeout), transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        endpoint: ep.Endpoint[ep.R],
        path_params: Mapping[str, str] | None = None,
        *,
        query: models.Request | None = None,
        body: models.Request | None = None,
    ) -> ep.R:
        wire = endpoint.request(path_params, query=query, body=body)
        try:
            answer = self._http.request(
                wire.method, wire.path, params=wire.params, content=wire.content, headers=wire.headers
            )
        except httpx.TransportError as exc:
            raise ep.unreachable(exc) from exc
        return endpoint.answer(answer.status_code, answer.headers, answer.content)

    # -- verifications -------------------------------------------------------------------------

    def start(
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
        return self._call(ep.START, body=body)

    def check(
        self, code: str, *, verification_id: str | None = None, to: str | None = None, ip: str | None = None
    ) -> models.CheckResult:
        """The approval (``token`` set) for the right code; ``WrongCode`` otherwise. ``ip``: the end
        user's, recorded on the check's audit events."""
        result = self._call(ep.CHECK, body=models.CheckRequest(id=verification_id, to=to, code=code, ip=ip))
        return ep.approved(result)

    def get(self, verification_id: str) -> models.Verification:
        return self._call(ep.GET, {"id": verification_id})

    def cancel(self, verification_id: str) -> models.Verification:
        return self._call(ep.CANCEL, {"id": verification_id}, body=models.CancelRequest())

    def verify_token(
        self, token: str, *, max_age: int | None = None, consume: bool | None = None
    ) -> models.TokenResult:
        """``valid`` and what the token approved, or why not (``reason``); ``consume`` makes this its one use."""
        return self._call(
            ep.VERIFY_TOKEN, body=models.TokenVerifyRequest(token=token, max_age=max_age, consume=consume)
        )

    # -- the key's webhook ---------------------------------------------------------------------

    def get_webhook(self) -> models.KeyWebhook:
        return self._call(ep.GET_WEBHOOK)

    def set_webhook(self, url: str, event_types: Sequence[str] = ("*",)) -> models.KeyWebhook:
        return self._call(ep.SET_WEBHOOK, body=models.WebhookRequest(url=url, event_types=list(event_types)))

    def delete_webhook(self) -> models.WebhookRemoved:
        return self._call(ep.DELETE_WEBHOOK)

    # -- admin keys only -----------------------------------------------------------------------

    def audit(self, *, cursor: str | None = None, limit: int | None = None, **filters: str) -> models.AuditPage:
        """One page, newest first; ``filters`` are ``otp audit``'s (since, until, reason, rule,
        country, number, ip, key, decision, event). Follow ``next_cursor`` until it is None."""
        return self._call(ep.AUDIT, query=models.AuditQuery(**filters, cursor=cursor, limit=limit))

    def overview(self, since: str | None = None, *, window: str | None = None) -> Any:
        """The dashboard's overview (``models.Overview``) for ``window`` (or ``since``) 1h, 6h, 24h or 7d."""
        return self._call(ep.OVERVIEW, query=models.OverviewQuery(window=window, since=since))

    def conversion(
        self, *, country: str | None = None, prefix: str | None = None, since: str | None = None
    ) -> models.Conversion:
        return self._call(ep.CONVERSION, query=models.ConversionQuery(country=country, prefix=prefix, since=since))

    def safe_list(self) -> models.SafeList:
        return self._call(ep.SAFE_LIST)

    def add_to_safe_list(self, entry: str, *, country: bool | None = None) -> models.SafeEntry:
        """Exempt a number or prefix from the fraud rules; a whole country calling code (``+44``)
        needs ``country=True``."""
        return self._call(ep.ADD_TO_SAFE_LIST, body=models.SafeEntryRequest(entry=entry, country=country))

    def remove_from_safe_list(self, entry: str) -> models.SafeRemoved:
        return self._call(ep.REMOVE_FROM_SAFE_LIST, {"entry": entry})

    def unblock(self, *, country: str | None = None, prefix: str | None = None) -> models.Unblocked:
        """Lift the SMS-pumping block of a country or a prefix (give one)."""
        return self._call(ep.UNBLOCK, query=models.ScopeQuery(country=country, prefix=prefix))

    def opt_out(self, number: str, *, messaging_service_sid: str | None = None) -> models.OptOut:
        return self._call(
            ep.OPT_OUT, {"number": number}, query=models.OptOutQuery(messaging_service_sid=messaging_service_sid)
        )

    def clear_opt_out(self, number: str, *, messaging_service_sid: str | None = None) -> models.OptOut:
        return self._call(
            ep.CLEAR_OPT_OUT, {"number": number}, query=models.OptOutQuery(messaging_service_sid=messaging_service_sid)
        )

    def budgets(self) -> models.BudgetStatus:
        return self._call(ep.BUDGETS)

    def set_budget(self, key_id: str, amount: str) -> models.BudgetScope:
        return self._call(ep.SET_BUDGET, {"key_id": key_id}, body=models.BudgetRequest(amount=amount))

    def remove_budget(self, key_id: str) -> models.BudgetScope:
        return self._call(ep.REMOVE_BUDGET, {"key_id": key_id})
