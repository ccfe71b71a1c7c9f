"""Hostile-client attacks on the refactored code (issue 13): each test reproduces one finding."""

from __future__ import annotations

import httpx
import pytest
from conftest import Service, make_settings

from otp.app import create_app
from otp.core import apikeys, audit
from otp.edge.embedded_redis import free_port
from otp.storage.store import Store

TO = "+15017122661"


def assert_4xx_naming(response: httpx.Response, field: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == field, response.text


@pytest.mark.parametrize(
    "position",
    [(2**64, 0, 0), (2**64 - 1, 2**64, 0), (99999999999999999999, 0, 3), (0, 0, 0), (0, 0, 16)],
)
async def test_an_audit_cursor_past_a_stream_ids_range_is_400_not_a_503(
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


# -- bounded Redis work ------------------------------------------------------------------------


async def _redis_script_usec(service: Service) -> tuple[int, float]:
    stats = await service.redis.info("commandstats")
    calls = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(calls["calls"]), float(calls["usec"])


@pytest.mark.parametrize("path", ["/v2/Attempts", "/v2/Attempts/Summary"])
async def test_an_account_with_many_services_cannot_make_an_attempts_read_hold_redis(
    service: Service, path: str
) -> None:
    """Services cost nothing to create and have no per-account cap; every /v2/Attempts read sent
    all of the account's sids into audit_scan.lua, which built a set of them in each of the 16
    partitions' calls: with 20,000 services one read held Redis for ~0.2 s (50,000: over 1 s)."""
    from otp.storage import keys as keyspace

    auth = await twilio_account(service)
    other = await twilio_account(service, "other")
    mine = await v2_service(service, auth)
    theirs = await v2_service(service, other)
    started = await service.http.post(
        f"/v2/Services/{mine}/Verifications", data={"To": TO, "Channel": "sms"}, auth=auth
    )
    assert started.status_code == 201, started.text
    foreign = await service.http.post(
        f"/v2/Services/{theirs}/Verifications", data={"To": "+15017122662", "Channel": "sms"}, auth=other
    )
    assert foreign.status_code == 201, foreign.text
    async with service.redis.pipeline(transaction=False) as pipe:
        for i in range(20_000):  # as POST /v2/Services would leave them (the index is what reads use)
            pipe.zadd(keyspace.v2_services_of(auth[0]), {f"VA{i:032x}": i})
        await pipe.execute()
    await service.redis.config_resetstat()
    response = await service.http.get(path, auth=auth)
    assert response.status_code == 200, response.text
    calls, usec = await _redis_script_usec(service)
    assert usec < 10_000, f"{calls} script calls held Redis for {usec / 1000:.1f} ms"
    # And the account still sees exactly its own send.
    if path == "/v2/Attempts":
        attempts = response.json()["attempts"]
        assert [a["verification_sid"] for a in attempts] == [started.json()["sid"]]
    else:
        assert response.json()["total_attempts"] == 1


# -- the error mapping -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO"])
@pytest.mark.parametrize("path", ["/v2/Services", "/v2/Attempts/Summary", "/v2/Nope"])
async def test_any_method_on_v2_answers_in_twilios_shape(service: Service, method: str, path: str) -> None:
    """The catch-all route named six methods, so any other one fell through to Starlette's 405 and
    the app's native body ``{"error": …}``, which Twilio's SDKs can't read."""
    auth = await twilio_account(service)
    response = await service.http.request(method, path, auth=auth)
    assert response.status_code in (404, 405), response.text
    assert_twilio_4xx(response)
    assert response.json()["code"] in (20004, 20404)


# -- query strings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "misspelt"),
    [
        ("GET", "/v1/stats/conversion", {"country": "US", "sinse": "7d"}, "sinse"),
        ("DELETE", "/v1/blocks", {"country": "US", "prefx": "+1415555"}, "prefx"),
    ],
)
async def test_admin_endpoints_refuse_a_misspelt_query_parameter(
    service: Service, method: str, path: str, params: dict[str, str], misspelt: str
) -> None:
    """The models document these query strings and /v1/audit and /v1/stats/overview refuse names
    they lack; conversion and unblock ignored them, answering for 24 h (or the country alone)."""
    response = await service.http.request(method, path, params=params, headers=service.auth(service.admin_key))
    assert_4xx_naming(response, misspelt)


# -- what Lua truncates ------------------------------------------------------------------------


async def test_a_long_non_ascii_delivery_error_from_a_status_poll_still_reads_back(service: Service) -> None:
    """The worker cuts error texts to 64 bytes on a character boundary before settle_job, but a
    status poll's Twilio ``error_message`` went to delivery.lua, whose ``string.sub`` cuts bytes:
    a character split at byte 64 left invalid UTF-8 in the record, and every read of the
    verification (/v1 fetch, /v2 fetch and Attempts) failed decoding it: a 500."""
    from otp.storage import keys as keyspace

    started = await service.start()
    assert started.status_code == 201, started.text
    vid = started.json()["id"]
    await service.deliver()
    store: Store = service.app.state.store
    await store.record_delivery(
        partition=keyspace.partition_of_id(vid, store.partitions),
        now_ms=service.clock.now_ms(),
        verification_id=vid,
        send_number=1,
        changes={"status": "undelivered", "error_code": 30008, "error_message": "x" + "é" * 40},
    )
    response = await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())
    assert response.status_code == 200, response.text
    delivery = response.json()["send_attempts"][0]["delivery"]
    assert delivery["status"] == "undelivered"
    assert delivery["error_message"].startswith("xé")


