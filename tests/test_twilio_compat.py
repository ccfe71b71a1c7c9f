"""The Twilio Verify v2-compatible API, driven by the official `twilio` SDK against the app served
by uvicorn (in a thread, because the SDK is synchronous), with the worker delivering SMS through
the Twilio stand-in. Every response body -- errors included -- is validated against the schemas of
Twilio's own OpenAPI document, with every listed property required and no other allowed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
import redis.asyncio as aioredis
import uvicorn
from conftest import NO_PUMPING, make_settings, policy, repo_root
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN, twilio_options
from test_audit import run_cli
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from otp.app import create_app
from otp.clock import SYSTEM, Clock
from otp.core import apikeys
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.embedded_redis import free_port
from otp.settings import Settings
from otp.storage.store import Store

SPEC_NAME = "twilio_verify_v2.json"
DATE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
CODE_IN_SMS = re.compile(r"(?<!\d)\d{4,10}(?!\d)")
# Every test but the policy ones: back-to-back resends, and pumping floors out of the way.
RELAXED = {"resend_cooldown": 0, **NO_PUMPING}


def spec_path() -> Path:
    candidates: list[str | Path] = [
        os.environ.get("OTP_TWILIO_OAI", ""),
        repo_root().parent / "shared" / "ref" / "twilio-oai" / SPEC_NAME,
        # A copy (MIT, see tests/contracts/LICENSE.twilio-oai), so a fresh clone tests on its own.
        repo_root() / "tests" / "contracts" / SPEC_NAME,
        repo_root() / "shared" / "ref" / "twilio-oai" / SPEC_NAME,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail(f"Twilio's {SPEC_NAME} not found (looked in {candidates}); set OTP_TWILIO_OAI to its path")


# -- the contract ---------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema, strictly: every listed property required, no others, ``nullable``
    as a null type, and Twilio's date and URL formats as patterns."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return {"$ref": schema["$ref"]}
    out = {k: v for k, v in schema.items() if k not in ("nullable", "properties", "items", "x-twilio", "examples")}
    if "items" in schema:
        out["items"] = strict(schema["items"])
    if "properties" in schema:
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        out["required"] = sorted(schema["properties"])
        out["additionalProperties"] = False
    if schema.get("format") == "date-time":
        out["pattern"] = DATE
    if schema.get("format") == "uri":
        out["pattern"] = "^https?://"
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _path_pattern(template: str) -> re.Pattern[str]:
    parts = ["[^/]+" if p.startswith("{") else re.escape(p) for p in template.split("/")]
    return re.compile("^" + "/".join(parts) + "$")


class Contract:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.components = {name: strict(s) for name, s in spec["components"]["schemas"].items()}
        # Literal paths first: /v2/Attempts/Summary before /v2/Attempts/{Sid}.
        self.paths = sorted(
            ((t.count("{"), _path_pattern(t), item) for t, item in spec["paths"].items()), key=lambda r: r[0]
        )
        create = spec["paths"]["/v2/Services/{ServiceSid}/Verifications"]["post"]
        self.error_schema = create["responses"]["429"]["content"]["application/json"]["schema"]
        self.checked = 0

    def operation(self, method: str, path: str) -> dict[str, Any]:
        for _, pattern, item in self.paths:
            if pattern.match(path):
                assert method.lower() in item, f"{method} {path} is not in the spec"
                return dict(item[method.lower()])
        raise AssertionError(f"{path} is not a path of the spec")

    def validate(self, method: str, url: str, status: int, text: str) -> None:
        path = urlsplit(url).path
        if status >= 400:
            schema = self.error_schema
        else:
            operation = self.operation(method, path)
            response = operation["responses"].get(str(status))
            assert response is not None, f"{method} {path} answered {status}; the spec lists {operation['responses']}"
            if "content" not in response:
                assert not text, f"{method} {path} {status} must have no body"
                self.checked += 1
                return
            schema = response["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator({**strict(schema), "components": {"schemas": self.components}})
        body = json.loads(text)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
        self.checked += 1


@cache
def contract() -> Contract:
    return Contract(json.loads(spec_path().read_text()))


class ContractHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """The SDK's own HTTP client, checking each answer against the contract before the SDK reads it."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        response: TwilioResponse = super().request(method, url, *args, **kwargs)
        contract().validate(method, url, response.status_code, response.text)
        self.last_answer = response
        return response


