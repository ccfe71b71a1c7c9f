"""The request and response models of ``/v1``: the one source of both the validation
(``body.read_model``) and the OpenAPI schemas (``openapi.spec``).

msgspec rather than pydantic: it decodes into Structs in C (faster than the hand-written checks it
replaces, see ``body.read_model``), is one small wheel with no dependencies, and writes JSON
Schema 2020-12, which OpenAPI 3.1 takes as it is. Constraints a handler words itself (a language
tag, a code, the one channel) are in the schema too, so the document says what is refused; the
handler's message is the one a client sees.

Responses built here (``render``) can't drift from their schema: a field renamed or dropped is a
TypeError where the Struct is made. The stats and audit pages are figures the core shapes; their
Structs describe those shapes for the document.
"""

from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from otp import audit_fields, delivery, errors
from otp.core import messages, report_windows, validators
from otp.model import APPROVED, CANCELED, EXPIRED, MAX_ATTEMPTS, PENDING
from otp.storage import keys as keyspace

if TYPE_CHECKING:
    from starlette.responses import Response

# The id format's home is the keys module (ids pick the partition); here unanchored, for URL
# convertors and schemas.
VERIFICATION_ID: Final = keyspace.VERIFICATION_ID.pattern.removeprefix("^").removesuffix("$")


def _whole(pattern: str) -> str:
    # JSON Schema patterns are unanchored; the server matches whole values.
    return f"^(?:{pattern})$"


def _enum(*values: str, description: str | None = None, default: str | None = None) -> msgspec.Meta:
    # Documented, not enforced by msgspec: the handler refuses other values with its own message.
    extra: dict[str, Any] = {"enum": list(values)} | ({} if default is None else {"default": default})
    return msgspec.Meta(extra_json_schema=extra, description=description)


def _about(description: str, **extra: Any) -> msgspec.Meta:
    return msgspec.Meta(description=description, extra_json_schema=extra or None)


DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
VerificationStatus = Annotated[str, _enum(PENDING, APPROVED, CANCELED, EXPIRED, MAX_ATTEMPTS)]
DeliveryStatus = Annotated[str, _enum(*delivery.STATES)]
Channel = Annotated[str, _enum("sms")]
VerificationId = Annotated[str, msgspec.Meta(max_length=64, pattern=_whole(VERIFICATION_ID))]
_PREFIX = validators.NUMBER_PREFIX.pattern.removesuffix("\\Z")
NUMBER_PREFIX = _whole(_PREFIX)


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """A JSON body: unknown fields are refused by name, ``null`` counts as absent."""


class Reply(msgspec.Struct, omit_defaults=True):
    """A JSON answer: fields with a default are left out while they hold it."""


# -- requests --------------------------------------------------------------------------------------

To = Annotated[str, msgspec.Meta(max_length=64, description="E.164, or national format in OTP_DEFAULT_REGION")]
Locale = Annotated[
    str, msgspec.Meta(max_length=16, pattern=_whole(f"(?:{validators.LOCALE.pattern})?"), examples=["en"])
]
Ip = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        description="the end user's IP address, for per-IP limits",
        extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    ),
]
RiskCheck = Annotated[
    str,
    msgspec.Meta(max_length=16),
    _enum(*validators.RISK_CHECKS, description="disable skips the SMS-pumping rules (admin keys only); default enable"),
]
AppHash = Annotated[
    str,
    msgspec.Meta(
        max_length=16,
        pattern=_whole(messages.APP_HASH.pattern),
        description="Android's SMS Retriever app hash, put last in the SMS",
        examples=["FA+9qCX9VSu"],
    ),
]
TemplateName = Annotated[
    str,
    msgspec.Meta(max_length=32),
    _enum(*messages.CATALOGUE, description="which of otp's SMS texts to send", default=messages.VERIFICATION),
]
Substitutions = Annotated[
    dict[str, str],
    msgspec.Meta(max_length=8, description="values of the template's variables (purpose for the purpose template)"),
]
Code = Annotated[str, msgspec.Meta(max_length=32, pattern=_whole(validators.CODE.pattern))]
MaxAge = Annotated[
    int, msgspec.Meta(ge=1, le=86400, description="seconds; default and upper bound OTP_TOKEN_MAX_AGE (larger: a 400)")
]
Consume = Annotated[
    bool, msgspec.Meta(description="mark the token used (atomically): every later verify answers token_used")
]


