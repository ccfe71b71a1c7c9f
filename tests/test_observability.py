"""What operators watch: Prometheus metrics, the audit JSON log line, readiness."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import Service, make_settings

from otp.settings import Settings

TO = "+15017122661"
METRICS_TOKEN = "metrics-token-0123456789abcdefghijklmnop"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """The service of these tests serves /metrics (it is off without a token)."""
    return make_settings(redis_url, metrics_token=METRICS_TOKEN)


async def test_metrics_count_starts_approvals_refusals_and_latency(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    await service.start(TO)  # the free first resend
    await service.start(TO)  # refused: resend cooldown
    await service.check(await service.last_code(), id=vid)
    text = (await service.http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    assert 'otp_verifications_started_total{country="US"}' in text
    assert 'otp_verifications_approved_total{country="US"}' in text
    assert 'otp_refusals_total{reason="resend_too_soon",rule="resend_cooldown"}' in text
    assert 'otp_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/verifications"' in text
    assert "otp_outbox_depth" in text
    assert vid not in text  # ids are folded into the route's shape


async def test_every_audit_event_is_also_one_json_log_line_with_a_masked_number(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otp.audit")
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    await service.check("000000" if code != "000000" else "111111", id=vid)
    await service.check(code, id=vid)
    # Its fields under "audit" (otp/logs.py writes the line as one JSON object).
    lines = [getattr(r, "audit") for r in caplog.records if r.name == "otp.audit"]  # noqa: B009
    assert [line["event"] for line in lines if line["event"] != "delivery"] == ["started", "check_failed", "approved"]
    raw = "\n".join(r.getMessage() + json.dumps(getattr(r, "audit", None)) for r in caplog.records)
    assert "+15017122661" not in raw
    assert code not in raw
    assert lines[0]["to"] == "+1*********61"


async def test_readiness_reports_redis_and_its_configuration_not_the_workers(service: Service) -> None:
    ready = await service.http.get("/readyz")  # no worker has beaten: an API process serves anyway
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "redis_config": "ok"}
    assert (await service.http.get("/healthz")).json() == {"status": "ok", "checks": {}}
