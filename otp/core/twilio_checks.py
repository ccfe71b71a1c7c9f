"""Whether the Twilio account can send what the configuration says it sends: the account is open,
each sender of ``OTP_TWILIO_FROM`` is the account's own (a number with SMS capability, a short code,
a Messaging Service), and the Messaging Services the configuration names exist. `otp doctor` asks
these through a `TwilioAccountSource` (otp/edge/twilio_account.py, the SDK) and prints the findings.

Twilio refuses a message from a sender the account does not own or one without SMS (error 21606),
and stops sending for a suspended account (30002): each would be a failed send found out by a user
waiting for a code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from otp.core.deployment import Finding, Level
from otp.core.phone import mask, mask_numbers
from otp.core.senders import DEFAULT_MPS, SHORT_CODE, Sender, ten_dlc_warning

# What a failed call means for the operator: the credentials, the network, or anything else.
AUTH = "auth"
UNREACHABLE = "unreachable"
REFUSED = "refused"


class TwilioCheckFailed(Exception):
    """A call to Twilio that gave no answer to judge."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # AUTH | UNREACHABLE | REFUSED
        self.detail = detail


@dataclass(frozen=True)
class AccountInfo:
    sid: str
    status: str  # active | suspended | closed
    type: str  # Trial | Full


@dataclass(frozen=True)
class OwnedNumber:
    phone_number: str
    sms: bool  # capabilities["sms"]


@dataclass(frozen=True)
class ServiceInfo:
    sid: str
    friendly_name: str


class TwilioAccountSource(Protocol):
    """The account's resources; each call raises TwilioCheckFailed when Twilio gives no answer."""

    def account(self) -> AccountInfo: ...

    def numbers(self, e164: str) -> list[OwnedNumber]: ...  # IncomingPhoneNumbers matching e164

    def short_codes(self, code: str) -> list[str]: ...  # ShortCodes matching code

    def service(self, sid: str) -> ServiceInfo | None: ...  # None: the account has no such service


@dataclass(frozen=True)
class TwilioSetup:
    senders: tuple[Sender, ...]  # OTP_TWILIO_FROM
    messaging_service_sid: str = ""  # OTP_TWILIO_MESSAGING_SERVICE_SID
    allowed_services: frozenset[str] = frozenset()  # OTP_TWILIO_MESSAGING_SERVICES


def short_sid(sid: str) -> str:
    """``AC1234…cdef``: enough to tell accounts and services apart in a table."""
    return sid if len(sid) <= 12 else f"{sid[:6]}…{sid[-4:]}"


def sender_label(sender: Sender) -> str:
    if sender.is_messaging_service:
        return short_sid(sender.address)
    return sender.address if sender.kind == SHORT_CODE else mask(sender.address)


def _failed(check: str, problem: TwilioCheckFailed) -> Finding:
    fixes = {
        AUTH: "set OTP_TWILIO_AUTH_TOKEN (and OTP_TWILIO_ACCOUNT_SID) to the account's current values "
        "(Twilio console, Account info); a rotated token voids the old one",
        UNREACHABLE: "let this host reach api.twilio.com and messaging.twilio.com over HTTPS "
        "(or fix OTP_TWILIO_API_URL); check OTP_TWILIO_TIMEOUT",
    }
    detail = (
        f"Twilio refused OTP_TWILIO_AUTH_TOKEN for OTP_TWILIO_ACCOUNT_SID: {problem.detail}"
        if problem.kind == AUTH
        else problem.detail
    )
    return Finding(check, Level.FAIL, mask_numbers(detail), fixes.get(problem.kind, "see Twilio's error above"))


def account_finding(account: AccountInfo) -> Finding:
    check = "twilio account"
    where = f"account {short_sid(account.sid)} is {account.status} ({account.type})"
    if account.status in ("suspended", "closed"):
        return Finding(
            check,
            Level.FAIL,
            f"{where}: Twilio sends nothing (error 30002)",
            "reactivate it in the Twilio console (billing, compliance) or use another account",
        )
    if account.status != "active":
        return Finding(check, Level.WARN, where, "check the account's status in the Twilio console")
    if account.type == "Trial":
        return Finding(
            check,
            Level.WARN,
            f"{where}: SMS reach verified caller IDs only, and carry Twilio's trial prefix",
            "upgrade the account in the Twilio console",
        )
    return Finding(check, Level.PASS, where)


