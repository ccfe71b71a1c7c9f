"""Twilio's send and delivery errors, and what a person does about each: the one home of them.

Every surface that shows an error code (the send attempt on /v1 and /v2, ``otp audit``, the
dashboard's "undelivered and failed" panel, webhook payloads) explains it from here, and the
worker asks ``retry_helps`` whether a failed create is worth another try -- one rule for both.

Titles are Twilio's (https://www.twilio.com/docs/api/errors/<code>). Where an entry's meaning was
confirmed only from third-party pages that quote Twilio (not from Twilio's own error page), its
``source`` says so; the README's "Delivery errors" section lists which. Twilio itself warns that
codes and their causes change: the meaning is a guide for a person, and only ``retry`` is acted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Twilio's own advice for an error without a catalogued code: retry on 429 and 5xx; everything
# else is about the request itself.
TRANSIENT_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

TWILIO = "twilio.com/docs/api/errors"
THIRD_PARTY = "third-party pages quoting Twilio"


@dataclass(frozen=True)
class DeliveryError:
    code: int
    title: str  # Twilio's
    meaning: str  # one line, for a person
    retry: bool  # whether trying again (the same message, or a new code later) can help
    action: str  # what the operator should do
    source: str = TWILIO
    known: bool = True

    @property
    def more_info(self) -> str:
        return f"https://www.twilio.com/docs/errors/{self.code}"

    def as_dict(self) -> dict[str, object]:
        """The explanation every surface shows beside the code."""
        return {
            "code": self.code,
            "title": self.title,
            "meaning": self.meaning,
            "retry_helps": self.retry,
            "action": self.action,
            "more_info": self.more_info,
        }


# The user replied STOP: the number is marked opted out (otp.core.optouts) and later starts are refused.
OPT_OUT: Final = 21610
# US carriers refusing unregistered 10DLC traffic: a burst of them raises the dashboard's alert.
UNREGISTERED_10DLC: Final = 30034
UNREGISTERED_10DLC_ALERT: Final = 5  # in the last hour

_ENTRIES: Final = (
    DeliveryError(
        20429,
        "Too Many Requests",
        "Twilio refused the request for the rate of API calls.",
        True,
        "None for one; if frequent, lower OTP worker concurrency or spread senders.",
    ),
    DeliveryError(
        21211,
        "Invalid 'To' Phone Number",
        "Twilio does not consider the destination a valid phone number.",
        False,
        "Ask the user to check the number; nothing to change on your side.",
        THIRD_PARTY,
    ),
    DeliveryError(
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
        "Your Twilio account's SMS Geo Permissions do not allow this destination country.",
        False,
        "Enable the country in Twilio Console > Messaging > Settings > Geo permissions, "
        "or leave it out of OTP_ALLOWED_COUNTRIES.",
        THIRD_PARTY,
    ),
    DeliveryError(
        OPT_OUT,
        "Attempt to send to unsubscribed recipient",
        "The user replied STOP to your sender; Twilio will not message them from it.",
        False,
        "otp marks the number opted out and refuses its starts; once the user texts START to "
        "your sender, clear it with 'otp optouts clear' or DELETE /v1/optouts/{number}.",
        THIRD_PARTY,
    ),
    DeliveryError(
        21612,
        "Message cannot be sent with the current combination of 'To' and/or 'From' parameters",
        "Twilio cannot route from this sender to this destination (sender type or country not supported).",
        False,
        "Send to this country from a sender that reaches it (a Messaging Service with a local or alphanumeric sender).",
        THIRD_PARTY,
    ),
    DeliveryError(
        21614,
        "'To' number is not a valid mobile number",
        "The destination is a landline or an invalid number and cannot receive SMS.",
        False,
        "Ask the user for a mobile number; refuse the number type with OTP_BLOCKED_NUMBER_TYPES.",
    ),
    DeliveryError(
        30001,
        "Queue overflow",
        "Too many messages were queued for your sender and this one was dropped.",
        True,
        "Pace sends to your sender's throughput, or add senders to the pool.",
        THIRD_PARTY,
    ),
    DeliveryError(
        30002,
        "Account suspended",
        "Your Twilio account was suspended before the message went out.",
        False,
        "Check Twilio's email and the account's billing; contact Twilio support.",
    ),
    DeliveryError(
        30003,
        "Unreachable destination handset",
        "The phone is off, out of coverage or otherwise unreachable on its network.",
        True,
        "None for one: the user can ask for a new code later. Many at once: a carrier outage.",
    ),
    DeliveryError(
        30004,
        "Message blocked",
        "The recipient or their carrier blocks messages from your sender.",
        False,
        "The user must unblock your sender; if widespread, check your sender's registration.",
        THIRD_PARTY,
    ),
    DeliveryError(
        30005,
        "Unknown destination handset",
        "The number is unknown to its carrier, inactive or no longer in service.",
        False,
        "Ask the user for a current number.",
        THIRD_PARTY,
    ),
    DeliveryError(
        30006,
        "Landline or unreachable carrier",
        "The number is a landline, or its carrier cannot be reached for SMS.",
        False,
        "Ask the user for a mobile number; refuse landlines with OTP_BLOCKED_NUMBER_TYPES.",
        THIRD_PARTY,
    ),
    DeliveryError(
        30007,
        "Message filtered",
        "A carrier or Twilio filtered the message as spam or disallowed content.",
        False,
        "Review the SMS text (links, app name); register your sender (A2P 10DLC, toll-free verification).",
        THIRD_PARTY,
    ),
    DeliveryError(
        30008,
        "Unknown error",
        "The carrier gave no specific reason for not delivering the message.",
        True,
        "None for one; if it repeats, send Twilio support a few Message SIDs.",
        THIRD_PARTY,
    ),
    DeliveryError(
        30022,
        "US A2P 10DLC - Rate Limits Exceeded",
        "US carriers rejected the message for exceeding your 10DLC campaign's throughput.",
        True,
        "Slow sends to your campaign's rate (sender pacing) or raise its trust score / throughput.",
    ),
    DeliveryError(
        30032,
        "Toll-Free Number Has Not Been Verified",
        "Your toll-free sender is not verified; US and Canadian carriers block its traffic.",
        False,
        "Submit (or fix) the number's Toll-Free Verification; send from another sender until approved.",
    ),
    DeliveryError(
        UNREGISTERED_10DLC,
        "US A2P 10DLC - Message from an Unregistered Number",
        "Your US local (10DLC) sender is not registered for A2P 10DLC; US carriers block it.",
        False,
        "Register a Brand and Campaign, attach the number to a Messaging Service with that "
        "campaign, and send through it (OTP_TWILIO_MESSAGING_SERVICE_SID).",
        THIRD_PARTY,
    ),
    DeliveryError(
        30044,
        "Trial Message Length Exceeded",
        "A Twilio trial account sent a message with more segments than trial accounts allow.",
        False,
        "Shorten the SMS (app name, template, only GSM-7 characters) or upgrade the Twilio account.",
    ),
    DeliveryError(
        30450,
        "Message delivery blocked",
        "Twilio's SMS Pumping Protection blocked this destination for 15-30 minutes.",
        True,
        "None if it is fraud; a real user can try again later, or safe-list the number at Twilio.",
    ),
)
CATALOGUE: Final[dict[int, DeliveryError]] = {e.code: e for e in _ENTRIES}


def lookup(code: int | str | None) -> DeliveryError | None:
    """The entry of ``code`` (a generic one for a code otp doesn't know); None for no code."""
    if code is None or code == "":
        return None
    text = str(code)
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    number = int(text)
    found = CATALOGUE.get(number)
    if found is not None:
        return found
    return DeliveryError(
        number,
        f"Twilio error {number}",
        "Not in otp's catalogue; Twilio's page for the code explains it.",
        False,
        f"Read https://www.twilio.com/docs/errors/{number}.",
        source="",
        known=False,
    )


def explain(code: int | str | None) -> dict[str, object] | None:
    found = lookup(code)
    return found.as_dict() if found is not None else None


def retry_helps(code: int | None, http_status: int | None = None) -> bool:
    """Whether a failed send is worth trying again: the catalogue's word for a code it knows, else
    Twilio's advice by HTTP status (429 and 5xx)."""
    known = CATALOGUE.get(code) if code is not None else None
    if known is not None:
        return known.retry
    return http_status in TRANSIENT_STATUSES


def opts_out(code: int | str | None) -> bool:
    return str(code) == str(OPT_OUT)
