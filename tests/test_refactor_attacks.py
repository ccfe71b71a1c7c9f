"""Hostile-client attacks on the refactored code (issue 13): each test reproduces one finding."""

from __future__ import annotations

import base64

import httpx
import pytest
from conftest import Service

from otp.core import apikeys, audit
from otp.storage.store import Store

TO = "+15017122661"


def assert_4xx_naming(response: httpx.Response, field: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == field, response.text


@pytest.mark.parametrize(
    "position",
    [(2**64, 0, 0), (2**64 - 1, 2**64, 0), (99999999999999999999, 0, 3), (0, 0, 0), (0, 0, 16)],
)
async def test_an_audit_cursor_past_a_stream_ids_range_is_400_not_500(
    service: Service, position: tuple[int, int, int]
) -> None:
    await service.start()
    cursor = audit.encode_cursor(position)
    response = await service.http.get(f"/v1/audit?cursor={cursor}", headers=service.auth(service.admin_key))
    # Redis refuses such an id: that was a 503 "retry shortly" for a cursor that never works.
    assert_4xx_naming(response, "cursor")


# -- /v2 in-process --------------------------------------------------------------------------------


async def twilio_account(service: Service, name: str = "acct", admin: bool = False) -> tuple[str, str]:
    key, token = await apikeys.create(Store(service.redis, partitions=16), name, admin=admin, twilio=True)
    return key.key_id, token.split("_")[2]


async def v2_service(service: Service, auth: tuple[str, str], **params: str) -> str:
    response = await service.http.post("/v2/Services", data={"FriendlyName": "Acme", **params}, auth=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["sid"])


def assert_twilio_4xx(response: httpx.Response, parameter: str | None = None) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"code", "message", "more_info", "status"}, body
    assert body["status"] == response.status_code
    if parameter is not None:
        assert f"`{parameter}`" in body["message"], body


@pytest.mark.parametrize("position", [(2**64 - 1, 2**64, 0), (99999999999999999999, 0, 3), (0, 0, 1)])
async def test_a_v2_page_token_past_a_stream_ids_range_is_60200_not_a_retry(
    service: Service, position: tuple[int, int, int]
) -> None:
    auth = await twilio_account(service)
    await v2_service(service, auth)
    token = audit.encode_cursor(position)
    response = await service.http.get(f"/v2/Attempts?PageToken={token}", auth=auth)
    assert_twilio_4xx(response, "PageToken")


# -- JSON bodies a proxy or WAF reads differently -----------------------------------------------


@pytest.mark.parametrize(
    "encoding",
    ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"],
)
async def test_a_json_body_that_is_not_plain_utf8_is_refused(service: Service, encoding: str) -> None:
    """RFC 8259 §8.1: JSON between systems is UTF-8 (no BOM). Python's json.loads guesses UTF-16
    and UTF-32 from the bytes, so a body a UTF-8 proxy or WAF sees as garbage (it can't find
    ``"risk_check"`` or a number in it) was read by otp as a valid request."""
    body = f'{{"to": "{TO}", "risk_check": "enable"}}'.encode(encoding)
    headers = {**service.auth(), "Content-Type": "application/json"}
    response = await service.http.post("/v1/verifications", content=body, headers=headers)
    assert_4xx_naming(response, "body")
    assert response.json()["error"]["code"] == "malformed_json"


# -- dashboard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ß", "ﬀ", "ǆ"])
async def test_the_dashboards_unblock_checks_a_country_before_upper_casing_it(service: Service, value: str) -> None:
    """``"ß".upper()`` is ``"SS"``: the form unblocked (and audited) South Sudan for a value that is
    no country code, where ``DELETE /v1/blocks`` (validators.country) refuses it."""
    from test_dashboard import sign_in

    csrf = await sign_in(service)
    response = await service.http.post("/admin/fraud/unblock", data={"csrf": csrf, "kind": "country", "value": value})
    assert response.status_code == 400, response.headers.get("location")
    api = await service.http.delete("/v1/blocks", params={"country": value}, headers=service.auth(service.admin_key))
    assert_4xx_naming(api, "country")
