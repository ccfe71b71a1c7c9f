"""The Verifier: start, check, fetch and cancel a verification.  The HTTP adapters stay thin over it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from otp import codes, keyspace, sealing, tokens
from otp.codes import CodeHasher
from otp.errors import Conflict, InvalidInput, NotFound, RateLimited
from otp.keyring import Keyring
from otp.phone import Phone, mask
from otp.store import Store

Clock = Callable[[], float]

PENDING = "pending"
APPROVED = "approved"
CANCELED = "canceled"
EXPIRED = "expired"
MAX_ATTEMPTS = "max_attempts_reached"
STATUSES = (PENDING, APPROVED, CANCELED, EXPIRED, MAX_ATTEMPTS)


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key's id, and whether it may see every tenant's verifications."""

    key_id: str
    admin: bool = False
    ip: str = ""


@dataclass(frozen=True)
class Rules:
    code_length: int = 6
    code_ttl: float = 600.0
    max_check_attempts: int = 5
    max_sends: int = 5
    codes_kept: int = 3
    retention: float = 86400.0
    token_max_age: float = 300.0


@dataclass(frozen=True)
class SendAttempt:
    number: int
    at: float
    channel: str
    delivery: dict[str, Any]
    message_sid: str | None = None
    segments: int | None = None
    price: str | None = None
    price_unit: str | None = None
    sent_at: float | None = None
    tries: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Verification:
    id: str
    to: str  # E.164: adapters mask it
    channel: str
    locale: str
    status: str
    created_at: float
    updated_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    sends: int
    key_id: str
    approved_at: float | None = None
    send_attempts: list[SendAttempt] = field(default_factory=list)

    @property
    def attempts_left(self) -> int:
        if self.status != PENDING:
            return 0
        return max(0, self.max_attempts - self.attempts)

    @property
    def latest_delivery(self) -> dict[str, Any] | None:
        return self.send_attempts[-1].delivery if self.send_attempts else None

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Verification:
        attempts = []
        for name, raw in record.items():
            if name.startswith("sa:"):
                data = json.loads(raw)
                attempts.append(
                    SendAttempt(
                        number=int(name[3:]),
                        at=data["at"] / 1000,
                        channel=data.get("channel", "sms"),
                        delivery=data.get("delivery", {}),
                        message_sid=data.get("message_sid"),
                        segments=data.get("segments"),
                        price=data.get("price"),
                        price_unit=data.get("price_unit"),
                        sent_at=data["sent_at"] / 1000 if data.get("sent_at") else None,
                        tries=int(data.get("tries", 0)),
                        last_error=data.get("last_error"),
                    )
                )
        attempts.sort(key=lambda a: a.number)
        return cls(
            id=record["id"],
            to=record["to"],
            channel=record.get("ch", "sms"),
            locale=record.get("loc", ""),
            status=record["st"],
            created_at=int(record["c"]) / 1000,
            updated_at=int(record["u"]) / 1000,
            expires_at=int(record["x"]) / 1000,
            attempts=int(record["a"]),
            max_attempts=int(record["ma"]),
            sends=int(record["s"]),
            key_id=record.get("key", ""),
            approved_at=int(record["aa"]) / 1000 if "aa" in record else None,
            send_attempts=attempts,
        )


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


class Verifier:
    def __init__(
        self,
        store: Store,
        hasher: CodeHasher,
        keyring: Keyring,
        rules: Rules,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.keyring = keyring
        self.rules = rules
        self.clock = clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _partition(self, e164: str) -> int:
        return keyspace.partition_of_number(e164, self.store.partitions)

    def _id_partition(self, verification_id: str) -> int:
        if not keyspace.VERIFICATION_ID.match(verification_id):
            raise InvalidInput("must be a verification id: VE followed by 32 hex digits", field="id")
        return keyspace.partition_of_id(verification_id, self.store.partitions)

    def _audit(self, caller: Caller, phone_e164: str = "") -> dict[str, str]:
        context = {"key": caller.key_id}
        if phone_e164:
            context["to"] = mask(phone_e164)
            context["nh"] = self.keyring.number_hash(phone_e164)
        if caller.ip:
            context["ip"] = caller.ip
        return context

    async def start(self, phone: Phone, caller: Caller, *, channel: str = "sms", locale: str = "") -> StartResult:
        partition = self._partition(phone.e164)
        code = codes.generate(self.rules.code_length)
        code_hash = await self.hasher.hash(code)
        mode, record = await self.store.start(
            partition=partition,
            now_ms=self._now_ms(),
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
            audit=self._audit(caller, phone.e164),
        )
        verification = Verification.from_record(record)
        if mode == "max_sends":
            raise RateLimited(
                f"this verification has had its {self.rules.max_sends} sends; wait for it to expire",
                code="max_sends_reached",
                field="to",
                retry_after=max(1, int(verification.expires_at - self.clock())),
            )
        return StartResult(verification, resent=mode == "resent")

    async def check(
        self, code: str, caller: Caller, *, verification_id: str = "", phone: Phone | None = None
    ) -> CheckResult:
        if verification_id:
            partition = self._id_partition(verification_id)
        elif phone is not None:
            partition = self._partition(phone.e164)
        else:
            raise InvalidInput("give the verification id or the number", field="id")
        to = phone.e164 if phone is not None else ""
        retention_ms = int(self.rules.retention * 1000)
        outcome, vid, attempts, max_attempts, hashes, record = await self.store.count_attempt(
            partition=partition,
            now_ms=self._now_ms(),
            verification_id=verification_id,
            to=to,
            retention_ms=retention_ms,
            caller=caller.key_id,
            admin=caller.admin,
            audit=self._audit(caller, to),
        )
        if outcome == "not_found":
            raise NotFound("no pending verification for this id or number", field="id" if verification_id else "to")
        if outcome != "counted":
            # A last attempt may still be in flight: the stored status says pending, the answer doesn't.
            return CheckResult(replace(Verification.from_record(record), status=outcome), approved=False)
        # Newest code first: it is the one the user most likely typed.
        stored = [hashes[k] for k in sorted(hashes, key=lambda k: -int(k.split(":")[1]))]
        matched = await self.hasher.first_match(stored, code)
        now_ms = self._now_ms()
        audit = self._audit(caller, record.get("to", ""))
        if matched:
            won, record = await self.store.approve(
                partition=partition,
                now_ms=now_ms,
                verification_id=vid,
                retention_ms=retention_ms,
                audit=audit,
            )
            verification = Verification.from_record(record)
            token = None
            if won:
                token = tokens.issue(
                    tokens.Approval(
                        verification_id=vid,
                        number_hash=self.keyring.number_hash(verification.to),
                        approved_at=int(now_ms / 1000),
                    ),
                    self.keyring.secrets,
                )
            return CheckResult(verification, approved=won, token=token)
        if attempts >= max_attempts:
            record = await self.store.exhaust(
                partition=partition,
                now_ms=now_ms,
                verification_id=vid,
                retention_ms=retention_ms,
                audit=audit,
            )
        return CheckResult(Verification.from_record(record), approved=False)

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
        return Verification.from_record(record)

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
        verification = Verification.from_record(record)
        if not changed:
            raise Conflict(f"verification is already {verification.status}", code="not_pending", field="id")
        return verification