async def test_readyz_answers_its_503_with_a_retry_after() -> None:
    """Every 503 carries Retry-After (otp.web.errors.headers); /readyz built its own answer without
    it. (Here Redis does not answer, so the service is not ready.)"""
    app = create_app(make_settings(f"redis://127.0.0.1:{free_port()}/0"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After") == "1"


@pytest.mark.parametrize("name", ["user\n", "a\nb", "ip "])
async def test_a_rate_limit_name_with_a_trailing_newline_is_refused(service: Service, name: str) -> None:
    """RATE_LIMIT_NAME was matched with ``$``, which lets a trailing newline through: the name
    ("1 to 64 letters, digits or _ . -") went into a Redis key and the audit record as it came."""
    import json

    auth = await twilio_account(service)
    sid = await v2_service(service, auth)
    data = {"To": TO, "Channel": "sms", "RateLimits": json.dumps({name: "alice"})}
    response = await service.http.post(f"/v2/Services/{sid}/Verifications", data=data, auth=auth)
    assert_twilio_4xx(response, "RateLimits")


@pytest.mark.parametrize("since", ["٣h", "５d", "1\u00a0h", "1\u2003m"])
async def test_a_duration_is_ascii_digits_only(service: Service, since: str) -> None:
    """validators.digits refuses non-ASCII digits (int() takes them), but parse_duration's ``\\d``
    and ``\\s`` were Unicode: ``since=٣h`` read as 3 h, where a proxy or log reader sees no number."""
    for path in ("/v1/audit", "/v1/stats/conversion"):
        params = {"since": since} | ({"country": "US"} if "conversion" in path else {})
        response = await service.http.get(path, params=params, headers=service.auth(service.admin_key))
        assert_4xx_naming(response, "since")


# -- unauthenticated: the latency metric's labels ----------------------------------------------


def _latency_series() -> set[tuple[str, str, str]]:
    from otp.core.metrics import LATENCY

    return {
        (s.labels["method"], s.labels["route"], s.labels["status"])
        for metric in LATENCY.collect()
        for s in metric.samples
        if s.name.endswith("_count")
    }


async def test_unauthenticated_requests_cannot_grow_the_latency_metric_without_bound(service: Service) -> None:
    """Every request was timed under its raw path (only ids and long digit runs folded) and its
    raw method: each unknown path, each ``/v2/…`` or ``/v1/safelist/<anything>`` and each made-up
    method made a new histogram series (a dozen samples each) in every API process, for as long
    as it runs -- memory and /metrics size an unauthenticated client could grow at will."""
    before = _latency_series()
    for i in range(50):
        await service.http.get(f"/nothing-here-{i}")
        await service.http.request(f"M{i}", "/v1/verifications")
        await service.http.get(f"/v2/Whatever{i}")
        await service.http.delete(f"/v1/safelist/x{i}")
        await service.http.get(f"/admin/static/nope{i}.css")
    grown = _latency_series() - before
    assert len(grown) <= 12, sorted(grown)[:20]
