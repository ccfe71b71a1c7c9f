"""The /v1 models are the one source of validation and of the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from otp import delivery
from otp.core import validators
from otp.errors import InvalidInput
from otp.web import body, models, openapi


def served() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(openapi.spec()))
    return document


def test_the_document_is_openapi_3_1_and_every_schema_is_json_schema() -> None:
    document = served()
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_delivery_enum_is_the_delivery_states() -> None:
    status = served()["components"]["schemas"]["Delivery"]["properties"]["status"]
    assert status["enum"] == list(delivery.STATES)
    assert {"accepted", "scheduled", "read"} <= set(status["enum"])


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        ({"to": "+15005550006", "bogus": 1}, "bogus", "unknown_field"),
        ({"channel": "sms"}, "to", "missing_field"),
        ({"to": None}, "to", "missing_field"),
        ({"to": 5}, "to", "wrong_type"),
        ({"to": "x" * 65}, "to", "invalid_parameter"),
    ],
)
def test_a_refused_body_names_its_field(data: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        body.parse_model(data, models.StartRequest)
    assert (refused.value.field, refused.value.code) == (field, code)


def test_what_msgspec_leaves_to_the_handler_still_parses() -> None:
    # Out of msgspec's int range and above the documented maximum: the handler words that 400.
    parsed = body.parse_model({"token": "t", "max_age": 10**30}, models.TokenVerifyRequest)
    assert parsed.max_age == 10**30
    assert body.parse_model({"to": "+1", "channel": None}, models.StartRequest).channel is None


@pytest.mark.parametrize(
    ("rule", "raw", "expected"),
    [
        (validators.locale, "pt-BR", "pt-BR"),
        (validators.locale, "", ""),
        (validators.code, "123456", "123456"),
        (validators.ip, " 2001:DB8::1 ", "2001:db8::1"),
        (validators.risk_check, "disable", False),
        (validators.country, "us", "US"),
        (validators.number_prefix, "+1415555", "+1415555"),
    ],
)
def test_validators_take_good_values(rule: Any, raw: str, expected: object) -> None:
    assert rule(raw, "f") == expected


@pytest.mark.parametrize(
    ("rule", "raw"),
    [
        (validators.locale, "en\n"),
        (validators.code, "123"),
        (validators.code, "1234\n"),
        (validators.ip, "fe80::1%eth0"),
        (validators.risk_check, ""),
        (validators.country, "US\n"),
        (validators.country, "ß"),  # "ß".upper() is "SS"
        (validators.number_prefix, "+1415555\n"),
        (validators.number_prefix, "+0415"),
    ],
)
def test_validators_refuse_naming_the_field(rule: Any, raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        rule(raw, "Given")
    assert refused.value.field == "Given"
