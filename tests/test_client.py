"""otp.client against a real `otp serve` (the development setup: embedded Redis, console SMS), as an
app embedding otp uses it: typed answers, typed errors, every /v1 call. Each test runs with both
clients: ``Client``, and ``AsyncClient`` driven to completion on an event loop of the test's own."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest
from conftest import make_settings, repo_root
from dev_server import DevServer, otp_beside, running
from starlette.routing import BaseRoute, Mount, Route
from test_examples import answer_at_the_prompt, readme_section
from test_serve import clean_env, otp_command

from otp.app import create_app
from otp.client import (
    AsyncClient,
    CheckResult,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    OtpError,
    RateLimited,
    Unauthorized,
    Unavailable,
    Verification,
    WrongCode,
    endpoints,
    errors,
    models,
)
from otp.edge.embedded_redis import free_port
from otp.web import models as server_models
from otp.web import openapi_v1

KINDS = ("sync", "async")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """`otp serve` with nothing configured; private webhook URLs allowed, so one can point at loopback."""
    folder = tmp_path_factory.mktemp("client")
    port = free_port()
    env = clean_env(
        OTP_DEV="1",
        OTP_PORT=str(port),
        OTP_ARGON2_MEMORY_KIB="8192",
        OTP_ARGON2_TIME_COST="1",
        OTP_WEBHOOK_ALLOW_PRIVATE="1",
    )
    with running(otp_command("serve"), env, folder, port) as server:
        yield server


@pytest.fixture(scope="module")
def admin_key(dev: DevServer) -> str:
    return (dev.folder / ".otp" / "dev-api-key").read_text().strip()


@pytest.fixture(scope="module")
def tenant_key(dev: DevServer) -> str:
    """A key that is not an admin's, from `otp keys create`, run beside the server."""
    return otp_beside(dev, "keys", "create", "checkout-app").strip().splitlines()[-1]


class Awaiting:
    """An ``AsyncClient`` whose methods a synchronous test calls: each coroutine is run to completion
    on one event loop (httpx's connections belong to the loop that opened them)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(method(*args, **kwargs))

        return run

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def connect(kind: str, base: str, key: str) -> Client:
    # The two clients' methods are the same (test_both_clients_have_the_same_methods), so an
    # Awaiting stands in for a Client here.
    return Client(base, key) if kind == "sync" else cast(Client, Awaiting(AsyncClient(base, key)))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def otp(kind: str, dev: DevServer, admin_key: str) -> Iterator[Client]:
    client = connect(kind, dev.base, admin_key)
    yield client
    client.close()


@pytest.fixture
def tenant(kind: str, dev: DevServer, tenant_key: str) -> Iterator[Client]:
    client = connect(kind, dev.base, tenant_key)
    yield client
    client.close()


def number(kind: str, n: int) -> str:
    """A number of this test's own: the console log shows its last four digits, unique per test and client."""
    return f"+1501712{KINDS.index(kind) + 3}{n:03d}"


# -- verifications ---------------------------------------------------------------------------------


def test_start_then_the_code_from_the_console_log_checks_approved(otp: Client, dev: DevServer, kind: str) -> None:
    to = number(kind, 1)
    since = len(dev.lines)
    started = otp.start(to)
    assert isinstance(started, Verification)
    assert started.status == "pending" and started.to.endswith(to[-4:]) and to not in started.to
    assert started.send_attempts[0].delivery.status in ("queued", "sent", "accepted")
    approval = otp.check(dev.code(to, since=since), verification_id=started.id)
    assert isinstance(approval, CheckResult)
    assert approval.approved and approval.status == "approved" and approval.token
    assert otp.get(started.id).status == "approved"


def test_a_check_by_number_approves(otp: Client, dev: DevServer, kind: str) -> None:
    to = number(kind, 2)
    since = len(dev.lines)
    started = otp.start(to, locale="en")
    assert otp.check(dev.code(to, since=since), to=to).id == started.id


