"""The Verify v2 resources otp doesn't offer, as data: a request under any of these paths gets
Twilio's 404 (20404) saying so and what to use instead, rather than the generic "no resource",
so an integration ported from Twilio learns at its first call which feature it has to drop.

A path is a template (``{…}`` is one segment) and covers everything below it; the first match
wins. Offering one of these means adding its routes and deleting its row here.
"""

from __future__ import annotations

import re
from typing import Final

NOT_OFFERED: Final[tuple[tuple[str, str, str], ...]] = (
    ("/v2/Services/{ServiceSid}/AccessTokens", "Access Tokens", "otp offers no Verify Push or TOTP factors"),
    ("/v2/Services/{ServiceSid}/Entities", "Entities, Factors and Challenges", "otp offers sms verifications only"),
    ("/v2/Services/{ServiceSid}/Passkeys", "Passkeys", "otp offers sms verifications only"),
    ("/v2/Forms", "Forms", "otp offers no Verify Push or TOTP factors"),
)


def _pattern(template: str) -> re.Pattern[str]:
    parts = ["[^/]+" if part.startswith("{") else re.escape(part) for part in template.split("/")]
    return re.compile("/".join(parts) + r"(?:/.*)?\Z", re.DOTALL)


_MATCHERS: Final = tuple((_pattern(path), name, instead) for path, name, instead in NOT_OFFERED)


def refusal(path: str) -> str | None:
    """What a request for ``path`` is told when it names a resource otp doesn't offer; else None."""
    for pattern, name, instead in _MATCHERS:
        if pattern.match(path):
            return f"{name} are not offered by otp ({instead})"
    return None
