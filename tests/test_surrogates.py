"""Lone surrogates, against a real `otp serve`: JSON may spell one (``"\\ud800"``, or its UTF-8
bytes ED A0 80, which Python's json accepts), and Python strings can hold one, but UTF-8 can't.

They gave 500s: the 400 naming an unknown field ``{"\\ud800": 1}`` (or one given twice) failed to
render as UTF-8, and on /v2 a RateLimits value reached a Redis key. Now each is a 400
(``malformed_json`` on /v1, 60200 on /v2) naming where it sits, escaped (``\\ud800``), and the
error handlers escape whatever can't be encoded rather than fail. A form value that
percent-decodes to bytes that aren't UTF-8 (``%ED%A0%80``) is a 400 naming its parameter."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from test_access_log import credentials, serving

from otp.edge.embedded_redis import EmbeddedRedis
from otp.errors import InvalidInput
from otp.web.body import loads_strict
from otp.web.errors import handle as otp_error
from otp.web.verify_v2.errors import error_response


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(redis_server.url, tmp_path_factory.mktemp("surrogates")) as (base, process):
        yield base
        # Whatever was sent, nothing reached the unhandled-error handler.
        assert process.poll() is None


@pytest.fixture
def api(served: str, redis_server: EmbeddedRedis) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(a /v1 client with an admin key, a /v2 client with an account SID and token)."""
    v1, v2 = credentials(redis_server.url, "surrogates", admin=True)
    with (
        httpx.Client(base_url=served, headers={"Authorization": f"Bearer {v1}"}, timeout=10) as native,
        httpx.Client(base_url=served, headers={"Authorization": v2}, timeout=10) as twilio,
    ):
        yield native, twilio


def error_of(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    response.content.decode("utf-8")  # the answer itself is UTF-8
    body = json.loads(response.content)
    assert isinstance(body, dict)
    return body


def post_json(client: httpx.Client, path: str, raw: bytes) -> httpx.Response:
    return client.post(path, content=raw, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        # An unknown field named by a lone surrogate, high or low, as an escape or as UTF-8 bytes.
        (b'{"\\ud800": 1}', "\\ud800"),
        (b'{"to": "+15017122661", "\\udfff": 1}', "\\udfff"),
        (b'{"\xed\xa0\x80": 1}', "\\ud800"),
        # The same key twice: refused for the surrogate, before "given more than once".
        (b'{"\\udfff": 1, "\\udfff": 2}', "\\udfff"),
        # In a value, where it sits: a known field, deeper in an array or object.
        (b'{"to": "\\ud800"}', "to"),
        (b'{"to": "+1501\xed\xb0\x807122661"}', "to"),
        (b'{"to": "+15017122661", "x": [1, "a\\udc00"]}', "x[1]"),
        (b'{"to": "+15017122661", "x": {"y": {"\\ud83d": 0}}}', "x.y.\\ud83d"),
        # The whole body one string.
        (b'"\\ud800"', "body"),
    ],
)
def test_lone_surrogates_in_v1_json_are_400_malformed_json(
    api: tuple[httpx.Client, httpx.Client], raw: bytes, field: str
) -> None:
    native, _ = api
    error = error_of(post_json(native, "/v1/verifications", raw))["error"]
    assert isinstance(error, dict)
    assert error["code"] == "malformed_json"
    assert error["field"] == field
    assert "surrogate" in str(error["message"])


def test_a_surrogate_pair_is_a_character_not_a_refusal(api: tuple[httpx.Client, httpx.Client]) -> None:
    native, _ = api
    # "\ud83d\ude00" is 😀: valid JSON text for a valid string, refused only as not a number.
    error = error_of(post_json(native, "/v1/verifications", b'{"to": "\\ud83d\\ude00"}'))["error"]
    assert isinstance(error, dict)
    assert (error["code"], error["field"]) == ("invalid_parameter", "to")
    error = error_of(post_json(native, "/v1/verifications", '{"😀": 1}'.encode()))["error"]
    assert isinstance(error, dict)
    assert (error["code"], error["field"]) == ("unknown_field", "😀")


def test_other_v1_json_bodies_refuse_them_too(api: tuple[httpx.Client, httpx.Client]) -> None:
    native, _ = api
    for path, raw in [
        ("/v1/verifications/check", b'{"code": "123456", "\\ud800": 1}'),
        ("/v1/verifications/check", b'{"code": "\\ud800"}'),
        ("/v1/safelist", b'{"entry": "\\udbff"}'),
        ("/v1/tokens/verify", b'{"\\udbff": ""}'),
    ]:
        error = error_of(post_json(native, path, raw))["error"]
        assert isinstance(error, dict)
        assert error["code"] == "malformed_json", (path, error)


