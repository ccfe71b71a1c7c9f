"""A second step before the dashboard changes who may do what: Unblock and Add to safe list first
answer with a page that says what the action exempts, whose form (CSRF token and all) posts the
same fields again with ``confirm=yes``; only that second POST reaches the action. No script: two
plain forms. Input the action would refuse goes straight to it (its own 400 page)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from otp.core import validators
from otp.core.stats import OLD_WINDOW_PARAM, WINDOW_PARAM
from otp.dashboard.guard import Action, Admin
from otp.dashboard.markup import Html, esc, hidden, join, layout, page, tag, url
from otp.errors import InvalidInput
from otp.web.admin import SAFE_ENTRY

CONFIRM, YES = "confirm", "yes"
# (title, what the action does and what it exempts, the button), or None: not an input to confirm.
Description = tuple[str, list[str], str]
Describe = Callable[[dict[str, str]], Description | None]

# What the safe list waives and what it leaves in force (otp.core.verification.Verifier.start).
SAFE_LIST_WAIVES = [
    "the SMS-pumping rules (prefix, range, country, IP and the tenant's budgets for unproven destinations), "
    "and any pumping block in force on it",
    "the country allowlist and the number-type rules (OTP_ALLOWED_COUNTRIES, OTP_BLOCKED_NUMBER_TYPES)",
    "Twilio Lookup's line-type check",
    "the number's own send limits: per hour, per day and the resend cooldown",
]
SAFE_LIST_KEEPS = (
    "Still applied: the per-IP and per-API-key rate limits, spend budgets, each verification's caps (sends and "
    "check attempts) and opt-outs (STOP)."
)


def describe_unblock(form: dict[str, str]) -> Description | None:
    kind, value = form.get("kind", ""), form.get("value", "").strip()
    if kind == "prefix" and SAFE_ENTRY.match(value):
        scope = f"the prefix {value}"
    elif kind == "country" and validators.COUNTRY.fullmatch(value):
        value = value.upper()
        scope = f"the country {value}"
    else:
        return None
    return (
        f"Unblock {value}?",
        [
            f"This lifts the SMS-pumping block on {scope} now, for every API key and /v2 account blocked there, "
            "and resets its level, so a next block starts again at the shortest duration.",
            "It exempts nothing: the pumping rules keep counting, and if unverified starts go on it is blocked again. "
            "To let a range through the fraud rules, add it to the safe list instead.",
        ],
        f"Unblock {value}",
    )


def describe_safe_list(form: dict[str, str]) -> Description | None:
    entry = form.get("entry", "").strip()
    if not SAFE_ENTRY.match(entry) or len(entry) > 16:
        return None
    try:
        validators.safe_entry(entry, "entry")  # a whole country code: the action says why not
    except InvalidInput:
        return None
    return (
        f"Add {entry} to the safe list?",
        [
            f"Every number that starts with {entry} will skip, until the entry is removed:",
            *(f"• {item}" for item in SAFE_LIST_WAIVES),
            SAFE_LIST_KEEPS,
            "Remove it with DELETE /v1/safelist/{entry} or otp safelist remove. The change is audited.",
        ],
        f"Add {entry} to the safe list",
    )


def confirmed(action: Action, describe: Describe, path: str, back: str) -> Action:
    """``action`` (posted to ``path``) behind its confirmation page (``back``: where Cancel goes)."""

    async def step(request: Request, admin: Admin, form: dict[str, str]) -> Response:
        if form.get(CONFIRM) == YES:
            return await action(request, admin, form)
        found = describe(form)
        if found is None:
            return await action(request, admin, form)
        title, lines, button = found
        fields = {k: v for k, v in form.items() if k not in ("csrf", CONFIRM)}
        inputs = join([hidden("csrf", admin.csrf), *(hidden(k, v) for k, v in fields.items()), hidden(CONFIRM, YES)])
        window = form.get(WINDOW_PARAM) or form.get(OLD_WINDOW_PARAM, "")
        cancel = tag("a", "Cancel", href=url(request, back, {WINDOW_PARAM: window}))
        body = Html(
            join(tag("p", line, class_="confirm-line") for line in lines)
            + f'<form method="post" action="{esc(url(request, path))}" class="confirm">{inputs}'
            f"{tag('button', button, type='submit')} {cancel}</form>"
        )
        return page(layout(request, title, body, active="fraud", who=admin.key.name, csrf=admin.csrf))

    return step
