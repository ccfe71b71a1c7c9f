"""The Verifier: start, check, fetch and cancel a verification.  The HTTP adapters stay thin over it."""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass, replace
from typing import Any

from otp.audit_fields import COUNTER_ONLY_PREFIX, Event
from otp.clock import SYSTEM, Clock
from otp.core import codes, events, sealing, tokens
from otp.core.codes import CodeHasher
from otp.core.ipaddr import ip_scope
from otp.core.keyring import Keyring
from otp.core.phone import Phone, mask_in_record, parse_e164
from otp.core.policy import Decision, Policy, decisions_json
from otp.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unavailable

# Re-exported (X as X): the adapters name the records through the verifier.
from otp.model import PENDING as PENDING
from otp.model import AttemptOutcome, CheckArgs, NumberLimits, StartArgs
from otp.model import SendAttempt as SendAttempt
from otp.model import Verification as Verification
from otp.storage import keys as keyspace
from otp.storage import records
from otp.storage.store import Store

APPROVED = "approved"
CANCELED = "canceled"
EXPIRED = "expired"
MAX_ATTEMPTS = "max_attempts_reached"


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key's id, and whether it may see every tenant's verifications."""

    key_id: str
    admin: bool = False
    ip: str = ""
    account: str = ""  # the /v2 account owning the service ``key_id``: checks are limited per account


@dataclass(frozen=True)
class Rules:
    """A verification's limits and lifetimes: the shell builds them from its settings."""

    code_length: int
    code_ttl: float
    max_check_attempts: int
    max_sends: int
    codes_kept: int
    retention: float
    token_max_age: float
    # How long after an approval the same right code gets the same approval and token again.
    approval_replay: float
    approval_replays: int  # … at most this many checks of it, right or wrong


@dataclass(frozen=True)
class CheckResult:
    verification: Verification
    approved: bool
    token: str | None = None

    @property
    def status(self) -> str:
        return self.verification.status


@dataclass(frozen=True)
class StartResult:
    verification: Verification
    resent: bool
    flagged: tuple[str, ...] = ()  # pumping scopes over threshold in record_only mode


MIN_CHECKS_PER_PARTITION = 20

# The retry a tenant is told when the number's shared limits refuse it because of another tenant's
# sends: a fixed value, so it says nothing about when those sends were.
SHARED_LIMIT_RETRY = 60

REFUSAL_MESSAGES = {
    "country_not_allowed": "SMS to this country is not enabled (OTP_ALLOWED_COUNTRIES)",
    "number_type_not_allowed": "this kind of number can't receive verification codes",
    "max_sends_reached": "this verification has had all its sends; wait for it to expire",
    "number_daily_limit": "too many codes sent to this number today",
    "number_hourly_limit": "too many codes sent to this number this hour",
    "resend_too_soon": "a code was just sent to this number; wait before asking for another",
    "ip_hourly_limit": "too many codes requested from this IP address",
    "key_minute_limit": "too many codes requested with this API key this minute",
    "prefix_blocked": "SMS to this number range is blocked for now (suspected SMS pumping)",
    "country_blocked": "SMS to this country is blocked for now (suspected SMS pumping)",
    "pumping_unverified_hourly": "too many unused codes to this destination this hour (suspected SMS pumping)",
    "pumping_unverified_daily": "too many unused codes to this destination today (suspected SMS pumping)",
    "pumping_in_flight": "too many codes to this destination are being sent right now; try again in a moment",
}


def _already_approved() -> Conflict:
    # Not a 200 with status "approved": a client testing the status alone would let any code in.
    return Conflict("this verification was already approved; a code approves once", code="already_approved", field="id")


def _refusal_message(decision: Decision) -> str:
    return REFUSAL_MESSAGES.get(decision.reason, decision.reason.replace("_", " "))


# The request field a limit counts by: a refusal names it.
LIMIT_FIELDS = {"ip_sends": "ip", "key_sends": "Authorization", "custom_rate_limit": "RateLimits"}