@pytest.fixture
def service_sid(api: tuple[httpx.Client, httpx.Client]) -> str:
    _, twilio = api
    created = twilio.post("/v2/Services", data={"FriendlyName": "Surrogates"})
    assert created.status_code == 201, created.text
    return str(created.json()["sid"])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RateLimits", '{"key": "\\ud800"}'),
        ("RateLimits", '{"\\ud800": "1", "\\ud800": "2"}'),
        ("RateLimits", '{"key": "ok", "\\udfff": 1}'),
        ("Tags", '{"\\ud800": "a", "\\ud800": "b"}'),
        ("Tags", '{"a": "\\udfff"}'),
    ],
)
def test_lone_surrogates_in_v2_json_parameters_are_400_naming_them(
    api: tuple[httpx.Client, httpx.Client], service_sid: str, name: str, value: str
) -> None:
    _, twilio = api
    form = {"To": "+15017122661", "Channel": "sms", name: value}
    body = error_of(twilio.post(f"/v2/Services/{service_sid}/Verifications", data=form))
    assert body["code"] == 60200 and body["status"] == 400
    assert f"Invalid parameter `{name}" in str(body["message"]), body
    assert "surrogate" in str(body["message"])


@pytest.mark.parametrize(
    ("form", "named"),
    [
        (b"To=%ED%A0%80&Channel=sms", "To"),
        (b"To=%2B15017122661&Channel=sms&Locale=e%ED%B0%80n", "Locale"),
        (b"To=%2B15017122661&Channel=sms&Tags=%7B%22a%22%3A%22%ED%A0%80%22%7D", "Tags"),
        (b"To=%2B15017122661&Channel=sms&%ED%A0%80=1", "%ED%A0%80"),
        (b"To=%2B15017122661&Channel=sms&RateLimits=%FF", "RateLimits"),
    ],
)
def test_form_values_that_decode_to_no_utf_8_are_400_naming_the_parameter(
    api: tuple[httpx.Client, httpx.Client], service_sid: str, form: bytes, named: str
) -> None:
    _, twilio = api
    response = twilio.post(
        f"/v2/Services/{service_sid}/Verifications",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = error_of(response)
    assert body["code"] == 60200
    assert f"Invalid parameter `{named}`" in str(body["message"]), body


def test_a_service_name_that_decodes_to_no_utf_8_is_refused_naming_it(api: tuple[httpx.Client, httpx.Client]) -> None:
    _, twilio = api
    form = b"FriendlyName=My%ED%A0%80App"
    response = twilio.post("/v2/Services", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "Invalid parameter `FriendlyName`" in str(error_of(response)["message"])


def test_loads_strict_names_the_place_escaped() -> None:
    with pytest.raises(InvalidInput) as refused:
        loads_strict('{"a": {"\ud800\udfff": [0, "\udc80"]}}', "Tags")
    assert refused.value.field == "Tags.a.\\ud800\\udfff"
    assert refused.value.code == "malformed_json"
    # The message, too, is UTF-8 whatever the input.
    f"{refused.value.field}: {refused.value.message}".encode()
    # JSON's escapes of a pair are one character; a Python string's two surrogates are not.
    assert loads_strict(r'{"a": "\ud83d\ude00"}') == {"a": "😀"}
    with pytest.raises(InvalidInput):
        loads_strict('{"a": "\ud83d\ude00"}')


async def test_the_error_handlers_render_what_cannot_be_encoded() -> None:
    """Whatever raises it, an error naming a field (or saying a message) that UTF-8 can't hold is
    answered, escaped, rather than failing to render."""
    exc = InvalidInput("is \udfff wrong", field="\ud800")
    native = await otp_error(None, exc)  # type: ignore[arg-type]
    assert native.status_code == 400
    error = json.loads(bytes(native.body))["error"]
    assert error["field"] == "\\ud800"
    assert error["message"] == "\\ud800: is \\udfff wrong"
    twilio = error_response(exc)
    assert twilio.status_code == 400
    assert json.loads(bytes(twilio.body))["message"] == "Invalid parameter `\\ud800`: is \\udfff wrong"
