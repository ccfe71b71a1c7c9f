"""Issue 16's review (run it in production): the attacks that worked, each fixed in the module that
owns its rule."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import Service

from otp.core import validators
from otp.core.deployment import Finding, Level
from otp.core.readiness import VERDICT_TTL
from otp.doctor import table
from otp.errors import InvalidInput

# -- the safe list: a whole country inside a shared calling code ------------------------------------
# +1 is shared by the US, Canada and 23 other countries (Jamaica is +1 876 and +1 658, the Bahamas
# +1 242), +7 by Russia and Kazakhstan (+7 7), +39 by Italy and the Vatican (+39 06698): an entry
# that is one of those countries' whole ranges exempts every number there from the fraud rules —
# and the Caribbean ranges are where SMS pumping goes first.


@pytest.mark.parametrize(
    ("entry", "named"),
    [("+1876", "JM"), ("+1242", "BS"), ("+1809", "DO"), ("+18", "JM"), ("+77", "KZ"), ("+3906698", "VA")],
)
def test_a_whole_country_inside_a_shared_calling_code_is_refused_like_a_calling_code(entry: str, named: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validators.safe_entry(entry, "entry", confirm="pass --country")
    assert refused.value.field == "entry"
    assert named in refused.value.message and "pass --country" in refused.value.message
    assert validators.safe_entry(entry, "entry", whole_country=True) == entry


def test_a_prefix_covering_a_whole_range_of_another_country_says_so() -> None:
    # +441 is every UK geographic number and all of the Isle of Man's landlines (+44 1624).
    with pytest.raises(InvalidInput) as refused:
        validators.safe_entry("+441", "entry")
    assert "IM (+441624)" in refused.value.message


@pytest.mark.parametrize("entry", ["+1876555", "+1415555", "+4420", "+447700", "+7495", "+39066981", "+15017122661"])
def test_a_prefix_inside_a_countrys_range_is_still_taken(entry: str) -> None:
    assert validators.safe_entry(entry, "entry") == entry


async def test_the_api_refuses_jamaica_without_country_true(service: Service) -> None:
    admin = service.auth(service.admin_key)
    refused = await service.http.post("/v1/safelist", json={"entry": "+1876"}, headers=admin)
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "entry" and "JM" in refused.json()["error"]["message"]
    accepted = await service.http.post("/v1/safelist", json={"entry": "+1876", "country": True}, headers=admin)
    assert accepted.status_code == 201


# -- /readyz: unauthenticated probes at the verdict's expiry each ran INFO all ------------------------


async def _info_calls(service: Service) -> int:
    stats = await service.redis.info("commandstats")
    return int(stats.get("cmdstat_info", {}).get("calls", 0))


async def test_concurrent_readyz_probes_share_one_configuration_read(service: Service) -> None:
    # A warm pool (a probe's PING is answered at once), as on a server that has been up a while.
    await asyncio.gather(*(service.http.get("/readyz") for _ in range(40)))
    service.clock.advance(VERDICT_TTL)
    before = await _info_calls(service)
    answers = await asyncio.gather(*(service.http.get("/readyz") for _ in range(40)))
    assert all(a.status_code == 200 for a in answers)
    # One INFO for the 40 probes (and the one this test reads the count with).
    assert await _info_calls(service) - before <= 2


# -- otp doctor: text from Twilio or Redis reaches the terminal as it came ----------------------------


def test_doctor_table_prints_no_control_characters_from_a_finding() -> None:
    hostile = Finding("twilio account", Level.FAIL, "HTTP 401: \x1b[2J\x1b]0;pwned\x07bad\u202eexe.txt\r\nforged", "x")
    printed = table([hostile])
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed and "\r" not in printed
    assert "forged" in printed


@pytest.mark.parametrize("cause", ["storage", "internal"])
def test_an_error_line_names_the_route_template_not_the_method_or_path_a_client_sent(
    cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A method token is whatever a client sends: "1-415-555-2661" isn't masked as a number (its
    # runs are short), so the line itself must not carry it, nor a number in the path.
    from starlette.requests import Request

    from otp.web import errors as web_errors

    scope = {"type": "http", "method": "1-415-555-2661", "path": "/v1/verifications/+14155552661", "headers": []}
    found = web_errors.Failure(cause, 503, "unavailable", "storage unavailable")  # type: ignore[arg-type]
    with caplog.at_level("WARNING"):
        web_errors.note(Request(scope), ConnectionError("down"), found, logging.getLogger("otp.test"))
    line = caplog.records[-1].getMessage()
    assert "OTHER unmatched" in line
    assert "415" not in line and "2661" not in line