def pumping_ip(caller: Caller) -> str:
    """The pumping scope of the caller's end-user IP, kept on the record for its approval."""
    return f"{caller.key_id}:{ip_scope(caller.ip)}" if caller.ip else ""


def _rate_limited(decision: Decision) -> RateLimited:
    return RateLimited(
        _refusal_message(decision),
        code=decision.reason,
        field=LIMIT_FIELDS.get(decision.rule, "to"),
        retry_after=decision.retry_after,
        details={"rule": decision.rule},
    )


class Verifier:
    def __init__(
        self,
        store: Store,
        hasher: CodeHasher,
        keyring: Keyring,
        rules: Rules,
        policy: Policy,
        *,
        clock: Clock = SYSTEM,
    ) -> None:
        self.policy = policy
        self.store = store
        self.hasher = hasher
        self.keyring = keyring
        self.rules = rules
        self.clock = clock

    def _now_ms(self) -> int:
        return self.clock.now_ms()

    def _emit(self, event: str, **fields: Any) -> None:
        events.emit(event, self.clock.now(), **fields)

    def _partition(self, e164: str) -> int:
        return keyspace.partition_of_number(e164, self.store.partitions)

    def _id_partition(self, verification_id: str) -> int:
        if not keyspace.VERIFICATION_ID.fullmatch(verification_id):
            raise InvalidInput("must be a verification id: VE followed by 32 hex digits", field="id")
        return keyspace.partition_of_id(verification_id, self.store.partitions)

    def _audit(self, caller: Caller, phone: Phone | str | None = None) -> dict[str, str]:
        context = {"key": caller.key_id}
        if isinstance(phone, str) and phone:
            phone = parse_e164(phone)
        if isinstance(phone, Phone):
            context.update(
                to=mask_in_record(phone.e164), nh=self.keyring.number_hash(phone.e164), country=phone.country
            )
            context[COUNTER_ONLY_PREFIX] = phone.prefix
        if caller.ip:
            context["ip"] = caller.ip
        return context

    async def start(
        self,
        phone: Phone,
        caller: Caller,
        *,
        channel: str = "sms",
        locale: str = "",
        risk_check: bool = True,
        code: str | None = None,
        code_length: int | None = None,
        app_name: str = "",
        custom_limits: dict[str, str] | None = None,
    ) -> StartResult:
        """``code`` is a caller-chosen code (Twilio's CustomCode); ``code_length`` and ``app_name``
        override the defaults for one tenant; ``custom_limits`` are extra per-value send limits
        (Twilio's RateLimits)."""
        partition = self._partition(phone.e164)
        now_ms = self._now_ms()
        audit = self._audit(caller, phone)
        safe = await self.policy.safe_list.covers(phone.e164)
        permission = self.policy.permission(phone)
        if not permission.allowed and not safe:
            await self._audit_refusal(partition, now_ms, audit, permission)
            raise Forbidden(
                _refusal_message(permission), code=permission.reason, field="to", details={"rule": permission.rule}
            )
        admission = await self.policy.admit_send(
            phone,
            key_id=caller.key_id,
            ip=caller.ip,
            risk_check=risk_check and not safe,
            now_ms=now_ms,
            number_hash=self.keyring.number_hash(phone.e164),
            custom=custom_limits or {},
        )
        if not admission.decision.allowed:
            await self.policy.release(admission)
            await self._audit_refusal(partition, now_ms, audit, admission.decision)
            raise _rate_limited(admission.decision)
        if admission.flagged:
            # record_only mode: the send goes out, and the audit says which rule would have refused it.
            audit["flagged"] = ",".join(
                f"{scope}:{admission.decision.details[scope]['flagged']}" for scope in admission.flagged
            )
        custom_code = code is not None
        code = code or codes.generate(code_length or self.rules.code_length)
        # One salt for the key's codes to this number: a check runs argon2 once for all live codes.
        code_hash = await self.hasher.hash(code, f"{caller.key_id}|{phone.e164}")
        limits = self.policy.config
        try:
            start = StartArgs(
                new_id=keyspace.new_verification_id(partition, self.store.partitions),
                to=phone.e164,
                channel=channel,
                locale=locale,
                key_id=caller.key_id,
                ttl_ms=int(self.rules.code_ttl * 1000),
                max_attempts=self.rules.max_check_attempts,
                max_sends=self.rules.max_sends,
                codes_kept=self.rules.codes_kept,
                retention_ms=int(self.rules.retention * 1000),
                code_hash=code_hash,
                sealed_code=sealing.seal(self.keyring, code),
                number_limits=NumberLimits(
                    safe=safe,
                    sends_per_hour=limits.number_sends_per_hour,
                    sends_per_day=limits.number_sends_per_day,
                    cooldown_ms=int(limits.resend_cooldown * 1000),
                    shared_hold_ms=SHARED_LIMIT_RETRY * 1000,
                ),
                event_id=f"{now_ms}:{secrets.token_hex(6)}",
                decisions=decisions_json(admission),
                app_name=app_name,
                custom_code=custom_code,
                unproven=admission.unproven,
                ip_scope=pumping_ip(caller),
            )
            outcome = await self.store.start(partition, now_ms, start, audit)
        except Exception:
            # The other scopes may sit on healthy nodes: don't let a retry be counted twice there.
            with contextlib.suppress(Exception):
                await self.policy.release(admission)
            raise
        if outcome.mode == "refused":
            await self.policy.release(admission)
            self._emit(Event.REFUSED, rule=outcome.rule, reason=outcome.reason, **audit)
            if outcome.foreign:
                # The phone's own limit, shared by every tenant, and another tenant's sends are
                # behind it: say no without saying what they did.
                raise RateLimited(
                    "too many codes were sent to this number recently; try again later",
                    code="rate_limited",
                    field="to",
                    retry_after=max(1, -(-outcome.retry_ms // 1000)),
                )
            raise _rate_limited(Decision(False, outcome.rule, outcome.reason, max(1, -(-outcome.retry_ms // 1000))))
        self._emit(Event.RESENT if outcome.mode == "resent" else Event.STARTED, vid=outcome.record.get("id"), **audit)
        # Every send counts in the pumping windows, resends too; an approval converts them all.
        # Best effort: the SMS is queued, so a failure here must not tell the client to retry.
        with contextlib.suppress(Unavailable):
            await self.policy.commit(admission, now_ms, resent=outcome.mode == "resent")
        return StartResult(
            records.verification(outcome.record), resent=outcome.mode == "resent", flagged=admission.flagged
        )

    async def _audit_refusal(self, partition: int, now_ms: int, audit: dict[str, str], decision: Decision) -> None:
        self._emit(Event.REFUSED, rule=decision.rule, reason=decision.reason, retry_after=decision.retry_after, **audit)
        await self.store.audit_event(
            partition,
            now_ms,
            {
                **audit,
                "event": Event.REFUSED,
                "decision": "refused",
                "rule": decision.rule,
                "reason": decision.reason,
                "retry_after": decision.retry_after,
                "counts": json.dumps(decision.details, separators=(",", ":"), sort_keys=True),
            },
        )

    async def check(
        self, code: str, caller: Caller, *, verification_id: str = "", phone: Phone | None = None
    ) -> CheckResult:
        if verification_id:
            partition = self._id_partition(verification_id)
        elif phone is not None:
            partition = self._partition(phone.e164)
        else:
            raise InvalidInput("give the verification id or the number", field="id")
        retention_ms = int(self.rules.retention * 1000)
        now_ms = self._now_ms()
        per_minute = self.policy.config.key_checks_per_minute
        partitions = self.store.partitions
        found = await self.store.count_attempt(
            partition,
            now_ms,
            CheckArgs(
                verification_id=verification_id,
                to=phone.e164 if phone is not None else "",
                retention_ms=retention_ms,
                caller=caller.key_id,
                admin=caller.admin,
                failed_per_hour=self.policy.config.failed_checks_per_hour,
                # Per partition, twice the even share: traffic spread over ids never meets it early,
                # and a flood aimed at one partition is stopped at a fraction of it.
                # At least min(N, 20) per partition, so a small N still allows a few checks of one code.
                checks_per_minute=max(-(-2 * per_minute // partitions), min(per_minute, MIN_CHECKS_PER_PARTITION)),
                rate_key=caller.account or caller.key_id,
                member=f"{now_ms}:{secrets.token_hex(6)}",
                replay_ms=int(self.rules.approval_replay * 1000),
                replays=self.rules.approval_replays,
            ),
            self._audit(caller, phone),
        )
        vid, record, outcome = found.verification_id, found.record, found.outcome
        if outcome == "throttled":
            self._emit(Event.REFUSED, rule="key_checks", reason="too_many_checks", **self._audit(caller, phone))
            raise RateLimited(
                "too many checks with this API key this minute; slow down",
                code="too_many_checks",
                field="Authorization",
                retry_after=max(1, -(-found.retry_ms // 1000)),
                details={"rule": "key_checks"},
            )
        if outcome == "refused":
            self._emit(
                Event.REFUSED,
                rule="number_failed_checks",
                reason="too_many_failed_checks",
                vid=vid,
                **self._audit(caller, phone),
            )
            raise RateLimited(
                "too many failed checks for this number; wait before trying again",
                code="too_many_failed_checks",
                field="code",
                retry_after=max(1, -(-found.retry_ms // 1000)),
                details={"rule": "number_failed_checks"},
            )
        if outcome == "not_found":
            # Take as long as a real comparison would, so timing doesn't tell unknown ids from known ones.
            await self.hasher.decoy()
            raise NotFound("no pending verification for this id or number", field="id" if verification_id else "to")
        if outcome == APPROVED:
            return await self._repeat_approval(found, code, caller)
        if outcome != "counted":
            await self.hasher.decoy()  # locked, expired or canceled answer as slowly as a comparison
            if outcome == EXPIRED:
                self._emit(Event.EXPIRED, vid=vid, key=caller.key_id)
            # A last attempt may still be in flight: the stored status says pending, the answer doesn't.
            return CheckResult(replace(records.verification(record), status=outcome), approved=False)
        # Newest code first: it is the one the user most likely typed.
        fields = sorted(found.hashes, key=lambda k: -int(k.split(":")[1]))
        index = await self.hasher.first_match([found.hashes[k] for k in fields], code)
        now_ms = self._now_ms()
        number = parse_e164(record["to"])
        audit = self._audit(caller, number)
        attempts = found.attempts
        if index is None:
            await self.store.audit_event(
                partition, now_ms, {**audit, "event": Event.CHECK_FAILED, "vid": vid, "attempt": attempts}
            )
            self._emit(Event.CHECK_FAILED, vid=vid, attempt=attempts, **audit)
            if attempts >= found.max_attempts:
                record = await self.store.exhaust(
                    partition=partition, now_ms=now_ms, verification_id=vid, retention_ms=retention_ms, audit=audit
                )
                self._emit(Event.MAX_ATTEMPTS, vid=vid, **audit)
            return CheckResult(records.verification(record), approved=False)
        # A code the caller chose proves nothing about the number: no conversion.
        number_hash = self.keyring.number_hash(number.e164)
        conversions = [] if record.get("cu") else self.policy.conversion_calls(record, number, number_hash)
        won, record, counted = await self.store.approve(
            partition=partition,
            now_ms=now_ms,
            verification_id=vid,
            attempt=attempts,
            retention_ms=retention_ms,
            audit=audit,
            matched=fields[index],
            replay_ms=int(self.rules.approval_replay * 1000),
            along=conversions,
        )
        if not won:
            # Another right answer won the compare-and-set: its conversion is the one that counts.
            with contextlib.suppress(Unavailable):
                await self.policy.take_back_conversions(conversions, counted, now_ms)
            if record.get("st") == APPROVED:
                raise _already_approved()
            return CheckResult(records.verification(record), approved=False)
        self._emit(Event.APPROVED, vid=vid, **audit)
        return CheckResult(records.verification(record), approved=True, token=self._token(record, caller))

    def _token(self, record: dict[str, str], caller: Caller) -> str:
        """The approval's token: signed at the approval's time, so the same approval always gets
        the same token."""
        approval = tokens.Approval(
            record["id"], self.keyring.number_hash(record["to"]), approved_at=int(record["aa"]) // 1000
        )
        return tokens.issue(approval, self.keyring.secrets, key_id=caller.key_id)

    async def _repeat_approval(self, found: AttemptOutcome, code: str, caller: Caller) -> CheckResult:
        """A check of an approved verification: 409, unless it is the right code again shortly
        after the approval (a client that lost the answer retrying), which gets the same approval
        and token. Never a 200 that says "approved" for any other code."""
        record = found.record
        if not found.replay_hash or record.get("key") != caller.key_id:
            await self.hasher.decoy()
            raise _already_approved()
        if await self.hasher.first_match([found.replay_hash], code) is None:
            raise _already_approved()
        return CheckResult(records.verification(record), approved=True, token=self._token(record, caller))

    async def fetch(self, verification_id: str, caller: Caller) -> Verification:
        partition = self._id_partition(verification_id)
        record = await self.store.fetch(
            partition=partition,
            now_ms=self._now_ms(),
            verification_id=verification_id,
            retention_ms=int(self.rules.retention * 1000),
        )
        if not record or not (caller.admin or record.get("key") == caller.key_id):
            raise NotFound("no such verification (unknown, or past its retention period)", field="id")
        return records.verification(record)

    async def approve(self, verification_id: str, caller: Caller) -> Verification:
        """Approve out of band (Twilio's ``Status=approved``): the caller vouches for the user by other
        means. The same compare-and-set as a right code; no token, since no code was checked."""
        current = await self.fetch(verification_id, caller)
        if current.status != PENDING:
            raise Conflict(f"verification is already {current.status}", code="not_pending", field="id")
        number = parse_e164(current.to)
        now_ms = self._now_ms()
        won, record, _ = await self.store.approve(
            partition=self._id_partition(verification_id),
            now_ms=now_ms,
            verification_id=verification_id,
            attempt=0,
            retention_ms=int(self.rules.retention * 1000),
            audit={**self._audit(caller, number), "out_of_band": "1"},
        )
        # No conversion: nobody showed the code reached the number (the pumping scores count
        # approvals by a code only).
        if not won:
            raise Conflict("verification is no longer pending", code="not_pending", field="id")
        self._emit(Event.APPROVED, vid=verification_id, out_of_band=True, **self._audit(caller, number))
        return records.verification(record)

    async def cancel(self, verification_id: str, caller: Caller) -> Verification:
        partition = self._id_partition(verification_id)
        changed, record = await self.store.cancel(
            partition=partition,
            now_ms=self._now_ms(),
            verification_id=verification_id,
            retention_ms=int(self.rules.retention * 1000),
            owner="" if caller.admin else caller.key_id,
            audit=self._audit(caller),
        )
        if not record:
            raise NotFound("no such verification (unknown, or past its retention period)", field="id")
        verification = records.verification(record)
        if changed:
            self._emit(Event.CANCELED, vid=verification_id, key=caller.key_id)
        if not changed:
            raise Conflict(f"verification is already {verification.status}", code="not_pending", field="id")
        return verification
