"""/metrics shows per-country volumes: it answers only a scraper holding OTP_METRICS_TOKEN."""

from __future__ import annotations

import pytest
from conftest import Clock, RecordingSender, Service, make_settings, running_service

from otp.errors import ConfigError
from otp.settings import Settings

TOKEN = "metrics-token-0123456789abcdefghijklmnop"


async def test_without_a_token_setting_metrics_are_off_and_say_why(service: Service) -> None:
    await service.start("+15017122661")
    for headers in ({}, service.auth(), service.auth(service.admin_key), {"Authorization": "Bearer "}):
        response = await service.http.get("/metrics", headers=headers)
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "metrics_disabled" and "OTP_METRICS_TOKEN" in error["message"]
        assert "otp_verifications_started_total" not in response.text


async def test_metrics_need_the_bearer_token(redis_url: str) -> None:
    settings = make_settings(redis_url, metrics_token=TOKEN)
    async with running_service(settings, Clock(), RecordingSender()) as service:
        await service.start("+15017122661")
        wrong = [
            {},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            service.auth(service.admin_key),  # an admin API key is not the metrics token
        ]
        for headers in wrong:
            response = await service.http.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["field"] == "Authorization"
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert 'country="US"' not in response.text
        ok = await service.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and 'otp_verifications_started_total{country="US"}' in ok.text
        assert ok.headers["content-type"].startswith("text/plain")


def test_metrics_token_setting_is_read_checked_and_never_shown() -> None:
    env = {"OTP_REDIS_URL": "redis://127.0.0.1:1/0", "OTP_SECRET_KEY": "k" * 40}
    assert Settings.from_env(env).metrics_token == ""
    settings = Settings.from_env({**env, "OTP_METRICS_TOKEN": f"  {TOKEN} "})
    assert settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)
    with pytest.raises(ConfigError, match="OTP_METRICS_TOKEN"):
        Settings.from_env({**env, "OTP_METRICS_TOKEN": "short"})
