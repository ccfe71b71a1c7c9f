"""The Verifier: start, check, fetch and cancel a verification.  The HTTP adapters stay thin over it."""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import replace
from typing import Any, NoReturn

from otp.audit_fields import COUNTER_ONLY_PREFIX, PREFIX_HASH, Event
from otp.clock import SYSTEM, Clock
from otp.core import budget, codes, events, messages, metrics, optouts, refusals, sealing, tokens, webhooks
from otp.core.budget import Budgets
from otp.core.codes import CodeHasher
from otp.core.ipaddr import ip_scope
from otp.core.keyring import Keyring
from otp.core.line_types import FALLBACK, LineType, LineTypes
from otp.core.phone import Phone, mask_in_record, parse_e164
from otp.core.policy import BUDGET_RULE, Admission, Along, BucketLimit, Decision, Policy, decisions_json
from otp.core.verification_io import Caller as Caller
from otp.core.verification_io import CheckResult as CheckResult
from otp.core.verification_io import Rules as Rules
from otp.core.verification_io import StartOptions as StartOptions
from otp.core.verification_io import StartResult as StartResult
from otp.errors import Conflict, InvalidInput, NotFound, Unavailable

# Re-exported (X as X): the adapters name the records through the verifier.
from otp.model import APPROVED as APPROVED
from otp.model import CANCELED as CANCELED
from otp.model import EXPIRED as EXPIRED
from otp.model import MAX_ATTEMPTS as MAX_ATTEMPTS
from otp.model import PENDING as PENDING
from otp.model import ApproveArgs, AttemptOutcome, CheckArgs, NumberGateArgs, NumberLimits, StartArgs, StartOutcome
from otp.model import SendAttempt as SendAttempt
from otp.model import Verification as Verification
from otp.storage import keys as keyspace
from otp.storage import records
from otp.storage.store import Store

MIN_CHECKS_PER_PARTITION = 20


def _compact(mapping: dict[str, str]) -> str:
    """A small mapping as the compact JSON the record and the job keep ("" for none)."""
    return json.dumps(mapping, separators=(",", ":"), ensure_ascii=False) if mapping else ""


def pumping_ip(caller: Caller) -> str:
    """The pumping scope of the caller's end-user IP, kept on the record for its approval."""
    return f"{caller.fraud_tenant}:{ip_scope(caller.ip)}" if caller.ip else ""