class StartRequest(Request):
    to: To
    channel: Annotated[str, msgspec.Meta(max_length=16), _enum("sms")] | None = None
    locale: Locale | None = None
    ip: Ip | None = None
    risk_check: RiskCheck | None = None
    app_hash: AppHash | None = None
    template: TemplateName | None = None
    substitutions: Substitutions | None = None


class CheckRequest(Request, kw_only=True):
    id: VerificationId | None = None
    to: Annotated[str, msgspec.Meta(max_length=64, description="give id or to")] | None = None
    code: Code
    # The IP of the user typing the code: recorded on the check's audit events (brute force shows its IPs).
    ip: Ip | None = None


class TokenVerifyRequest(Request):
    token: Annotated[str, msgspec.Meta(max_length=4096)]
    max_age: MaxAge | None = None
    consume: Consume | None = None


class CancelRequest(Request):
    """No fields: the body may be empty or ``{}``."""


WebhookEvent = Annotated[str, msgspec.Meta(max_length=64), _enum(*audit_fields.WEBHOOK_EVENT_TYPES)]


class WebhookRequest(Request):
    url: Annotated[
        str,
        msgspec.Meta(
            max_length=2048,
            description="https (http and private addresses only where OTP_WEBHOOK_ALLOW_PRIVATE=1)",
            examples=["https://example.com/otp-events"],
        ),
    ]
    event_types: Annotated[
        list[WebhookEvent], msgspec.Meta(min_length=1, max_length=len(audit_fields.WEBHOOK_EVENT_TYPES))
    ]


WholeCountry = Annotated[
    bool,
    msgspec.Meta(
        description="true to safe-list a whole country calling code (+44, +1): refused without it, since it "
        "exempts every number of those countries from the fraud rules"
    ),
]


class SafeEntryRequest(Request):
    entry: Annotated[str, msgspec.Meta(max_length=16, pattern=NUMBER_PREFIX, examples=["+1501712"])]
    country: WholeCountry | None = None


class BudgetRequest(Request):
    amount: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[0-9]{1,10}(\.[0-9]{1,6})?$",
            description="the key's daily budget, in the price table's currency",
            examples=["25.00"],
        ),
    ]


# -- answers ---------------------------------------------------------------------------------------


class DeliveryErrorInfo(Reply):
    """What Twilio's error code means, from otp's catalogue (otp.delivery_errors)."""

    code: int
    title: Annotated[str, msgspec.Meta(description="Twilio's title of the error")]
    meaning: str
    retry_helps: Annotated[bool, msgspec.Meta(description="whether trying again (later) can help")]
    action: Annotated[str, msgspec.Meta(description="what the operator should do")]
    more_info: str


class Delivery(Reply):
    status: DeliveryStatus
    updated_at: DateTime | None = None
    error_code: int | str | None = None
    error_message: str | None = None
    error: DeliveryErrorInfo | None = None


class Timeline(Reply):
    """When the send was queued, Twilio accepted it, and Twilio first reported each state
    (milliseconds)."""

    queued: DateTime | None = None
    accepted: DateTime | None = None
    sent: DateTime | None = None
    delivered: DateTime | None = None
    undelivered: DateTime | None = None
    failed: DateTime | None = None
    time_to_delivered_ms: int | None = None


