"""Every ``/v1`` operation the clients call: its method, path and answer model — their one home, shared
by ``Client`` and ``AsyncClient`` — and the two halves of a call both clients share: the request
(``Endpoint.request``) and the answer (``Endpoint.answer``).

``tests/test_client.py`` holds this table against the app's routes (a new ``/v1`` route fails the
suite until it is here, with a method on both clients) and against the OpenAPI document's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgspec
import msgspec.structs

from otp import __version__
from otp.client import errors
from otp.web import models

R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True)
class Prepared:
    """What goes on the wire: ``path`` with its parameters filled in and quoted, the query, the body."""

    method: str
    path: str
    params: dict[str, str]
    content: bytes | None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.content is None else {"Content-Type": "application/json"}


def _fields(value: msgspec.Struct | None) -> dict[str, Any]:
    # Fields left at None are left out: otp reads a missing field and a null one alike.
    if value is None:
        return {}
    return {name: v for name, v in msgspec.structs.asdict(value).items() if v is not None}


@dataclass(frozen=True)
class Endpoint(Generic[R]):
    """``name`` is the clients' method for it; ``path`` names its parameters in braces."""

    name: str
    method: str
    path: str
    reply: type[R]

    def request(
        self,
        path_params: Mapping[str, str] | None = None,
        *,
        query: models.Request | None = None,
        body: models.Request | None = None,
    ) -> Prepared:
        # Every character quoted (a "/" in an entry must not make another path; "+" is sent as %2B).
        path = self.path.format_map({k: quote(v, safe="") for k, v in (path_params or {}).items()})
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in _fields(query).items()}
        content = None if body is None else msgspec.json.encode(_fields(body))
        return Prepared(self.method, path, params, content)

    def answer(self, status: int, headers: Mapping[str, str], content: bytes) -> R:
        """The answer's model, or the error otp's answer means."""
        if not 200 <= status < 300:
            raise errors.from_answer(status, headers, content)
        try:
            return msgspec.json.decode(content, type=self.reply)
        except msgspec.DecodeError as exc:
            raise errors.OtpError(
                f"otp's answer to {self.method} {self.path} is not a {self.reply.__name__}: {exc}",
                status=status,
                code="invalid_response",
            ) from exc


START = Endpoint("start", "POST", "/v1/verifications", models.Verification)
CHECK = Endpoint("check", "POST", "/v1/verifications/check", models.CheckResult)
GET = Endpoint("get", "GET", "/v1/verifications/{id}", models.Verification)
CANCEL = Endpoint("cancel", "POST", "/v1/verifications/{id}/cancel", models.Verification)
VERIFY_TOKEN = Endpoint("verify_token", "POST", "/v1/tokens/verify", models.TokenResult)
GET_WEBHOOK = Endpoint("get_webhook", "GET", "/v1/webhook", models.KeyWebhook)
SET_WEBHOOK = Endpoint("set_webhook", "PUT", "/v1/webhook", models.KeyWebhook)
DELETE_WEBHOOK = Endpoint("delete_webhook", "DELETE", "/v1/webhook", models.WebhookRemoved)
# Admin keys only.
AUDIT = Endpoint("audit", "GET", "/v1/audit", models.AuditPage)
OVERVIEW = Endpoint("overview", "GET", "/v1/stats/overview", models.Overview)
CONVERSION = Endpoint("conversion", "GET", "/v1/stats/conversion", models.Conversion)
SAFE_LIST = Endpoint("safe_list", "GET", "/v1/safelist", models.SafeList)
ADD_TO_SAFE_LIST = Endpoint("add_to_safe_list", "POST", "/v1/safelist", models.SafeEntry)
REMOVE_FROM_SAFE_LIST = Endpoint("remove_from_safe_list", "DELETE", "/v1/safelist/{entry}", models.SafeRemoved)
UNBLOCK = Endpoint("unblock", "DELETE", "/v1/blocks", models.Unblocked)
OPT_OUT = Endpoint("opt_out", "GET", "/v1/optouts/{number}", models.OptOut)
CLEAR_OPT_OUT = Endpoint("clear_opt_out", "DELETE", "/v1/optouts/{number}", models.OptOut)
BUDGETS = Endpoint("budgets", "GET", "/v1/budgets", models.BudgetStatus)
SET_BUDGET = Endpoint("set_budget", "PUT", "/v1/budgets/keys/{key_id}", models.BudgetScope)
REMOVE_BUDGET = Endpoint("remove_budget", "DELETE", "/v1/budgets/keys/{key_id}", models.BudgetScope)

ENDPOINTS: tuple[Endpoint[Any], ...] = (
    START,
    CHECK,
    GET,
    CANCEL,
    VERIFY_TOKEN,
    GET_WEBHOOK,
    SET_WEBHOOK,
    DELETE_WEBHOOK,
    AUDIT,
    OVERVIEW,
    CONVERSION,
    SAFE_LIST,
    ADD_TO_SAFE_LIST,
    REMOVE_FROM_SAFE_LIST,
    UNBLOCK,
    OPT_OUT,
    CLEAR_OPT_OUT,
    BUDGETS,
    SET_BUDGET,
    REMOVE_BUDGET,
)


# -- what both clients share besides the table ----------------------------------------------------


def options(base_url: str, api_key: str, timeout: float) -> dict[str, Any]:
    """The httpx client's settings: otp's address, the key as a Bearer token, the timeout."""
    return {
        "base_url": base_url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {api_key}", "User-Agent": f"otp-client/{__version__}"},
        "timeout": timeout,
    }


def unreachable(exc: Exception) -> errors.Unavailable:
    """No answer came (refused connection, timeout, dropped connection). A start whose answer timed
    out may still have sent its SMS: a retry is a resend of the same verification."""
    return errors.Unavailable(f"otp did not answer: {type(exc).__name__}: {exc}", status=None, code="unreachable")


def approved(result: models.CheckResult) -> models.CheckResult:
    """A check's answer when it approved; ``WrongCode`` (with the answer) when it did not."""
    if not result.approved:
        raise errors.WrongCode(result)
    return result