def code_context(key_id: str, e164: str) -> str:
    """What a verification's code hashes are salted with (the owner key and the number): a start
    hashes with it, a check compares with it, and the hash in Redis needn't hold the salt."""
    return f"{key_id}|{e164}"


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
        line_types: LineTypes | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.policy = policy
        self.budgets = budgets
        self.line_types = line_types  # None: OTP_LOOKUP=off
        self.store = store
        self.hasher = hasher
        self.keyring = keyring
        self.rules = rules
        self.clock = clock
        self.tokens = tokens.Tokens(keyring.secrets, issuer=rules.token_issuer, lifetime=rules.token_max_age)

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
            context[PREFIX_HASH] = self.keyring.prefix_hash(phone.prefix)
        if caller.ip:
            context["ip"] = caller.ip
        return context

    async def start(self, phone: Phone, caller: Caller, options: StartOptions | None = None) -> StartResult:
        opts = options or StartOptions()
        partition = self._partition(phone.e164)
        now_ms = self._now_ms()
        audit = self._audit(caller, phone)
        safe = await self.policy.safe_list.covers(phone.e164)  # cached: no round trip as a rule
        custom_code = opts.code is not None
        code = opts.code or codes.generate(opts.code_length or self.rules.code_length)
        estimate = self._estimate(phone, code, opts)
        if estimate:
            # Counter-only (lib.lua's audit()): what the send costs, or what its refusal saved.
            audit.update(_est=str(estimate), _bt=caller.fraud_tenant)
        # Whether the number replied STOP: read before the admission, not in its round trip, so a
        # start refused for it never holds a place in a limit or a budget that a concurrent start
        # reads (DESIGN §2). It says more than a number type or country refusal: asked first.
        opt_out = optouts.opted_out_read(self.store, self.keyring, phone.e164, opts.messaging_service_sid)
        limits = self.policy.config
        number_limits = NumberLimits(
            safe=safe,
            sends_per_hour=limits.number_sends_per_hour,
            sends_per_day=limits.number_sends_per_day,
            cooldown_ms=int(limits.resend_cooldown * 1000),
            shared_hold_ms=refusals.SHARED_LIMIT_RETRY * 1000,
        )
        retention_ms = int(self.rules.retention * 1000)
        # The number's own limits are asked in the same round trip, for the same reason: a start
        # they refuse for the key's own sends (its number at its hourly cap) must not hold a budget
        # or limit place meanwhile. Refusals other keys' sends are behind still come from start.lua.
        gate = NumberGateArgs(caller.key_id, number_limits, retention_ms)
        opted, capped = await self.store.before_admission(opt_out, partition, now_ms, phone.e164, gate, audit)
        if optouts.opted_out_of(opted):
            await self._refuse_opted_out(partition, now_ms, audit)
        permission = self.policy.permission(phone)
        if not permission.allowed and not safe:
            await self._audit_refusal(partition, now_ms, audit, permission)
            raise refusals.not_permitted(permission)
        if capped:
            refused = await self.store.refuse_by_number(partition, now_ms, phone.e164, gate, audit)
            if refused is not None:
                self._raise_number_refusal(refused, audit)
        day, reservations = (
            self.budgets.reserve_calls(phone.country, caller.fraud_tenant, estimate, now_ms)
            if self.budgets is not None
            else (None, [])
        )
        admission = await self.policy.admit_send(
            phone,
            caller=caller,
            risk_check=opts.risk_check and not safe,
            now_ms=now_ms,
            number_hash=self.keyring.number_hash(phone.e164),
            custom=self._custom_limits(opts, caller),
            buckets=self._bucket_limits(opts),
            # Whether the owner has webhooks now (the record is marked, and its events are queued
            # by the scripts that commit them: otp.core.webhooks): no wait of its own.
            along=Along(reservations, (webhooks.subscribed_read(caller.key_id),)),
        )
        subscribed = bool(admission.read[0])
        # Best effort, like the commit: budget.lua has marked the level already, and a failure here
        # must not leave the reservations behind (the day's budget would refuse real users early).
        with contextlib.suppress(Unavailable):
            await self._budget_levels(admission, partition, now_ms, caller)
        if not admission.decision.allowed:
            await self.policy.release(admission)
            await self._audit_refusal(partition, now_ms, audit, admission.decision)
            raise self._refusal(admission.decision)
        # After the rate limits and pumping rules, so they bound what Lookup costs too.
        line = LineType(phone.number_type)
        if self.line_types is not None and not safe:
            line = await self._line_type(self.line_types, phone, (partition, now_ms), audit, admission, caller)
        if admission.flagged:
            # record_only mode: the send goes out, and the audit says which rule would have refused it.
            audit["flagged"] = ",".join(
                f"{scope}:{admission.decision.details[scope]['flagged']}" for scope in admission.flagged
            )
        try:
            # One salt for the key's codes to this number: a check runs argon2 once for all live codes.
            code_hash = await self.hasher.hash(code, code_context(caller.key_id, phone.e164))
            start = StartArgs(
                new_id=keyspace.new_verification_id(partition, self.store.partitions),
                to=phone.e164,
                channel=opts.channel,
                locale=opts.locale,
                key_id=caller.key_id,
                ttl_ms=int(self.rules.code_ttl * 1000),
                max_attempts=self.rules.max_check_attempts,
                max_sends=self.rules.max_sends,
                codes_kept=self.rules.codes_kept,
                retention_ms=retention_ms,
                code_hash=code_hash,
                sealed_code=sealing.seal(self.keyring, code),
                number_limits=number_limits,
                decisions=decisions_json(admission),
                app_name=opts.app_name,
                app_hash=opts.app_hash,
                tags=_compact(opts.tags),
                template="" if opts.template == messages.VERIFICATION else opts.template,
                substitutions=_compact(opts.substitutions),
                messaging_service_sid=opts.messaging_service_sid,
                custom_code=custom_code,
                unproven=admission.unproven,
                ip_scope=pumping_ip(caller),
                fraud_tenant="" if caller.fraud_tenant == caller.key_id else caller.fraud_tenant,
                events=subscribed,
                budget=Budgets.note(estimate, day, phone.country, reservations) if day is not None else "",
                line_type=line.record(),
            )
            outcome = await self.store.start(partition, now_ms, start, audit)
        except Exception:
            # The other scopes may sit on healthy nodes: don't let a retry be counted twice there.
            with contextlib.suppress(Exception):
                await self.policy.release(admission)
            raise
        if outcome.mode == "refused":
            await self.policy.release(admission)
            self._raise_number_refusal(outcome, audit)
        self._emit(Event.RESENT if outcome.mode == "resent" else Event.STARTED, vid=outcome.record.get("id"), **audit)
        # Every send counts in the pumping windows, resends too; an approval converts them all.
        # Best effort: the SMS is queued, so a failure here must not tell the client to retry.
        with contextlib.suppress(Unavailable):
            await self.policy.commit(admission, now_ms, resent=outcome.mode == "resent")
        return StartResult(
            records.verification(outcome.record), resent=outcome.mode == "resent", flagged=admission.flagged
        )

    def _raise_number_refusal(self, outcome: StartOutcome, audit: dict[str, str]) -> NoReturn:
        self._emit(Event.REFUSED, rule=outcome.rule, reason=outcome.reason, **audit)
        if outcome.foreign:
            raise refusals.shared_number_limit(outcome.retry_ms)
        raise refusals.rate_limited(
            Decision(False, outcome.rule, outcome.reason, refusals.retry_seconds(outcome.retry_ms))
        )

    async def _refuse_opted_out(self, partition: int, now_ms: int, audit: dict[str, str]) -> NoReturn:
        # The safe list doesn't waive it: it is the user's word, not a fraud rule. Its estimate
        # counts as spend blocked, as every refusal's does.
        await self._audit_refusal(partition, now_ms, audit, Decision(False, optouts.RULE, optouts.REASON))
        raise optouts.refusal()

    def _estimate(self, phone: Phone, code: str, opts: StartOptions) -> int:
        """The send's cost by the price table (millionths): its SMS rendered as the worker will."""
        if self.budgets is None:
            return 0
        config = self.budgets.config
        body = messages.render(
            code,
            locale=opts.locale,
            country=phone.country,
            app_name=opts.app_name or config.app_name,
            webotp_domain=config.webotp_domain,
            app_hash=opts.app_hash,
            template=opts.template or messages.VERIFICATION,
            substitutions=opts.substitutions,
        )
        return self.budgets.estimate(phone, body)

    def _refusal(self, decision: Decision) -> Exception:
        if decision.rule != BUDGET_RULE or self.budgets is None:
            return refusals.rate_limited(decision)
        scope = str(decision.details[BUDGET_RULE])
        metrics.BUDGET_REFUSED.labels(scope).inc()
        resets_ms = self._now_ms() + (decision.retry_after or 0) * 1000
        return budget.exhausted(scope, decision.retry_after, resets_ms, self.budgets.config.timezone)

    async def _budget_levels(self, admission: Admission, partition: int, now_ms: int, caller: Caller) -> None:
        """Today's spend per scope as a metric, and an audit event for each level first reached."""
        for name, figures in admission.decision.details.items():
            if budget.is_label(name) and isinstance(figures, dict):
                metrics.BUDGET_SPENT.labels(name).set(figures["spent"] / budget.MICRO)
        for scope, level, spent, limit in admission.budget_levels:
            fields = {"scope": scope, "level": level, "spent": budget.from_micro(spent)}
            fields["budget"] = budget.from_micro(limit)
            self._emit(Event.BUDGET, key=caller.key_id, **fields)
            await self.store.audit_event(partition, now_ms, {"event": Event.BUDGET, "key": caller.key_id, **fields})

    async def _line_type(
        self,
        line_types: LineTypes,
        phone: Phone,
        when: tuple[int, int],
        audit: dict[str, str],
        admission: Admission,
        caller: Caller,
    ) -> LineType:
        """The number's line type by Twilio Lookup where it's wanted (otp.core.line_types), judged
        by the same number-type rule; a refusal here takes the admission back, but for the rate
        limits when a Lookup was paid for (else starts to fresh landlines buy Lookups unbounded)."""
        partition, now_ms = when
        try:
            line = await line_types.resolve(phone)
        except BaseException:
            # Cancelled (the client left) or a storage failure: the start didn't happen.
            with contextlib.suppress(Exception):
                await self.policy.release(admission)
            raise
        if line.price is not None and self.budgets is not None:
            # A paid Lookup is spend, whatever the start's fate: the day's budgets count it.
            with contextlib.suppress(Unavailable):
                charges = self.budgets.charge_calls(phone.country, caller.fraud_tenant, line.price, now_ms)
                await self.store.run_many(charges, now_ms)
        refusal: Decision | None = None
        if line.source == FALLBACK and line_types.config.fail_closed:
            refusal = refusals.LOOKUP_REFUSAL
        elif line.number_type != phone.number_type:
            permission = self.policy.permission(replace(phone, number_type=line.number_type))
            refusal = None if permission.allowed else permission
        audit.update(line.audit(refused=refusal is not None))
        if refusal is None:
            return line
        await self.policy.release(admission, keep_limits=line.price is not None)
        await self._audit_refusal(partition, now_ms, audit, refusal)
        if refusal is refusals.LOOKUP_REFUSAL:
            raise refusals.lookup_unavailable()
        raise refusals.not_permitted(refusal)

    def _custom_limits(self, opts: StartOptions, caller: Caller) -> dict[str, str]:
        """The RateLimits values with no service Rate Limit of their name (each gets the hourly
        cap), keyed-hashed like a bucket's: a value is often the end user's phone number (Twilio's
        own example), and it names a Redis key."""
        return {
            name: self.keyring.value_hash("rate-limit-value", f"{caller.key_id}:{name}:{value}")
            for name, value in opts.custom_limits.items()
            if name not in opts.rate_limits
        }

    def _bucket_limits(self, opts: StartOptions) -> list[BucketLimit]:
        """The buckets each RateLimits value counts in, when the service defines its name (a rate
        limit with no bucket limits nothing, as at Twilio). The value is keyed-hashed: it may be a
        phone number or a user id, and it names a Redis key."""
        found = []
        for name, value in sorted(opts.custom_limits.items()):
            limit = opts.rate_limits.get(name)
            if limit is None or not limit.buckets:
                continue
            value_hash = self.keyring.value_hash("rate-limit-value", f"{limit.sid}:{value}")
            windows = tuple((b.max, b.interval * 1000) for b in limit.buckets)
            found.append(BucketLimit(name, f"{limit.sid}:{value_hash}", windows))
        return found

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

    async def _count_check(
        self, caller: Caller, verification_id: str, phone: Phone | None
    ) -> tuple[int, AttemptOutcome]:
        """Count the attempt before any comparison; refuse what the per-key and per-number
        limits refuse. Returns the partition and what the count found."""
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
        vid, outcome = found.verification_id, found.outcome
        if outcome == "throttled":
            self._emit(Event.REFUSED, rule="key_checks", reason="too_many_checks", **self._audit(caller, phone))
            raise refusals.too_many_checks(found.retry_ms)
        if outcome == "refused":
            self._emit(
                Event.REFUSED,
                rule="number_failed_checks",
                reason="too_many_failed_checks",
                vid=vid,
                **self._audit(caller, phone),
            )
            raise refusals.too_many_failed_checks(found.retry_ms)
        return partition, found

    async def check(
        self, code: str, caller: Caller, *, verification_id: str = "", phone: Phone | None = None
    ) -> CheckResult:
        partition, found = await self._count_check(caller, verification_id, phone)
        retention_ms = int(self.rules.retention * 1000)
        vid, record, outcome = found.verification_id, found.record, found.outcome
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
        context = code_context(record.get("key", ""), record["to"])
        index = await self.hasher.first_match([found.hashes[k] for k in fields], code, context)
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
        approval = ApproveArgs(vid, attempts, retention_ms, fields[index], int(self.rules.approval_replay * 1000))
        won, record, counted = await self.store.approve(partition, now_ms, approval, audit, along=conversions)
        if not won:
            # Another right answer won the compare-and-set: its conversion is the one that counts.
            with contextlib.suppress(Unavailable):
                await self.policy.take_back_conversions(conversions, counted, now_ms)
            if record.get("st") == APPROVED:
                raise refusals.already_approved()
            return CheckResult(records.verification(record), approved=False)
        self._emit(Event.APPROVED, vid=vid, **audit)
        return CheckResult(records.verification(record), approved=True, token=self._token(record, caller))

    def _token(self, record: dict[str, str], caller: Caller) -> str:
        """The approval's token: signed at the approval's time, so the same approval always gets
        the same token."""
        approval = tokens.Approval(
            record["id"], self.keyring.number_hash(record["to"]), approved_at=int(record["aa"]) // 1000
        )
        return self.tokens.issue(approval, key_id=caller.key_id)

    async def _repeat_approval(self, found: AttemptOutcome, code: str, caller: Caller) -> CheckResult:
        """A check of an approved verification: 409, unless it is the right code again shortly
        after the approval (a client that lost the answer retrying), which gets the same approval
        and token. Never a 200 that says "approved" for any other code."""
        record = found.record
        if not found.replay_hash or record.get("key") != caller.key_id:
            await self.hasher.decoy()
            raise refusals.already_approved()
        if await self.hasher.first_match([found.replay_hash], code, code_context(caller.key_id, record["to"])) is None:
            raise refusals.already_approved()
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
            self._id_partition(verification_id),
            now_ms,
            ApproveArgs(verification_id, attempt=0, retention_ms=int(self.rules.retention * 1000)),
            {**self._audit(caller, number), "out_of_band": "1"},
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
