"""The stand-in's account resources (what `otp doctor` reads), driven by the real `twilio` SDK and
checked against Twilio's OpenAPI document: the Account, IncomingPhoneNumbers with capabilities,
ShortCodes, and Messaging v1 Services (404 for one the account lacks)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import jsonschema
import pytest
import requests
from conftest import repo_root
from test_twilio_stub import stub_main
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from otp.devtools.twilio_stub import TwilioStub
from otp.edge.embedded_redis import free_port
from otp.edge.twilio_sender import twilio_client

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "stub-test-auth-token"
SERVICE_SID = "MG" + "3" * 32
DEFAULT_NUMBER = "+15005550006"  # the From the delivery tests send with
SPEC = "twilio_api_v2010_account.json"


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running


def sdk(url: str, password: str = AUTH_TOKEN) -> Client:
    """The SDK as otp's runtime builds it, sent to the stand-in (OTP_TWILIO_API_URL)."""
    return twilio_client(ACCOUNT_SID, password, api_url=url, timeout=5.0, pool_size=2)


# -- the contract ----------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: every listed property required and no other, ``nullable`` as a
    null type. Formats are left out: the 2010 API's ``uri`` fields hold relative paths and "" in
    Twilio's own examples."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return {"$ref": schema["$ref"]}
    out = {k: strict(v) for k, v in schema.items() if k not in ("nullable", "properties", "format")}
    if "properties" in schema:
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        out["required"] = sorted(schema["properties"])
        out["additionalProperties"] = False
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@cache
def spec() -> dict[str, Any]:
    return dict(json.loads((repo_root() / "tests" / "contracts" / SPEC).read_text()))


def assert_in_twilios_shape(path: str, document: dict[str, Any]) -> None:
    schema = spec()["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    components = {name: strict(s) for name, s in spec()["components"]["schemas"].items()}
    validator = jsonschema.Draft202012Validator({**strict(schema), "components": {"schemas": components}})
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, f"{path}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def get(stub: TwilioStub, path: str, **params: str) -> dict[str, Any]:
    response = requests.get(stub.url + path, params=params, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_contract_refuses_a_missing_or_extra_property(stub: TwilioStub) -> None:
    document = get(stub, f"/2010-04-01/Accounts/{ACCOUNT_SID}.json")
    path = "/2010-04-01/Accounts/{Sid}.json"
    assert_in_twilios_shape(path, document)
    with pytest.raises(AssertionError, match="status"):
        assert_in_twilios_shape(path, {k: v for k, v in document.items() if k != "status"})
    with pytest.raises(AssertionError, match="Additional properties"):
        assert_in_twilios_shape(path, {**document, "balance": "1.00"})
    with pytest.raises(AssertionError, match="is not one of"):
        assert_in_twilios_shape(path, {**document, "status": "frozen"})


def test_account_numbers_and_short_codes_answer_in_twilios_shape(stub: TwilioStub) -> None:
    stub.account.add_short_code("12345")
    numbers = get(stub, f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json", PhoneNumber=DEFAULT_NUMBER)
    codes = get(stub, f"/2010-04-01/Accounts/{ACCOUNT_SID}/SMS/ShortCodes.json", ShortCode="12345")
    assert_in_twilios_shape("/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json", numbers)
    assert_in_twilios_shape("/2010-04-01/Accounts/{AccountSid}/SMS/ShortCodes.json", codes)
    assert [n["phone_number"] for n in numbers["incoming_phone_numbers"]] == [DEFAULT_NUMBER]
    assert [c["short_code"] for c in codes["short_codes"]] == ["12345"]


def test_the_sdk_reads_the_account_its_numbers_codes_and_services(stub: TwilioStub) -> None:
    stub.account.add_number("+14155550100", ["voice"])
    stub.account.add_short_code("12345")
    stub.account.add_messaging_service(SERVICE_SID, "Login codes")
    client = sdk(stub.url)

    account = client.api.v2010.accounts(ACCOUNT_SID).fetch()
    assert (account.sid, account.status, account.type) == (ACCOUNT_SID, "active", "Full")
    owned = {n.phone_number: n.capabilities for n in client.incoming_phone_numbers.list()}
    assert owned[DEFAULT_NUMBER]["sms"] is True
    assert owned["+14155550100"] == {"voice": True, "sms": False, "mms": False, "fax": False}
    # Twilio's filter matches part of a number.
    assert [n.phone_number for n in client.incoming_phone_numbers.list(phone_number="5550100")] == ["+14155550100"]
    assert client.incoming_phone_numbers.list(phone_number="+19995550000") == []
    assert [c.short_code for c in client.short_codes.list(short_code="12345")] == ["12345"]
    service = client.messaging.v1.services(SERVICE_SID).fetch()
    assert (service.sid, service.friendly_name, service.account_sid) == (SERVICE_SID, "Login codes", ACCOUNT_SID)
    with pytest.raises(TwilioRestException) as missing:
        client.messaging.v1.services("MG" + "4" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)


def test_a_suspended_account_says_so_and_wrong_credentials_get_401(stub: TwilioStub) -> None:
    stub.account.set_status("suspended", "Trial")
    account = sdk(stub.url).api.v2010.accounts(ACCOUNT_SID).fetch()
    assert (account.status, account.type) == ("suspended", "Trial")
    wrong = sdk(stub.url, password="wrong-token")
    fetches: list[Callable[[], Any]] = [
        lambda: wrong.api.v2010.accounts(ACCOUNT_SID).fetch(),
        lambda: wrong.messaging.v1.services(SERVICE_SID).fetch(),
    ]
    for fetch in fetches:
        with pytest.raises(TwilioRestException) as refused:
            fetch()
        assert (refused.value.status, refused.value.code) == (401, 20003)
    # A list whose page is refused raises the SDK's base exception, with the response.
    with pytest.raises(TwilioException) as listed:
        wrong.incoming_phone_numbers.list()
    assert listed.value.args[1].status_code == 401
    with pytest.raises(ValueError, match="unknown account status"):
        stub.account.set_status("frozen")


def test_main_takes_the_account_from_the_command_line() -> None:
    port = free_port()
    args = ["--port", str(port), "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN]
    args += ["--number", "+14155550100:sms", "--number", f"{DEFAULT_NUMBER}:voice", "--short-code", "12345"]
    args += ["--messaging-service", f"{SERVICE_SID}:Login codes", "--account-status", "suspended"]
    with stub_main(*args) as process:
        assert f"http://127.0.0.1:{port}" in process.first
        client = sdk(f"http://127.0.0.1:{port}")
        assert client.api.v2010.accounts(ACCOUNT_SID).fetch().status == "suspended"
        sms = {n.phone_number: n.capabilities["sms"] for n in client.incoming_phone_numbers.list()}
        assert sms == {DEFAULT_NUMBER: False, "+14155550100": True}
        assert [c.short_code for c in client.short_codes.list()] == ["12345"]
        assert client.messaging.v1.services(SERVICE_SID).fetch().friendly_name == "Login codes"


def test_main_refuses_a_number_with_an_unknown_capability() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "otp.devtools.twilio_stub", "--number", "+14155550100:sms/telex"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 2
    assert "+NUMBER[:CAPABILITIES]" in process.stderr
