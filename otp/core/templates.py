"""otp's SMS templates (otp.core.messages.CATALOGUE) by their Verify Template sid (``HJ…``).

A sid is derived from the template's fixed name, so it is the same in every process and release
(the verification template's is the one /v2/Templates has always listed). A start picks its
template by TemplateSid, else by its service's DefaultTemplateSid, else the verification one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Final

from otp.core import messages
from otp.core.messages import Template
from otp.errors import InvalidInput

TEMPLATE_SID: Final = re.compile(r"HJ[0-9a-fA-F]{32}")
# What the /v2 error table answers with Twilio's 60228 (Template was not found).
TEMPLATE_NOT_FOUND: Final = "template_not_found"


def sid_of(name: str) -> str:
    return "HJ" + hashlib.sha256(f"otp/template/{name}".encode()).hexdigest()[:32]


BY_SID: Final[Mapping[str, Template]] = {sid_of(t.name): t for t in messages.CATALOGUE.values()}


def by_sid(sid: str, field: str) -> Template:
    """The template with ``sid``; raises `InvalidInput` naming ``field`` (Twilio's 60228) for any
    other sid."""
    found = BY_SID.get(sid.strip())
    if found is None:
        raise InvalidInput(
            f"`{field}` {sid.strip()[:34]!r} is not one of otp's templates (GET /v2/Templates lists them)",
            field=field,
            code=TEMPLATE_NOT_FOUND,
        )
    return found


def choose(template_sid: str | None, default_sid: str | None) -> Template:
    """The start's template: its TemplateSid, else the service's DefaultTemplateSid, else the
    verification template."""
    if template_sid is not None:
        return by_sid(template_sid, "TemplateSid")
    if default_sid:
        return by_sid(default_sid, "DefaultTemplateSid")
    return messages.CATALOGUE[messages.VERIFICATION]