def test_the_contract_itself_rejects_a_missing_or_extra_property() -> None:
    path = "/v2/Services/VA" + "a" * 32 + "/VerificationCheck"
    body = {
        "sid": "VE" + "a" * 32,
        "service_sid": "VA" + "a" * 32,
        "account_sid": "AC" + "a" * 32,
        "to": "+15017122661",
        "channel": "sms",
        "status": "approved",
        "valid": True,
        "amount": None,
        "payee": None,
        "date_created": "2015-07-30T20:00:00Z",
        "date_updated": "2015-07-30T20:00:00Z",
        "sna_attempts_error_codes": [],
    }
    contract().validate("POST", path, 200, json.dumps(body))
    for broken in (
        {k: v for k, v in body.items() if k != "payee"},
        {**body, "extra": 1},
        {**body, "date_created": "2015-07-30 20:00:00"},
        {**body, "channel": "pigeon"},
    ):
        with pytest.raises(AssertionError):
            contract().validate("POST", path, 200, json.dumps(broken))


# -- the live service -----------------------------------------------------------------------------


@dataclass
class V2:
    base: str
    stub: TwilioStub
    settings: Settings
    account: tuple[str, str]
    other: tuple[str, str]
    admin: tuple[str, str]
    v1_key: str

    def client(self, who: tuple[str, str] | None = None) -> Client:
        sid, token = who or self.account
        client = Client(sid, token, http_client=ContractHttpClient(timeout=10))
        client.verify.base_url = self.base  # twilio.base.domain.Domain.base_url
        return client

    def code(self, to: str, nth: int = 1, timeout: float = 10.0) -> str:
        """The code of the nth SMS to ``to``, once the worker has sent it."""
        deadline = time.monotonic() + timeout
        while True:
            bodies = [m.body for m in self.stub.messages if m.to == to]
            if len(bodies) >= nth:
                match = CODE_IN_SMS.search(bodies[nth - 1])
                assert match, bodies[nth - 1]
                return match.group(0)
            assert time.monotonic() < deadline, f"no SMS #{nth} to {to}: {bodies}"
            time.sleep(0.02)

    def sms(self, to: str, nth: int = 1) -> str:
        self.code(to, nth)
        return [m.body for m in self.stub.messages if m.to == to][nth - 1]

    def raw(self, method: str, path: str, *, auth: tuple[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """A request the SDK wouldn't make; its body is held to the contract too."""
        response = httpx.request(method, self.base + path, auth=auth, timeout=10, **kwargs)
        contract().validate(method, self.base + path, response.status_code, response.text)
        return response


async def _accounts(redis_url: str) -> tuple[tuple[str, str], ...]:
    client = aioredis.Redis.from_url(redis_url)
    pairs = []
    for name, admin, twilio in (("account", False, True), ("other", False, True), ("admin", True, True)):
        key, token = await apikeys.create(Store(client, partitions=16), name, admin=admin, twilio=twilio)
        pairs.append((key.key_id, token.split("_")[2]))
    _, v1_key = await apikeys.create(Store(client, partitions=16), "v1-client")
    await client.aclose()
    return (*pairs, (v1_key, ""))


@contextlib.contextmanager
def serve(url: str, *, limits: dict[str, Any] | None = None, clock: Clock = SYSTEM, **changes: Any) -> Iterator[V2]:
    # Bound here and handed to uvicorn: a port picked free and bound later can be taken between.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with listener, TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as stub:
        options: dict[str, Any] = {
            **twilio_options(base, stub),
            "twilio_timeout": 2.0,
            "policy": policy(**(RELAXED if limits is None else limits)),
            **changes,
        }
        settings = make_settings(options.pop("redis_url", url), **options)
        app = create_app(settings, clock=clock)

        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        account, other, admin, (v1_key, _) = asyncio.run(_accounts(url))
        try:
            yield V2(base, stub, settings, account, other, admin, v1_key)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url) as live:
        yield live


_SUFFIXES = itertools.count(secrets.randbelow(5000))


def new_number(area: str = "415") -> str:
    """A number no other call of this process has handed out."""
    return f"+1{area}555{next(_SUFFIXES) % 10000:04d}"


def refused(call: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        call()
    return caught.value


def retry_after(client: Client) -> int:
    return int(client.http_client.last_answer.headers["Retry-After"])


def service(client: Client, **params: Any) -> Any:
    return client.verify.v2.services.create(friendly_name=params.pop("friendly_name", "Acme"), **params)


# -- services -------------------------------------------------------------------------------------


def test_services_are_created_listed_updated_and_private_to_their_account(v2: V2) -> None:
    client = v2.client()
    first = service(client, friendly_name="Acme Login", code_length=8, lookup_enabled=True)
    assert re.fullmatch(r"VA[0-9a-f]{32}", first.sid) and first.account_sid == v2.account[0]
    assert (first.code_length, first.lookup_enabled, first.custom_code_enabled) == (8, True, False)
    assert first.url == f"{v2.base}/v2/Services/{first.sid}"
    second = service(client, friendly_name="Acme Shop", custom_code_enabled=True)

    fetched = client.verify.v2.services(first.sid).fetch()
    assert (fetched.friendly_name, fetched.code_length) == ("Acme Login", 8)
    # One per page: the SDK follows next_page_url back to us.
    assert [s.sid for s in client.verify.v2.services.list(page_size=1)] == [first.sid, second.sid]
    updated = client.verify.v2.services(second.sid).update(friendly_name="Acme Store", code_length=4)
    assert (updated.friendly_name, updated.code_length, updated.custom_code_enabled) == ("Acme Store", 4, True)

    other = v2.client(v2.other)
    assert other.verify.v2.services.list() == []
    for call in (
        lambda: other.verify.v2.services(first.sid).fetch(),
        lambda: other.verify.v2.services(first.sid).update(friendly_name="Mine"),
        lambda: other.verify.v2.services(first.sid).verifications.create(to=new_number(), channel="sms"),
        lambda: other.verify.v2.services(first.sid).verification_checks.create(to=new_number(), code="123456"),
    ):
        error = refused(call)
        assert (error.status, error.code) == (404, 20404)

    assert client.verify.v2.services(second.sid).delete() is True
    assert refused(lambda: client.verify.v2.services(second.sid).fetch()).code == 20404


def test_service_parameters_are_validated_in_twilios_spelling(v2: V2) -> None:
    client = v2.client()
    for params, field in (
        ({"code_length": 11}, "CodeLength"),
        ({"friendly_name": "Call 0800 123 456"}, "FriendlyName"),
        ({"friendly_name": "x" * 31}, "FriendlyName"),
        ({"default_template_sid": "HJ123"}, "DefaultTemplateSid"),
    ):
        error = refused(lambda p=params: service(client, **p))
        assert (error.status, error.code) == (400, 60200)
        assert f"`{field}`" in error.msg
    # A malformed sid is told in words, not as a regular expression.
    malformed = refused(lambda: service(client, default_template_sid="HJ123"))
    assert malformed.msg.endswith("must be a sid: HJ and 32 hex digits"), malformed.msg
    missing = v2.raw("POST", "/v2/Services", auth=v2.account, data={"CodeLength": "6"})
    assert missing.json()["code"] == 60200 and "`FriendlyName`" in missing.json()["message"]


# -- verifications --------------------------------------------------------------------------------


def test_start_fetch_and_check_with_the_sdk(v2: V2) -> None:
    client = v2.client()
    svc = service(client, friendly_name="Acme", code_length=8, lookup_enabled=True)
    verify = client.verify.v2.services(svc.sid)
    to = new_number()
    started = verify.verifications.create(to=to, channel="sms", locale="en")
    assert (started.status, started.valid, started.to, started.channel) == ("pending", False, to, "sms")
    assert started.service_sid == svc.sid and started.account_sid == v2.account[0]
    assert started.lookup == {
        "carrier": {
            "error_code": None,
            "name": None,
            "mobile_country_code": None,
            "mobile_network_code": None,
            "type": None,
        }
    }
    [attempt] = started.send_code_attempts
    assert re.fullmatch(r"VL[0-9a-f]{32}", attempt["attempt_sid"]) and attempt["channel"] == "sms"
    code = v2.code(to)
    assert len(code) == 8  # the service's CodeLength
    assert "Acme" in v2.sms(to)  # its FriendlyName is the name in the SMS

    fetched = verify.verifications(started.sid).fetch()
    assert (fetched.sid, fetched.status) == (started.sid, "pending")
    wrong = verify.verification_checks.create(to=to, code="00000000" if code != "00000000" else "11111111")
    assert (wrong.status, wrong.valid, wrong.sid) == ("pending", False, started.sid)
    right = verify.verification_checks.create(to=to, code=code)
    assert (right.status, right.valid, right.to) == ("approved", True, to)

    # Approved verifications are gone, as in Twilio.
    assert refused(lambda: verify.verifications(started.sid).fetch()).code == 20404
    assert refused(lambda: verify.verification_checks.create(to=to, code=code)).code == 20404
    again = refused(lambda: verify.verification_checks.create(verification_sid=started.sid, code=code))
    assert (again.status, again.code) == (404, 20404)


def test_resend_keeps_the_verification_and_a_check_by_sid_takes_the_new_code(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    first = verify.verifications.create(to=to, channel="sms")
    second = verify.verifications.create(to=to, channel="sms", custom_friendly_name="Acme Express")
    assert second.sid == first.sid
    assert [a["attempt_sid"] for a in second.send_code_attempts][:1] == [first.send_code_attempts[0]["attempt_sid"]]
    assert len({a["attempt_sid"] for a in second.send_code_attempts}) == 2
    v2.code(to, nth=2)
    # The worker may send the two in either order: the resend is the one with the custom name.
    [resent] = [m.body for m in v2.stub.messages if m.to == to and "Acme Express" in m.body]
    checked = verify.verification_checks.create(verification_sid=first.sid, code=CODE_IN_SMS.findall(resent)[0])
    assert (checked.status, checked.valid) == ("approved", True)


def test_cancel_and_approve_out_of_band(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    approved = verify.verifications(verify.verifications.create(to=new_number(), channel="sms").sid).update(
        status="approved"
    )
    assert (approved.status, approved.valid) == ("approved", True)
    assert refused(lambda: verify.verifications(approved.sid).update(status="approved")).code == 20404
    started = verify.verifications.create(to=new_number(), channel="sms")
    bogus = refused(lambda: verify.verifications(started.sid).update(status="pending"))
    assert (bogus.status, bogus.code) == (400, 60200) and "`Status`" in bogus.msg
    canceled = verify.verifications(started.sid).update(status="canceled")
    assert (canceled.status, canceled.valid) == ("canceled", False)
    assert refused(lambda: verify.verifications(started.sid).fetch()).code == 20404
    assert refused(lambda: verify.verifications(started.sid).update(status="canceled")).code == 20404
    unknown = "VE" + "0" * 32
    assert refused(lambda: verify.verifications(unknown).fetch()).code == 20404


def test_fifth_wrong_code_reaches_max_attempts_and_later_checks_are_60202(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    started = verify.verifications.create(to=to, channel="sms")
    code = v2.code(to)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        assert verify.verification_checks.create(to=to, code=wrong).status == "pending"
    fifth = verify.verification_checks.create(to=to, code=wrong)
    assert (fifth.status, fifth.valid) == ("max_attempts_reached", False)
    assert verify.verifications(started.sid).fetch().status == "max_attempts_reached"
    for call in (
        lambda: verify.verification_checks.create(to=to, code=code),
        lambda: verify.verification_checks.create(verification_sid=started.sid, code=code),
    ):
        error = refused(call)
        assert (error.status, error.code) == (429, 60202)


def test_expired_verifications_are_gone(redis_url: str) -> None:
    with serve(redis_url, code_ttl=1.0) as v2:
        verify = v2.client().verify.v2.services(service(v2.client()).sid)
        to = new_number()
        started = verify.verifications.create(to=to, channel="sms")
        code = "123456"  # any code: the answer must not depend on it
        time.sleep(1.05)
        assert refused(lambda: verify.verifications(started.sid).fetch()).code == 20404
        for call in (
            lambda: verify.verification_checks.create(to=to, code=code),
            lambda: verify.verification_checks.create(verification_sid=started.sid, code=code),
        ):
            error = refused(call)
            assert (error.status, error.code) == (404, 20404)


def test_sixth_send_is_60203(v2: V2) -> None:
    client = v2.client()
    verify = client.verify.v2.services(service(client).sid)
    to = new_number()
    for _ in range(5):
        verify.verifications.create(to=to, channel="sms")
    error = refused(lambda: verify.verifications.create(to=to, channel="sms"))
    assert (error.status, error.code) == (429, 60203)
    assert retry_after(client) > 0


def test_custom_code_only_where_the_service_allows_it(v2: V2) -> None:
    client = v2.client()
    plain = client.verify.v2.services(service(client).sid)
    error = refused(lambda: plain.verifications.create(to=new_number(), channel="sms", custom_code="424242"))
    assert (error.status, error.code) == (403, 60204) and "`CustomCode`" in error.msg

    custom = client.verify.v2.services(service(client, custom_code_enabled=True).sid)
    to = new_number()
    custom.verifications.create(to=to, channel="sms", custom_code="424242")
    assert v2.code(to) == "424242"
    assert custom.verification_checks.create(to=to, code="424242").status == "approved"
    bad = refused(lambda: custom.verifications.create(to=new_number(), channel="sms", custom_code="12ab"))
    assert bad.code == 60200 and "`CustomCode`" in bad.msg


def test_services_are_separate_tenants(v2: V2) -> None:
    client = v2.client()
    one = client.verify.v2.services(service(client, friendly_name="Alpha").sid)
    two = client.verify.v2.services(service(client, friendly_name="Beta").sid)
    to = new_number()
    first = one.verifications.create(to=to, channel="sms")
    second = two.verifications.create(to=to, channel="sms")  # not a resend of the first
    assert first.sid != second.sid
    assert refused(lambda: two.verifications(first.sid).fetch()).code == 20404
    v2.code(to, nth=2)
    # The worker may send the two in either order: the name in the SMS tells them apart.
    [alpha] = [m.body for m in v2.stub.messages if m.to == to and "Alpha" in m.body]
    code = CODE_IN_SMS.findall(alpha)[0]
    assert refused(lambda: two.verification_checks.create(verification_sid=first.sid, code=code)).code == 20404
    assert one.verification_checks.create(to=to, code=code).status == "approved"
    assert two.verifications(second.sid).fetch().status == "pending"


def test_bad_parameters_are_60200_naming_the_parameter(v2: V2) -> None:
    client = v2.client()
    verify = client.verify.v2.services(service(client).sid)
    to = new_number()
    for call, field in (
        (lambda: verify.verifications.create(to=to, channel="call"), "Channel"),
        (lambda: verify.verifications.create(to="+1555", channel="sms"), "To"),
        (lambda: verify.verifications.create(to=to, channel="sms", locale="english"), "Locale"),
        (lambda: verify.verifications.create(to=to, channel="sms", rate_limits="[1]"), "RateLimits"),
        (lambda: verify.verifications.create(to=to, channel="sms", device_ip="300.1.1.1"), "DeviceIp"),
        (lambda: verify.verifications.create(to=to, channel="sms", risk_check="maybe"), "RiskCheck"),
        (lambda: verify.verifications.create(to=to, channel="sms", amount="10"), "Amount"),
        (lambda: verify.verifications.create(to=to, channel="sms", tags="nope"), "Tags"),
        (lambda: verify.verification_checks.create(to=to, code="12"), "Code"),
        (lambda: verify.verification_checks.create(code="123456"), "To"),
        (lambda: verify.verification_checks.create(verification_sid="VE12", code="123456"), "VerificationSid"),
        (lambda: verify.verifications("VE" + "1" * 32).update(status="done"), "Status"),
    ):
        error = refused(call)
        assert (error.status, error.code) == (400, 60200), (field, error)
        assert f"`{field}`" in error.msg, (field, error.msg)
    assert verify.verifications.create(to=to, channel="sms", tags=json.dumps({"flow": "login"})).status == "pending"


def test_risk_check_disable_needs_an_admin_account(v2: V2) -> None:
    client = v2.client()
    verify = client.verify.v2.services(service(client).sid)
    error = refused(lambda: verify.verifications.create(to=new_number(), channel="sms", risk_check="disable"))
    assert (error.status, error.code) == (403, 20403)
    admin = v2.client(v2.admin)
    own = admin.verify.v2.services(service(admin).sid)
    assert own.verifications.create(to=new_number(), channel="sms", risk_check="disable").status == "pending"


def test_credentials(v2: V2) -> None:
    # (The SDK's list() raises a bare TwilioException on a failed page: fetch shows the code.)
    bad = refused(lambda: v2.client((v2.account[0], "0" * 32)).verify.v2.services("VA" + "0" * 32).fetch())
    assert (bad.status, bad.code) == (401, 20003)
    missing = v2.raw("GET", "/v2/Services")
    assert (missing.status_code, missing.json()["code"]) == (401, 20003)
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    # A /v1 key authenticates, but owns no account to keep services in.
    key_id, secret = apikeys.split(v2.v1_key) or ("", "")
    v1 = v2.raw("GET", "/v2/Services", auth=(key_id, secret))
    assert (v1.status_code, v1.json()["code"]) == (401, 20003)


def test_unknown_paths_methods_and_bodies_answer_in_twilios_shape(v2: V2) -> None:
    sid = service(v2.client()).sid
    assert v2.raw("GET", "/v2/Nothing", auth=v2.account).json()["code"] == 20404
    wrong_method = v2.raw("PUT", f"/v2/Services/{sid}", auth=v2.account)
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, 20004)
    as_json = v2.raw("POST", f"/v2/Services/{sid}/Verifications", auth=v2.account, json={"To": new_number()})
    assert (as_json.status_code, as_json.json()["code"]) == (400, 60200)
    huge = v2.raw("POST", "/v2/Services", auth=v2.account, data={"FriendlyName": "x" * 17000})
    assert (huge.status_code, huge.json()["code"]) == (413, 60200)
    twice = v2.raw(
        "POST",
        "/v2/Services",
        auth=v2.account,
        content=b"FriendlyName=a&FriendlyName=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.json()["code"] == 60200 and "`FriendlyName`" in twice.json()["message"]
    token = v2.raw("GET", "/v2/Attempts?PageToken=nonsense", auth=v2.account)
    assert token.json()["code"] == 60200 and "`PageToken`" in token.json()["message"]
    size = v2.raw("GET", "/v2/Services?PageSize=0", auth=v2.account)
    assert size.json()["code"] == 60200 and "`PageSize`" in size.json()["message"]


def test_refusals_by_policy_map_to_twilio_codes(redis_url: str) -> None:
    limits = {**RELAXED, "allowed_countries": frozenset({"US", "GB"}), "ip_sends_per_hour": 1}
    limits["resend_cooldown"] = 30
    limits["failed_checks_per_hour"] = 2
    # 3: a start and its free first resend, so the cooldown (not this cap) refuses the next; also
    # each RateLimits value's hourly cap.
    limits["number_sends_per_hour"] = 3
    with serve(redis_url, limits=limits) as v2:
        client = v2.client()
        verify = client.verify.v2.services(service(client).sid)

        def start(**params: Any) -> Any:
            return verify.verifications.create(channel="sms", **params)

        country = refused(lambda: start(to="+33612345678"))
        assert (country.status, country.code) == (403, 60605)
        landline = refused(lambda: start(to="+442071838750"))
        assert (landline.status, landline.code) == (403, 60205)

        to = new_number("212")
        start(to=to)
        start(to=to)  # the verification's first resend is free
        cooldown = refused(lambda: start(to=to))
        assert (cooldown.status, cooldown.code) == (429, 20429)
        assert retry_after(client) == 30

        start(to=new_number("646"), device_ip="203.0.113.9")
        ip = refused(lambda: start(to=new_number("646"), device_ip="203.0.113.9"))
        assert (ip.status, ip.code) == (429, 20429)

        for _ in range(3):
            start(to=new_number("718"), rate_limits={"user_id": "u-17"})
        custom = refused(lambda: start(to=new_number("718"), rate_limits={"user_id": "u-17"}))
        assert (custom.status, custom.code) == (429, 20429)

        code = v2.code(to)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(2):
            verify.verification_checks.create(to=to, code=wrong)
        failed = refused(lambda: verify.verification_checks.create(to=to, code=code))
        assert (failed.status, failed.code) == (429, 20429)
        assert retry_after(client) > 0


def test_sms_pumping_is_60410(redis_url: str) -> None:
    limits = {"prefix_hourly_floor": 1, "prefix_daily_floor": 1}
    with serve(redis_url, limits=limits) as v2:
        verify = v2.client().verify.v2.services(service(v2.client()).sid)
        codes = []
        for i in range(6):
            try:
                verify.verifications.create(to=f"+1305555{1000 + i}", channel="sms")
            except TwilioRestException as exc:
                codes.append((exc.status, exc.code))
        assert codes and set(codes) == {(403, 60410)}


def test_storage_down_is_503_20503(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with serve(redis_url, redis_url=dead, worker=False) as v2:
        error = refused(lambda: v2.client().verify.v2.services("VA" + "0" * 32).fetch())
        assert (error.status, error.code) == (503, 20503)


# -- attempts -------------------------------------------------------------------------------------


def test_attempts_list_fetch_and_summary(v2: V2) -> None:
    client = v2.client()
    one, two = service(client), service(client)
    foreign = service(v2.client(v2.other))
    a, b = new_number(), new_number("650")
    verify_one = client.verify.v2.services(one.sid)
    approved = verify_one.verifications.create(to=a, channel="sms")
    assert verify_one.verification_checks.create(to=a, code=v2.code(a)).status == "approved"
    pending = client.verify.v2.services(two.sid).verifications.create(to=b, channel="sms")
    client.verify.v2.services(two.sid).verifications.create(to=b, channel="sms")  # a resend: a 2nd attempt
    v2.client(v2.other).verify.v2.services(foreign.sid).verifications.create(to=new_number(), channel="sms")

    attempts = v2.client().verify.v2.verification_attempts
    listed = attempts.list(page_size=1)  # three pages, through next_page_url
    assert len(listed) == 3
    assert {x.verification_sid for x in listed} == {approved.sid, pending.sid}
    assert all(x.account_sid == v2.account[0] and x.channel == "sms" for x in listed)
    [converted] = attempts.list(status="converted")
    assert (converted.verification_sid, converted.channel_data["status"]) == (approved.sid, "confirmed")
    assert converted.sid == approved.send_code_attempts[0]["attempt_sid"]
    assert converted.channel_data["to"] == a and converted.channel_data["country"] == "US"
    assert len(attempts.list(verify_service_sid=two.sid)) == 2
    assert len(attempts.list(verification_sid=pending.sid)) == 2
    assert len(attempts.list(channel_data_to=b)) == 2
    assert len(attempts.list(country="US")) == 3
    assert attempts.list(country="CO") == []
    assert attempts.list(channel="whatsapp") == []
    assert attempts.list(verify_service_sid=foreign.sid) == []  # another account's service
    assert attempts.list(date_created_after=datetime.now(UTC) + timedelta(hours=1)) == []

    # Delivery comes back through the stand-in's signed callbacks.
    deadline = time.monotonic() + 10
    while (fetched := attempts(converted.sid).fetch()).channel_data["message_status"] != "delivered":
        assert time.monotonic() < deadline, fetched.channel_data
        time.sleep(0.05)
    assert fetched.verification_sid == approved.sid and fetched.conversion_status == "converted"
    assert fetched.price is not None and fetched.price["currency"] == "usd"
    assert refused(lambda: v2.client(v2.other).verify.v2.verification_attempts(converted.sid).fetch()).code == 20404
    assert refused(lambda: attempts("VL" + "0" * 32).fetch()).code == 20404

    summary = client.verify.v2.verification_attempts_summary().fetch()
    assert (summary.total_attempts, summary.total_converted, summary.total_unconverted) == (3, 1, 2)
    assert summary.conversion_rate_percentage == "33.333333333"
    by_prefix = client.verify.v2.verification_attempts_summary().fetch(destination_prefix="+1650")
    assert (by_prefix.total_attempts, by_prefix.total_converted) == (2, 0)
    empty = client.verify.v2.verification_attempts_summary().fetch(verify_service_sid=foreign.sid)
    assert (empty.total_attempts, empty.conversion_rate_percentage) == (0, None)
    assert contract().checked > 20


def test_v2_activity_is_audited_under_the_verify_service_sid(v2: V2, tmp_path: Path) -> None:
    """A /v2 call acts as its service: the audit log's ``key`` is the VA… sid (README: filter with
    `otp audit --key VA…`), not the AC… account the SDK signs in with."""
    client = v2.client()
    svc = service(client)
    verify = client.verify.v2.services(svc.sid)
    to = new_number()
    verify.verifications.create(to=to, channel="sms")
    assert verify.verification_checks.create(to=to, code=v2.code(to)).status == "approved"

    def audited(key: str) -> list[dict[str, Any]]:
        shown = run_cli(v2.settings.redis_url or "", tmp_path, "--key", key, "--json")
        assert shown.returncode == 0, shown.stderr
        return [json.loads(line) for line in shown.stdout.splitlines()]

    by_service = audited(svc.sid)
    assert {"started", "approved"} <= {e["event"] for e in by_service}
    assert {e["key"] for e in by_service} == {svc.sid}
    assert audited(v2.account[0]) == []


# -- the example ----------------------------------------------------------------------------------


def test_python_sdk_example_runs_start_and_check(v2: V2) -> None:
    svc = service(v2.client())
    to = new_number()
    example = subprocess.Popen(
        [
            sys.executable,
            str(repo_root() / "examples" / "twilio_sdk_python.py"),
            "--url",
            v2.base,
            "--account-sid",
            v2.account[0],
            "--auth-token",
            v2.account[1],
            "--service",
            svc.sid,
            to,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = example.communicate(v2.code(to, timeout=20) + "\n", timeout=30)
    assert example.returncode == 0, out
    assert "approved" in out