class SendAttempt(Reply):
    at: DateTime | None
    channel: str
    sent_at: DateTime | None
    tries: int
    last_error: str | None
    message_sid: str | None
    segments: int | None
    price: str | None
    price_unit: str | None
    delivery: Delivery
    sender: (
        Annotated[str, msgspec.Meta(description="the operator's sender (From number or MG…) it went out with")] | None
    )
    queued_at_sender: (
        Annotated[
            float,
            msgspec.Meta(
                description="seconds the worker expected the code to wait for its sender's slot (senders are paced "
                "at their MPS); null when it went out at once"
            ),
        ]
        | None
    )
    timeline: Timeline | None = None
    country: str | None = None


class Verification(Reply):
    id: Annotated[str, msgspec.Meta(pattern=_whole(VERIFICATION_ID))]
    status: VerificationStatus
    to: Annotated[str, msgspec.Meta(description="masked", examples=["+1*******2661"])]
    channel: Channel
    locale: str | None
    created_at: DateTime | None
    updated_at: DateTime | None
    expires_at: DateTime | None
    approved_at: DateTime | None
    attempts: int
    attempts_left: int
    max_attempts: int
    send_attempts: list[SendAttempt]


class CheckResult(Reply):
    id: str
    status: VerificationStatus
    approved: bool
    attempts_left: int
    delivery: Delivery | None
    token: Annotated[str, msgspec.Meta(description="signed approval token, only when approved")] | None = None


TokenRefusal = Annotated[
    str,
    _enum(
        *(code for code, found in errors.CODES.items() if found.kind == errors.TOKEN_REASON),
        description="token_invalid also for a token another API key earned (admin keys verify any)",
    ),
]


class TokenResult(Reply):
    valid: bool
    reason: TokenRefusal | None = None
    verification_id: str | None = None
    number_hash: str | None = None
    approved_at: DateTime | None = None


class SafeEntry(Reply):
    entry: str


class KeyWebhook(Reply):
    """The calling key's webhook: posts signed (X-Twilio-Signature) with the key itself."""

    url: str
    event_types: list[str]
    created_at: DateTime
    updated_at: DateTime


class WebhookRemoved(Reply):
    removed: bool


class SafeRemoved(Reply):
    entry: str
    removed: bool


class OptOut(Reply):
    """Whether a number replied STOP (Twilio 21610) and is refused (otp.core.optouts)."""

    to: Annotated[str, msgspec.Meta(description="masked", examples=["+1*******2661"])]
    opted_out: bool
    since: DateTime | None = None
    cleared: bool | None = None


class SafeList(Reply):
    entries: list[str]  # prefixes: each covers every number that starts with it
    numbers: list[str] = []  # whole numbers (from /v2/SafeList/Numbers): each covers itself only


class Unblocked(Reply, kw_only=True):
    country: str | None = None
    prefix: str | None = None
    was_blocked: bool


class BudgetScope(Reply, kw_only=True):
    scope: Annotated[str, msgspec.Meta(examples=["country:GB"])]
    spent: str
    budget: str | None
    left: str | None
    currency: str


class BudgetStatus(Reply, kw_only=True):
    """Today's spend per budget scope, in the budgets' time zone."""

    day: str
    timezone: str
    resets_at: str
    scopes: list[BudgetScope]


class Conversion(Reply, kw_only=True):
    country: str | None = None
    prefix: str | None = None
    since_hours: int
    sends: int
    approvals: int
    rate: float | None


class AuditPage(Reply):
    events: list[dict[str, Any]]
    next_cursor: str | None
    summary: dict[str, Any]


# The codes of /v1's error answers (otp.errors.CODES, its /v2-only ones and token reasons aside).
V1_CODES: Final = tuple(code for code, found in errors.CODES.items() if found.kind == errors.ERROR)


class ErrorDetail(Reply):
    # Its description, the table of codes, is the document's (otp.web.openapi_errors).
    code: Annotated[str, _enum(*V1_CODES)]
    message: str
    field: str | None = None
    retry_after: int | None = None
    rule: Annotated[str, msgspec.Meta(description="the policy rule that refused the request")] | None = None
    scope: (
        Annotated[str, msgspec.Meta(description="the spent budget (budget_exhausted): global, country:XX or key:ID")]
        | None
    ) = None
    resets_at: Annotated[str, msgspec.Meta(description="when that budget's day ends (ISO 8601, UTC)")] | None = None