def _throughput(sender: Sender) -> str:
    default = DEFAULT_MPS[sender.kind]
    if sender.mps == default:
        return f"{sender.mps:g} MPS (Twilio's default for the type)"
    return f"{sender.mps:g} MPS (from OTP_TWILIO_FROM)"


def sender_finding(source: TwilioAccountSource, sender: Sender) -> Finding:
    """One sender of OTP_TWILIO_FROM: the account has it and it can send SMS."""
    check = f"sender {sender_label(sender)}"
    kind = f"{sender.kind}, {_throughput(sender)}"
    remove = "or remove it from OTP_TWILIO_FROM"
    try:
        if sender.is_messaging_service:
            service = source.service(sender.address)
            if service is None:
                return Finding(
                    check, Level.FAIL, f"{kind}: the account has no such Messaging Service", f"create it {remove}"
                )
            return Finding(check, Level.PASS, f"{kind}: Messaging Service {mask_numbers(service.friendly_name)!r}")
        if sender.kind == SHORT_CODE:
            if sender.address not in source.short_codes(sender.address):
                return Finding(
                    check, Level.FAIL, f"{kind}: not a short code of this account", f"provision it in Twilio {remove}"
                )
            return Finding(check, Level.PASS, f"{kind}: the account's short code")
        return _number_finding(check, kind, remove, source.numbers(sender.address), sender.address)
    except TwilioCheckFailed as problem:
        return _failed(check, problem)


def _number_finding(check: str, kind: str, remove: str, listed: Iterable[OwnedNumber], e164: str) -> Finding:
    # Twilio's PhoneNumber filter matches part of a number: only the exact one counts.
    owned = next((n for n in listed if n.phone_number == e164), None)
    if owned is None:
        return Finding(
            check,
            Level.FAIL,
            f"{kind}: not one of the account's phone numbers (Twilio refuses it as From: error 21606)",
            f"buy or port the number into this account {remove}",
        )
    if not owned.sms:
        return Finding(
            check,
            Level.FAIL,
            f"{kind}: the number has no SMS capability",
            f"use an SMS-capable number {remove}",
        )
    return Finding(check, Level.PASS, f"{kind}: the account's number, SMS-capable")


def service_finding(source: TwilioAccountSource, sid: str, variable: str) -> Finding:
    """A Messaging Service a variable names (OTP_TWILIO_MESSAGING_SERVICE_SID, …_SERVICES) exists."""
    check = f"messaging service {short_sid(sid)}"
    try:
        service = source.service(sid)
    except TwilioCheckFailed as problem:
        return _failed(check, problem)
    if service is None:
        return Finding(
            check,
            Level.FAIL,
            f"named in {variable}, but the account has no such Messaging Service",
            f"create it in the Twilio console or remove it from {variable}",
        )
    return Finding(check, Level.PASS, f"{variable}: {mask_numbers(service.friendly_name)!r}")


def twilio_findings(source: TwilioAccountSource, setup: TwilioSetup) -> list[Finding]:
    """The account first; the senders and services only when it answered (they would each fail
    the same way otherwise)."""
    try:
        account = source.account()
    except TwilioCheckFailed as problem:
        return [_failed("twilio account", problem)]
    found = [account_finding(account)]
    if found[0].level is Level.FAIL:
        return found
    found.extend(sender_finding(source, s) for s in setup.senders)
    if setup.messaging_service_sid:
        found.append(service_finding(source, setup.messaging_service_sid, "OTP_TWILIO_MESSAGING_SERVICE_SID"))
    found.extend(
        service_finding(source, sid, "OTP_TWILIO_MESSAGING_SERVICES") for sid in sorted(setup.allowed_services)
    )
    found.extend(pool_findings(setup.senders, setup.messaging_service_sid))
    return found


def pool_findings(senders: Sequence[Sender], messaging_service_sid: str) -> list[Finding]:
    """The A2P 10DLC warning the worker logs at startup (otp.core.senders), as a finding."""
    warning = ten_dlc_warning(senders, messaging_service_sid)
    if warning is None:
        return []
    detail, _, fix = warning.partition(". Register, then ")
    return [Finding("sender pool (US 10DLC)", Level.WARN, mask_numbers(detail), "register, then " + fix)]