def test_the_approval_token_verifies_once_when_consumed(otp: Client, dev: DevServer, kind: str) -> None:
    to = number(kind, 3)
    since = len(dev.lines)
    started = otp.start(to)
    token = otp.check(dev.code(to, since=since), verification_id=started.id).token
    assert token
    verified = otp.verify_token(token)
    assert verified.valid and verified.verification_id == started.id and verified.number_hash
    assert otp.verify_token(token, max_age=60, consume=True).valid
    used = otp.verify_token(token)
    assert not used.valid and used.reason == "token_used"


def test_a_wrong_code_raises_wrong_code_with_the_attempts_left(otp: Client, dev: DevServer, kind: str) -> None:
    to = number(kind, 4)
    since = len(dev.lines)
    started = otp.start(to)
    right = dev.code(to, since=since)
    wrong = right[:-1] + str((int(right[-1]) + 1) % 10)
    with pytest.raises(WrongCode) as refused:
        otp.check(wrong, verification_id=started.id)
    assert refused.value.code == "check_failed" and refused.value.field == "code"
    assert refused.value.attempts_left == started.max_attempts - 1
    assert refused.value.verification_status == "pending" and refused.value.result.id == started.id
    assert "attempts left" in str(refused.value)
    assert otp.check(right, verification_id=started.id).approved


def test_a_start_within_the_resend_cooldown_raises_rate_limited_with_retry_after(otp: Client, kind: str) -> None:
    to = number(kind, 5)
    first = otp.start(to)
    assert otp.start(to).id == first.id  # the first resend goes out at once, on the same verification
    with pytest.raises(RateLimited) as refused:
        otp.start(to)
    assert refused.value.status == 429 and refused.value.code == "resend_too_soon"
    assert refused.value.retry_after is not None and refused.value.retry_after > 0
    assert isinstance(refused.value, OtpError) and refused.value.detail is not None


def test_a_bad_number_raises_invalid_request_naming_to(otp: Client) -> None:
    with pytest.raises(InvalidRequest) as refused:
        otp.start("12")
    assert refused.value.status == 400 and refused.value.field == "to" and refused.value.code


def test_a_check_with_neither_id_nor_number_raises_invalid_request(otp: Client) -> None:
    with pytest.raises(InvalidRequest) as refused:
        otp.check("123456")
    assert refused.value.field == "id" and refused.value.code == "missing_field"


def test_an_unknown_verification_id_raises_not_found(otp: Client) -> None:
    unknown = "VE" + "0" * 32
    with pytest.raises(NotFound) as refused:
        otp.get(unknown)
    assert refused.value.status == 404
    with pytest.raises(NotFound):
        otp.cancel(unknown)


def test_cancel_then_cancel_again_raises_conflict(otp: Client, kind: str) -> None:
    started = otp.start(number(kind, 6))
    assert otp.cancel(started.id).status == "canceled"
    with pytest.raises(Conflict) as refused:
        otp.cancel(started.id)
    assert refused.value.status == 409


# -- keys and reachability -------------------------------------------------------------------------


def test_an_unknown_key_raises_unauthorized(dev: DevServer, kind: str) -> None:
    client = connect(kind, dev.base, "otpk_" + "0" * 16 + "_" + "0" * 64)
    with pytest.raises(Unauthorized) as refused:
        client.start(number(kind, 7))
    client.close()
    assert refused.value.status == 401


def test_an_admin_call_with_a_tenant_key_raises_forbidden(tenant: Client) -> None:
    with pytest.raises(Forbidden) as refused:
        tenant.safe_list()
    assert refused.value.status == 403 and refused.value.field == "Authorization"


def test_no_server_raises_unavailable_without_a_status(kind: str) -> None:
    client = connect(kind, f"http://127.0.0.1:{free_port()}", "otpk_x")
    with pytest.raises(Unavailable) as refused:
        client.get("VE" + "0" * 32)
    client.close()
    assert refused.value.status is None and refused.value.code == "unreachable"
    assert isinstance(refused.value.__cause__, httpx.ConnectError)