class Error(Reply):
    error: ErrorDetail


class Health(Reply):
    status: Annotated[str, msgspec.Meta(description="ok, or unavailable (with a 503)")]
    checks: Annotated[
        dict[str, str],
        msgspec.Meta(description="each check's name → ok or what is wrong; {} when /healthz has none to run"),
    ]


# -- GET /v1/stats/overview: the figures otp/core/stats.py shapes (``Overview.as_dict``) ---------------

Rate = Annotated[float, msgspec.Meta(description="approved ÷ started; null when nothing started")] | None
_TOTALS: list[tuple[str, Any]] = [
    (str(name), int) for name in (*audit_fields.VERIFICATION_EVENTS, "refused", "flagged")
]
_TOTALS.append(("conversion_rate", Rate))
_FUNNEL = [(state, int) for state in delivery.FUNNEL]


def _rows(name: str, *columns: str) -> Any:
    row = msgspec.defstruct(name, [(c, int if c == "count" else str) for c in columns], bases=(Reply,))
    return list[row]  # type: ignore[valid-type]


Window = Annotated[str, _enum(*report_windows.WINDOWS)]
Totals = msgspec.defstruct("Totals", _TOTALS, bases=(Reply,))


class DeliveryErrorRow(Reply):
    status: str
    error_code: str
    count: int
    title: str = ""  # the catalogue's words (otp.delivery_errors); "" when there is no code
    meaning: str = ""
    retry_helps: bool = False
    action: str = ""


Seconds = Annotated[float, msgspec.Meta(description="seconds from queueing to delivered")] | None
_DELIVERY_BY = [
    *((state, int) for state in delivery.COUNTED),
    ("delivery_rate", Annotated[float, msgspec.Meta(description="delivered ÷ final reports")] | None),
    ("p50_seconds", Seconds),
    ("p95_seconds", Seconds),
]
DeliveryFigures = msgspec.defstruct(
    "DeliveryFigures",
    [
        ("funnel", msgspec.defstruct("Funnel", _FUNNEL, bases=(Reply,))),
        ("other_states", dict[str, int]),
        ("errors", list[DeliveryErrorRow]),
        ("by_country", list[msgspec.defstruct("CountryDelivery", [("country", str), *_DELIVERY_BY], bases=(Reply,))]),  # type: ignore[misc]
        ("by_sender", list[msgspec.defstruct("SenderDelivery", [("sender", str), *_DELIVERY_BY], bases=(Reply,))]),  # type: ignore[misc]
    ],
    bases=(Reply,),
)


class Alert(Reply):
    alert: Annotated[str, _enum("unregistered_10dlc")]
    error_code: int
    count: int
    message: str


_BUCKET_MINUTES = Annotated[int, msgspec.Meta(description="1 or 5 in the 1h and 6h windows (minute counters)")]
Bucket = msgspec.defstruct(
    "Bucket",
    [
        ("start", DateTime),
        ("hours", Annotated[int, msgspec.Meta(description="whole hours; 0 for a bucket of minutes")]),
        ("minutes", _BUCKET_MINUTES),
        ("in_window", bool),
        *_FUNNEL,
        *_TOTALS,
    ],
    bases=(Reply,),
)
Series = msgspec.defstruct(
    "Series",
    [
        ("bucket_hours", Annotated[int, msgspec.Meta(description="0 in the 1h and 6h windows")]),
        ("bucket_minutes", _BUCKET_MINUTES),
        ("buckets", list[Bucket]),  # type: ignore[valid-type]
    ],
    bases=(Reply,),
)
Overview = msgspec.defstruct(
    "Overview",
    [
        ("since", Window),
        ("window_hours", int),
        (
            "from",
            Annotated[DateTime, msgspec.Meta(description="start of the window's first minute (1h, 6h) or hour")],
        ),
        ("until", DateTime),
        ("totals", Totals),
        ("delivery", DeliveryFigures),
        ("refusals", _rows("RefusalRow", "rule", "reason", "count")),
        ("flagged", _rows("FlaggedRow", "scope", "reason", "count")),
        ("alerts", list[Alert]),
        ("series", Series),
    ],
    bases=(Reply,),
)


