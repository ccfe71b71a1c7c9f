"""Admin actions, audited in one place: every change an operator makes (``AdminAction``), from the
admin API, the dashboard or the command line, is one ``admin`` event in the audit log and one line
on the ``otp.admin`` log, both written by `record`.

The event names who acted (``key``: the API key id, the dashboard session's key id, or ``cli``;
``key_name``; ``via``: api, dashboard or cli; ``user``: the OS user of a command; ``client_ip``:
the HTTP client's address) and what it acted on (``entry``). Never a secret or a token: callers
pass key ids. Never a full number: a target that is one is masked as every audit record masks
numbers (``mask_in_record``); a prefix (``+1415555``), a country or a key id is kept as typed.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from otp.audit_fields import AdminAction, Event, recorded
from otp.clock import SYSTEM
from otp.core.apikeys import ApiKey
from otp.core.phone import mask_in_record, mask_numbers
from otp.storage.store import Store

__all__ = ["Actor", "AdminAction", "record", "recordable"]

log = logging.getLogger("otp.admin")

# Admin events are few (bounded by people, and failed sign-ins by their throttle): one
# partition's stream holds them all, so a reader finds them in one place.
PARTITION = 0
CLI_KEY = "cli"
CLI_NAME = "otp (command line)"
VIA_API = "api"
VIA_DASHBOARD = "dashboard"
VIA_CLI = "cli"

_E164_LIKE = re.compile(r"\+\d{8,15}\Z")
# The log line carries the event's fields as attributes of its record (``extra``), for a structured
# formatter; a field named like a LogRecord attribute would make logging raise, so it gets a prefix.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@dataclass(frozen=True)
class Actor:
    """Who took an admin action. ``key_id`` "" when no key is known (a sign-in with a wrong key)."""

    key_id: str
    key_name: str
    via: str
    user: str = ""
    address: str = ""

    @classmethod
    def of_key(cls, key: ApiKey | None, *, via: str, address: str = "") -> Actor:
        return cls(key.key_id if key else "", key.name if key else "", via, address=address)

    @classmethod
    def command_line(cls) -> Actor:
        return cls(CLI_KEY, CLI_NAME, VIA_CLI, user=_os_user())


def _os_user() -> str:
    """Best effort: a container may run under a uid with no name and no USER variable."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def recordable(target: str) -> str:
    """``target`` as the record may name it: a whole number masked, anything else kept."""
    if _E164_LIKE.match(target):
        try:
            # Strictly possible, not "possible locally": +14155550 is a prefix, not a number.
            possible = phonenumbers.is_possible_number_with_reason(phonenumbers.parse(target))
        except NumberParseException:
            possible = ValidationResult.INVALID_COUNTRY_CODE
        if possible == ValidationResult.IS_POSSIBLE:
            return mask_in_record(target)
    return target


async def record(
    store: Store,
    action: AdminAction,
    *,
    actor: Actor,
    target: str = "",
    clock: Callable[[], float] = SYSTEM,
    details: Mapping[str, str] | None = None,
) -> None:
    """Write the ``admin`` event of ``action`` and log it. ``details``: more fields of the event
    (free text in them has its numbers masked); ``clock``: the caller's (the service's, injected
    in tests)."""
    fields = recorded(
        {
            "event": Event.ADMIN,
            "action": action,
            "key": actor.key_id,
            "key_name": actor.key_name,
            "via": actor.via,
            "user": actor.user,
            "client_ip": actor.address,
            "entry": recordable(target),
            **{name: mask_numbers(value) for name, value in (details or {}).items()},
        }
    )
    await store.audit_event(PARTITION, int(clock() * 1000), fields)
    who = actor.key_name or actor.key_id or actor.address or "unknown"
    log.info(
        "admin action %s %s by %s via %s",
        action.value,
        fields.get("entry", "-"),
        who,
        actor.via,
        extra={(f"admin_{k}" if k in _RESERVED else k): str(v) for k, v in fields.items()},
    )
