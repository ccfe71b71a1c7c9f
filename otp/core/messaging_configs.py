"""A /v2 service's MessagingConfigurations: which Messaging Service (``MG…``) sends its SMS to a
country, or to every country without one of its own (``all``). Twilio's way of giving a service a
pool of numbers per country.

Configuration beside the service (otp.storage.accounts; deleted with it), bounded by nature: one
per country that has phone numbers, plus ``all``. A start looks up the destination's country and
``all`` in one read and puts the chosen sid on that send's job; the worker's sender sends with it
instead of the operator's default sender, so a change applies from the next send on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from otp.core import validators
from otp.core.phone import COUNTRIES
from otp.errors import Conflict, InvalidInput, NotFound
from otp.storage import accounts
from otp.storage.store import Store

EVERY_COUNTRY: Final = "all"
MESSAGING_SERVICE_SID: Final = re.compile(r"MG[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class MessagingConfiguration:
    service_sid: str
    country: str  # ISO 3166 alpha-2, upper case, or "all"
    messaging_service_sid: str
    created_at: float
    updated_at: float


def country(raw: str, field: str = "Country") -> str:
    """``GB``/``gb`` → ``GB``, ``all``/``ALL`` → ``all``; a code of no country that has phone
    numbers is refused naming ``field`` (so the list stays bounded by the world)."""
    text = raw.strip()
    if text.lower() == EVERY_COUNTRY:
        return EVERY_COUNTRY
    code = validators.country(text, field)
    if code not in COUNTRIES:
        raise InvalidInput("must be the ISO 3166-1 alpha-2 code of a country with phone numbers, or all", field=field)
    return code


def messaging_service_sid(raw: str, allowed: frozenset[str], field: str = "MessagingServiceSid") -> str:
    """An MG sid, and one of ``allowed`` when the operator lists them (OTP_TWILIO_MESSAGING_SERVICES):
    every tenant sends through the operator's one Twilio account, so without the list a tenant may
    name any of its Messaging Services, another tenant's sender pool (and sender ID) included."""
    text = raw.strip()
    if not MESSAGING_SERVICE_SID.fullmatch(text):
        raise InvalidInput("must be a Messaging Service SID (MG and 32 hex digits)", field=field)
    if allowed and text not in allowed:
        raise InvalidInput("is not one of the Messaging Services this otp's operator allows", field=field)
    return text


def _decode(service_sid: str, country_code: str, value: str) -> MessagingConfiguration:
    sid, created, updated = [*value.split("|"), "0", "0"][:3]
    return MessagingConfiguration(service_sid, country_code, sid, int(created or 0) / 1000, int(updated or 0) / 1000)


def _settled(service_sid: str, country_code: str, outcome: str, value: str) -> MessagingConfiguration:
    if outcome == "exists":
        raise Conflict(f"{country_code} already has a messaging configuration: update it", field="Country")
    if outcome in ("missing", "no_service"):
        raise NotFound(f"no messaging configuration for {country_code} in this service", field="Country")
    return _decode(service_sid, country_code, value)


async def create(store: Store, service_sid: str, country_code: str, sid: str, *, now: float) -> MessagingConfiguration:
    outcome, value = await accounts.change_messaging_configuration(
        store, service_sid, op="create", country=country_code, sid=sid, at_ms=int(now * 1000)
    )
    return _settled(service_sid, country_code, outcome, value)


async def update(store: Store, service_sid: str, country_code: str, sid: str, *, now: float) -> MessagingConfiguration:
    outcome, value = await accounts.change_messaging_configuration(
        store, service_sid, op="update", country=country_code, sid=sid, at_ms=int(now * 1000)
    )
    return _settled(service_sid, country_code, outcome, value)


async def delete(store: Store, service_sid: str, country_code: str) -> None:
    outcome, value = await accounts.change_messaging_configuration(
        store, service_sid, op="delete", country=country_code
    )
    _settled(service_sid, country_code, outcome, value)


async def fetch(store: Store, service_sid: str, country_code: str) -> MessagingConfiguration:
    (value,) = await accounts.messaging_configuration(store, service_sid, country_code)
    if value is None:
        raise NotFound(f"no messaging configuration for {country_code} in this service", field="Country")
    return _decode(service_sid, country_code, value)


async def list_all(store: Store, service_sid: str) -> list[MessagingConfiguration]:
    """Every configuration of the service, by country (``all`` first)."""
    found = await accounts.messaging_configurations(store, service_sid)
    order = sorted(found, key=lambda code: (code != EVERY_COUNTRY, code))
    return [_decode(service_sid, code, found[code]) for code in order]


async def sender_for(
    store: Store, service_sid: str, destination_country: str, allowed: frozenset[str] = frozenset()
) -> str:
    """The Messaging Service for an SMS to ``destination_country`` ("" for a number of no single
    country): its own configuration, else ``all``'s, else "" (the operator's sender). One the
    operator no longer allows (``allowed``, when it lists any) is refused, not sent with: the list
    is checked at every send, not only when the configuration was saved."""
    wanted = [destination_country, EVERY_COUNTRY] if destination_country else [EVERY_COUNTRY]
    for code, value in zip(wanted, await accounts.messaging_configuration(store, service_sid, *wanted), strict=True):
        if value is None:
            continue
        sid = value.split("|", 1)[0]
        if allowed and sid not in allowed:
            raise InvalidInput(
                f"the service's MessagingConfiguration for {code} names a Messaging Service this otp's"
                " operator no longer allows: update or delete it",
                field="MessagingServiceSid",
            )
        return sid
    return ""
