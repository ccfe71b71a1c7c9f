"""Twilio Lookup v2 ``line_type_intelligence`` through the official SDK: the `LineTypeSource` the
core's `otp.core.line_types` asks.

The SDK is blocking: each Lookup runs on a thread of this adapter's own pool (never the default
executor, which argon2 uses), so a slow Lookup never stalls the event loop, and a burst of them
queues behind ``pool_size`` threads instead of spawning more. ``OTP_TWILIO_API_URL`` redirects
``lookups.twilio.com`` as it does the Messages API (`RedirectingHttpClient`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException

from otp.core.line_types import LookupAnswer, LookupFailed
from otp.edge.twilio_sender import twilio_client

FIELDS = "line_type_intelligence"


class TwilioLookup:
    def __init__(
        self, account_sid: str, auth_token: str, *, api_url: str = "", timeout: float = 2.0, pool_size: int = 8
    ) -> None:
        self.client = twilio_client(account_sid, auth_token, api_url=api_url, timeout=timeout, pool_size=pool_size)
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="otp-lookup")

    async def line_type(self, e164: str) -> LookupAnswer:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.fetch, e164)

    def fetch(self, e164: str) -> LookupAnswer:
        try:
            found = self.client.lookups.v2.phone_numbers(e164).fetch(fields=FIELDS)
        except TwilioRestException as exc:
            raise LookupFailed(f"http_{exc.status}") from None
        except requests.Timeout:
            raise LookupFailed("timeout") from None
        except requests.RequestException:
            raise LookupFailed("unreachable") from None
        except Exception as exc:
            # Anything else the SDK raises (an answer it can't read): no answer, never a 500.
            raise LookupFailed(f"sdk_{type(exc).__name__}"[:40]) from None
        return answer(found.line_type_intelligence)


def answer(intelligence: Any) -> LookupAnswer:
    """Lookup's ``line_type_intelligence`` object (``type``, ``carrier_name``,
    ``mobile_country_code``, ``mobile_network_code``, ``error_code``) as the core reads it."""
    if not isinstance(intelligence, dict):
        raise LookupFailed("no_line_type_intelligence")
    kind, carrier, error = intelligence.get("type"), intelligence.get("carrier_name"), intelligence.get("error_code")
    return LookupAnswer(
        line_type=kind if isinstance(kind, str) and kind else None,
        carrier=carrier if isinstance(carrier, str) else "",
        error_code=error if isinstance(error, int) else None,
    )