# -- query strings: documented from these; each handler parses its own (the words are its) -----------


class OptOutQuery(Request):
    messaging_service_sid: (
        Annotated[
            str,
            msgspec.Meta(
                pattern="^(?:MG[0-9a-fA-F]{32})?$",
                description="the Messaging Service of a /v2 MessagingConfiguration the STOP was sent to; "
                "none (or empty) for the operator's own sender",
            ),
        ]
        | None
    ) = None


class OverviewQuery(Request):
    window: (
        Annotated[
            str,
            _enum(
                *report_windows.WINDOWS,
                default=report_windows.DEFAULT_WINDOW,
                description="1h and 6h: the last 60 or 360 minutes; 24h and 7d: whole clock hours",
            ),
        ]
        | None
    ) = None
    since: Annotated[str, _enum(*report_windows.WINDOWS, description="the older name of window")] | None = None


# Empty is as absent (the handler reads ``?prefix=`` as no prefix), so the schema takes it too.
Country = Annotated[
    str,
    msgspec.Meta(pattern=_whole(f"(?:{validators.COUNTRY.pattern})?"), description="ISO country code", examples=["US"]),
]
Prefix = Annotated[
    str,
    msgspec.Meta(pattern=_whole(f"(?:{_PREFIX})?"), examples=["+1415555"]),
]


class ScopeQuery(Request):
    country: Annotated[Country, _about("give exactly one of country and prefix")] | None = None
    prefix: Prefix | None = None


class ConversionQuery(ScopeQuery):
    since: Annotated[str, msgspec.Meta(pattern=r"^\d{1,3}(h|d)$", extra_json_schema={"default": "24h"})] | None = None


class AuditQuery(Request):
    """The ``otp audit`` filters (``audit.FILTER_PARAMS``) and the page."""

    since: (
        Annotated[
            str,
            _about(
                "a duration back from now (30m, 1h, 2d) or an ISO-8601 time; default: the 24 h before until, or now"
            ),
        ]
        | None
    ) = None
    until: Annotated[str, _about("a duration back from now or an ISO-8601 time")] | None = None
    reason: Annotated[str, _about("refusal reason, e.g. resend_too_soon")] | None = None
    rule: Annotated[str, _about("rule that decided, e.g. sms_pumping_prefix")] | None = None
    country: Annotated[str, _about("ISO country of the number")] | None = None
    number: Annotated[str, _about("a phone number; matched through its keyed hash")] | None = None
    ip: Annotated[str, _about("end-user IP")] | None = None
    key: Annotated[str, _about("API key id")] | None = None
    prefix: (
        Annotated[
            str,
            _about(
                "destination prefix (the number without its last 4 digits, as the dashboard lists it), "
                "e.g. +1415555; matched through its keyed hash"
            ),
        ]
        | None
    ) = None
    service: Annotated[str, _about("/v2 service sid (VA…); give key or service")] | None = None
    decision: Annotated[str, _about("allowed or refused")] | None = None
    event: Annotated[str, _about(", ".join(audit_fields.EVENTS))] | None = None
    cursor: Annotated[str, _about("next_cursor of the previous page")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


def render(reply: Reply, status_code: int = 200, headers: dict[str, str] | None = None) -> "Response":
    """``reply`` as JSON, encoded by msgspec (compact, UTF-8, like Starlette's JSONResponse)."""
    # Imported here: otp.client decodes with these models and must not load the web framework.
    from starlette.responses import Response

    return Response(msgspec.json.encode(reply), status_code, headers, media_type="application/json")
