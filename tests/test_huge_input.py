"""Integers past Python's 4,300-digit conversion limit, and JSON objects with a key given twice:
each is a 400 naming the field, never the 500 of ``ValueError: Exceeds the limit (4300 digits)``.
(Issue 11.)"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import httpx
import pytest
from conftest import Clock, RecordingSender, Service, make_settings, running_service
from twilio.request_validator import RequestValidator

from otp.core import apikeys

HUGE = "9" * 5000  # past sys.get_int_max_str_digits() (4300)
TO = "+15017122661"
VID = "VE" + "0" * 32


def assert_v1_error(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert error["message"]


async def post_raw(service: Service, path: str, raw: str) -> httpx.Response:
    headers = {**service.auth(), "Content-Type": "application/json"}
    return await service.http.post(path, content=raw.encode(), headers=headers)


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/v1/verifications", f'{{"to": {HUGE}}}', "to"),
        ("/v1/verifications", f'{{"to": -{HUGE}}}', "to"),
        ("/v1/verifications/check", f'{{"id": "{VID}", "code": {HUGE}}}', "code"),
        ("/v1/verifications", f'{{"to": "{TO}", "channel": [1, {HUGE}]}}', "channel[1]"),
        ("/v1/verifications", f'{{"to": "{TO}", "extra": {{"deeper": [{{"n": {HUGE}}}]}}}}', "extra.deeper[0].n"),
        ("/v1/verifications", HUGE, "body"),
        ("/v1/verifications", f"[{HUGE}]", "body[0]"),
    ],
)
async def test_a_json_integer_too_long_to_convert_is_400_naming_where_it_is(
    service: Service, path: str, raw: str, field: str
) -> None:
    assert_v1_error(await post_raw(service, path, raw), field)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (f'{{"to": "{TO}", "to": "+15017122662"}}', "to"),
        (f'{{"to": "{TO}", "channel": "sms", "channel": "sms"}}', "channel"),
        (f'{{"to": "{TO}", "extra": {{"a": 1, "a": 2}}}}', "extra.a"),
        (f'{{"to": "{TO}", "extra": [{{}}, {{"b": {{"c": 1, "c": 1}}}}]}}', "extra[1].b.c"),
    ],
)
async def test_a_json_key_given_twice_is_400_naming_it(service: Service, raw: str, field: str) -> None:
    response = await post_raw(service, "/v1/verifications", raw)
    assert_v1_error(response, field)
    assert "more than once" in response.json()["error"]["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_json_number_constants_are_400(service: Service, constant: str) -> None:
    assert_v1_error(await post_raw(service, "/v1/verifications", f'{{"to": {constant}}}'), "to")


async def test_a_content_length_too_long_to_convert_is_400(service: Service) -> None:
    request = service.http.build_request(
        "POST", "/v1/verifications", content=b"{}", headers={**service.auth(), "Content-Type": "application/json"}
    )
    request.headers["Content-Length"] = HUGE
    assert_v1_error(await service.http.send(request), "Content-Length")


async def test_the_audit_limit_too_long_to_convert_is_400(service: Service) -> None:
    response = await service.http.get("/v1/audit", params={"limit": HUGE}, headers=service.auth(service.admin_key))
    assert_v1_error(response, "limit")


# -- /v2 ------------------------------------------------------------------------------------------


async def twilio_auth(service: Service) -> dict[str, str]:
    _, token = await apikeys.create(service.app.state.store, "sdk", twilio=True)
    _, account_sid, auth_token = token.split("_")
    return {"Authorization": "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()}


def assert_v2_error(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 60200, body
    assert f"`{param}`" in body["message"], body


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("param", ["PageSize", "Page"])
@pytest.mark.parametrize("path", ["/v2/Services", "/v2/Attempts"])
async def test_v2_page_parameters_too_long_to_convert_are_60200(service: Service, path: str, param: str) -> None:
    auth = await twilio_auth(service)
    response = await service.http.get(path, params={param: "9" * 4301}, headers=auth)
    assert_v2_error(response, param)


@pytest.mark.parametrize("param", ["CodeLength", "Totp.TimeStep", "Totp.CodeLength", "Totp.Skew"])
async def test_v2_service_integers_too_long_to_convert_are_60200_on_create_and_update(
    service: Service, param: str
) -> None:
    auth = {**await twilio_auth(service), **FORM}
    created = await service.http.post("/v2/Services", content=urlencode({"FriendlyName": "Shop"}), headers=auth)
    assert created.status_code == 201, created.text
    sid = created.json()["sid"]
    for value in (HUGE, "-" + HUGE):
        form = urlencode({"FriendlyName": "Shop", param: value})
        assert_v2_error(await service.http.post("/v2/Services", content=form, headers=auth), param)
        update = urlencode({param: value})
        assert_v2_error(await service.http.post(f"/v2/Services/{sid}", content=update, headers=auth), param)


# -- the status callback --------------------------------------------------------------------------

AUTH_TOKEN = "callback-auth-token-0123456789"


@pytest.mark.parametrize(
    ("query", "form", "field"),
    [
        ({"v": VID, "n": HUGE}, {"MessageStatus": "delivered"}, "n"),
        ({"v": VID, "n": "1"}, {"MessageStatus": "undelivered", "ErrorCode": HUGE}, "ErrorCode"),
    ],
)
async def test_a_signed_callback_with_an_integer_too_long_to_convert_is_400(
    redis_url: str,
    clock: Clock,
    sender: RecordingSender,
    query: dict[str, str],
    form: dict[str, str],
    field: str,
) -> None:
    settings = make_settings(redis_url, twilio_auth_token=AUTH_TOKEN, public_url="http://otp.test")
    async with running_service(settings, clock, sender) as svc:
        url = "http://otp.test/webhooks/twilio/status?" + urlencode(query)
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
        response = await svc.http.post(url, content=urlencode(form), headers={**FORM, "X-Twilio-Signature": signature})
    assert_v1_error(response, field)


def test_the_helper_refuses_what_int_would_choke_on() -> None:
    from otp.core.validators import whole_number
    from otp.errors import InvalidInput

    assert whole_number("0042", field="n", low=0, high=100) == 42
    for bad in ("", " 1", "1_0", "+1", "١٢", "1e3", HUGE, "-1"):
        with pytest.raises(InvalidInput) as caught:
            whole_number(bad, field="n", low=0, high=100)
        assert caught.value.field == "n"
    assert whole_number("-" + "0" * 5000 + "2", field="n", low=-5, high=5) == -2
    with pytest.raises(InvalidInput):
        whole_number(json.dumps(10**20), field="n", low=0, high=10**19)


@pytest.mark.parametrize(
    ("param", "value", "named"),
    [
        ("RateLimits", '{"user": "1", "user": "2"}', "RateLimits.user"),
        ("Tags", '{"a": "x", "a": "y"}', "Tags.a"),
        ("Tags", f'{{"n": {HUGE}}}', "Tags.n"),
    ],
)
async def test_v2_json_parameters_are_parsed_as_strictly(service: Service, param: str, value: str, named: str) -> None:
    auth = {**await twilio_auth(service), **FORM}
    created = await service.http.post("/v2/Services", content=urlencode({"FriendlyName": "Shop"}), headers=auth)
    sid = created.json()["sid"]
    form = urlencode({"To": TO, "Channel": "sms", param: value})
    assert_v2_error(await service.http.post(f"/v2/Services/{sid}/Verifications", content=form, headers=auth), named)
