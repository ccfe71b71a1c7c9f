"""Every wrong request gets a 4xx JSON error naming the field; nothing answers 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import Service

TO = "+15017122661"


def assert_error(response, status: int, field: str | None = None, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert error["field"] == field
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "to"),
        ({"to": ""}, "to"),
        ({"to": "not a number"}, "to"),
        ({"to": "+1234"}, "to"),
        ({"to": "+19999999999"}, "to"),
        ({"to": 15017122661}, "to"),
        ({"to": ["+15017122661"]}, "to"),
        ({"to": "+1" + "5" * 100}, "to"),
        ({"to": TO, "channel": "carrier-pigeon"}, "channel"),
        ({"to": TO, "channel": 1}, "channel"),
        ({"to": TO, "locale": "english please"}, "locale"),
        ({"to": TO, "ip": "999.1.1.1"}, "ip"),
        ({"to": TO, "ip": True}, "ip"),
        ({"to": TO, "surprise": 1}, "surprise"),
    ],
)
async def test_bad_start_fields_are_400_naming_the_field(service: Service, body: dict, field: str) -> None:  # type: ignore[type-arg]
    response = await service.http.post("/v1/verifications", json=body, headers=service.auth())
    assert_error(response, 400, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "VE" + "0" * 32}, "code"),
        ({"id": "VE" + "0" * 32, "code": 123456}, "code"),
        ({"id": "VE" + "0" * 32, "code": "12ab56"}, "code"),
        ({"id": "VE" + "0" * 32, "code": "123"}, "code"),
        ({"id": "VE" + "0" * 32, "code": "12345678901"}, "code"),
        ({"code": "123456"}, "id"),
        ({"id": "nope", "code": "123456"}, "id"),
        ({"id": "VE" + "Z" * 32, "code": "123456"}, "id"),
        ({"to": "bogus", "code": "123456"}, "to"),
        ({"id": "VE" + "0" * 32, "code": "123456", "extra": True}, "extra"),
    ],
)
async def test_bad_check_fields_are_400_naming_the_field(service: Service, body: dict, field: str) -> None:  # type: ignore[type-arg]
    response = await service.http.post("/v1/verifications/check", json=body, headers=service.auth())
    assert_error(response, 400, field)


async def test_malformed_json_is_400(service: Service) -> None:
    response = await service.http.post(
        "/v1/verifications", content=b'{"to": ', headers={**service.auth(), "Content-Type": "application/json"}
    )
    assert_error(response, 400, "body", "malformed_json")


async def test_json_that_is_not_an_object_is_400(service: Service) -> None:
    response = await service.http.post("/v1/verifications", json=["+15017122661"], headers=service.auth())
    assert_error(response, 400, "body")


async def test_invalid_utf8_is_400(service: Service) -> None:
    response = await service.http.post(
        "/v1/verifications",
        content=b'{"to": "\xff\xfe"}',
        headers={**service.auth(), "Content-Type": "application/json"},
    )
    assert_error(response, 400, "body")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
async def test_wrong_content_type_is_415(service: Service, content_type: str) -> None:
    headers = {**service.auth(), "Content-Type": content_type}
    response = await service.http.post("/v1/verifications", content=b'{"to": "+15017122661"}', headers=headers)
    assert_error(response, 415, "Content-Type")


async def test_body_over_16_kib_is_413(service: Service) -> None:
    body = b'{"to": "' + b"1" * (17 * 1024) + b'"}'
    response = await service.http.post(
        "/v1/verifications", content=body, headers={**service.auth(), "Content-Type": "application/json"}
    )
    assert_error(response, 413, "body")


async def test_chunked_body_over_16_kib_is_413(service: Service) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 1024

    response = await service.http.post(
        "/v1/verifications", content=chunks(), headers={**service.auth(), "Content-Type": "application/json"}
    )
    assert_error(response, 413, "body")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer nope", "Bearer otpk_abc_def", "Basic !!!", "Basic Zm9v", "Token x"],
)
async def test_missing_or_bad_credentials_are_401(service: Service, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await service.http.post("/v1/verifications", json={"to": TO}, headers=headers)
    assert_error(response, 401, "Authorization")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_basic_auth_with_key_id_and_secret_works(service: Service) -> None:
    import base64

    _, key_id, secret = service.key.split("_")
    basic = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    response = await service.http.post(
        "/v1/verifications", json={"to": TO}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 201


async def test_unknown_path_and_wrong_method_are_json_4xx(service: Service) -> None:
    assert_error(await service.http.get("/v1/nothing-here", headers=service.auth()), 404)
    assert_error(await service.http.delete("/v1/verifications", headers=service.auth()), 405)


async def test_cancel_with_a_bad_body_is_4xx(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    response = await service.http.post(
        f"/v1/verifications/{vid}/cancel", content=b"garbage", headers={**service.auth(), "Content-Type": "text/plain"}
    )
    assert_error(response, 415)


async def test_token_verify_rejects_bad_max_age(service: Service) -> None:
    response = await service.http.post("/v1/tokens/verify", json={"token": "x", "max_age": 0}, headers=service.auth())
    assert_error(response, 400, "max_age")


async def test_redis_down_is_503_unavailable(service: Service, redis_server) -> None:  # type: ignore[no-untyped-def]
    store = service.app.state.store
    real = store.client
    import redis.asyncio as aioredis

    from otp.storage.scripts import Registry

    store.client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    store.scripts = Registry(store.client)
    try:
        response = await service.start(TO)
        assert_error(response, 503, code="unavailable")
        assert response.headers["Retry-After"] == "1"
    finally:
        await store.client.aclose()
        store.client = real
        store.scripts = Registry(real)


async def test_deeply_nested_json_is_400_not_500(service: Service) -> None:
    body = b"[" * 15000
    response = await service.http.post(
        "/v1/verifications", content=body, headers={**service.auth(), "Content-Type": "application/json"}
    )
    assert_error(response, 400, "body")


@pytest.mark.parametrize("code", ["123456\n", "١٢٣٤٥٦", "12345 "])
async def test_a_code_with_a_trailing_newline_or_other_digits_is_400(service: Service, code: str) -> None:
    response = await service.http.post(
        "/v1/verifications/check", json={"id": "VE" + "0" * 32, "code": code}, headers=service.auth()
    )
    assert_error(response, 400, "code")


async def test_a_huge_since_is_400_not_500(service: Service) -> None:
    response = await service.http.get(
        "/v1/stats/conversion?country=US&since=" + "9" * 400, headers=service.auth(service.admin_key)
    )
    assert_error(response, 400, "since")