def test_an_answer_that_is_not_otps_json_keeps_its_status_and_retry_after() -> None:
    # A reverse proxy's page in front of otp: no error body, only the status and the header.
    refused = errors.from_answer(502, {"retry-after": "3"}, b"<html>Bad Gateway</html>")
    assert isinstance(refused, Unavailable)
    assert (refused.status, refused.code, refused.retry_after, refused.field) == (502, "unavailable", 3, None)


@pytest.mark.parametrize(("left", "says"), [(2, "wrong code, 2 attempts left"), (1, "wrong code, 1 attempt left")])
def test_a_wrong_codes_message_counts_the_attempts_left_in_words(left: int, says: str) -> None:
    result = CheckResult(id="VE" + "1" * 32, status="pending", approved=False, attempts_left=left, delivery=None)
    assert str(WrongCode(result)) == says


# -- the key's webhook -----------------------------------------------------------------------------


def test_a_key_sets_reads_and_removes_its_webhook(tenant: Client) -> None:
    url = "http://127.0.0.1:9/otp-events"
    saved = tenant.set_webhook(url, ["verification.approved", "message.failed"])
    assert isinstance(saved, models.KeyWebhook) and saved.url == url
    assert tenant.get_webhook().event_types == ["verification.approved", "message.failed"]
    assert tenant.delete_webhook().removed
    with pytest.raises(NotFound) as refused:
        tenant.get_webhook()
    assert refused.value.field == "webhook"
    with pytest.raises(InvalidRequest) as bad:
        tenant.set_webhook("ftp://example.com/hook")
    assert bad.value.field == "url"


# -- admin calls -----------------------------------------------------------------------------------


def test_the_safe_list_adds_lists_and_removes(otp: Client, kind: str) -> None:
    entry = number(kind, 8)
    assert otp.add_to_safe_list(entry).entry == entry
    assert entry in otp.safe_list().entries
    assert otp.remove_from_safe_list(entry).removed
    with pytest.raises(NotFound) as refused:
        otp.remove_from_safe_list(entry)
    assert refused.value.field == "entry"


def test_blocks_conversion_and_opt_outs(otp: Client, kind: str) -> None:
    assert otp.unblock(country="US").was_blocked is False
    assert otp.unblock(prefix="+1501712").prefix == "+1501712"
    conversion = otp.conversion(country="US", since="2h")
    assert (conversion.country, conversion.since_hours) == ("US", 2)
    with pytest.raises(InvalidRequest) as refused:
        otp.conversion()
    assert refused.value.field == "country"
    to = number(kind, 9)
    status = otp.opt_out(to)
    assert status.opted_out is False and to not in status.to
    with pytest.raises(NotFound) as not_opted_out:
        otp.clear_opt_out(to, messaging_service_sid="MG" + "0" * 32)
    assert not_opted_out.value.field == "number"


def test_the_overview_and_the_audit_log(otp: Client, kind: str) -> None:
    otp.start(number(kind, 10))
    overview = otp.overview("1h")
    # models.Overview is built with msgspec.defstruct, so its fields are Any to mypy (overview() says Any).
    made = type(overview)  # asserted apart, so that mypy doesn't narrow overview to a bare Struct
    assert made is models.Overview
    assert overview.since == "1h" and overview.totals.started >= 1
    page = otp.audit(event="started", limit=5)
    assert isinstance(page, models.AuditPage) and 1 <= len(page.events) <= 5
    assert {event["event"] for event in page.events} == {"started"}
    with pytest.raises(InvalidRequest) as refused:
        otp.audit(limit=0)
    assert refused.value.field == "limit"


def test_budgets_per_key(otp: Client, tenant_key: str) -> None:
    key_id = tenant_key.split("_")[1]
    assert isinstance(otp.budgets(), models.BudgetStatus)
    assert otp.set_budget(key_id, "25.00").scope == f"key:{key_id}"
    assert f"key:{key_id}" in {row.scope for row in otp.budgets().scopes}
    assert otp.remove_budget(key_id).budget is None
    with pytest.raises(NotFound) as refused:
        otp.remove_budget("0" * 16)
    assert refused.value.field == "key_id"


async def test_the_async_client_is_an_async_context_manager(dev: DevServer, admin_key: str) -> None:
    to = number("async", 11)
    since = len(dev.lines)
    async with AsyncClient(dev.base, admin_key, timeout=5.0) as otp:
        started = await otp.start(to)
        code = await asyncio.to_thread(dev.code, to, since=since)
        assert (await otp.check(code, verification_id=started.id)).approved


# -- the client covers the API ---------------------------------------------------------------------


def _v1_routes(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= _v1_routes(route.routes)
        elif isinstance(route, Route) and route.path.startswith("/v1/"):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {id:ve} → {id}
            found |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return found


def test_every_v1_route_of_the_app_has_a_client_endpoint() -> None:
    app = create_app(make_settings("redis://127.0.0.1:1/0"))
    table = {(e.method, e.path) for e in endpoints.ENDPOINTS}
    assert _v1_routes(app.routes) == table


def test_both_clients_have_a_method_for_every_endpoint_with_the_same_parameters() -> None:
    for endpoint in endpoints.ENDPOINTS:
        sync, awaited = getattr(Client, endpoint.name), getattr(AsyncClient, endpoint.name)
        assert inspect.iscoroutinefunction(awaited) and not inspect.iscoroutinefunction(sync), endpoint.name
        assert inspect.signature(sync).parameters == inspect.signature(awaited).parameters, endpoint.name
        assert inspect.signature(sync).return_annotation == inspect.signature(awaited).return_annotation


def test_both_clients_have_the_same_methods() -> None:
    public = {name for name in dir(Client) if not name.startswith("_")} - {"close"}
    assert public == {name for name in dir(AsyncClient) if not name.startswith("_")} - {"aclose"}
    assert public == {e.name for e in endpoints.ENDPOINTS}


def test_every_request_field_is_a_parameter_of_its_client_method() -> None:
    """A field added to a request model fails here until the client sends it."""
    for endpoint in endpoints.ENDPOINTS:
        operation = next(
            op for op in openapi_v1.OPERATIONS if (op.method.upper(), op.path) == (endpoint.method, endpoint.path)
        )
        parameters = inspect.signature(getattr(Client, endpoint.name)).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        for model in (operation.body, operation.query):
            fields = set(model.__struct_fields__) if model else set()
            named = {"verification_id" if name == "id" else name for name in fields}
            assert takes_any or named <= set(parameters), (endpoint.name, named - set(parameters))


def test_the_endpoint_table_answers_with_the_models_the_openapi_document_names() -> None:
    documented = {(op.method.upper(), op.path): op.reply for op in openapi_v1.OPERATIONS if op.path.startswith("/v1/")}
    assert documented == {(e.method, e.path): e.reply for e in endpoints.ENDPOINTS}


def test_importing_the_client_loads_neither_redis_nor_starlette() -> None:
    # A fresh interpreter: this one has imported the service already.
    probe = (
        "import sys, otp.client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'starlette', 'uvicorn', 'twilio', 'argon2'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=repo_root(), check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_answers_are_the_servers_own_models() -> None:
    assert models.Verification is server_models.Verification and models.Overview is server_models.Overview
    assert endpoints.CHECK.reply is server_models.CheckResult


def test_the_readme_example_runs_as_it_is(dev: DevServer) -> None:
    """The README's Python client block, run in the folder of `otp serve` (its .otp/dev-api-key) with
    the port changed, answered with the code the serve log shows."""
    (block,) = re.findall(r"```python\n(.*?)```", readme_section("Python client"), re.S)
    assert len(block.strip().splitlines()) <= 10
    assert '"http://127.0.0.1:8000"' in block
    script = block.replace('"http://127.0.0.1:8000"', repr(dev.base))
    out = answer_at_the_prompt(dev, [sys.executable, "-c", script], "+15017122667", env=clean_env())
    assert "approved; token:" in out
