"""The HTML: string.Template pages, every value escaped unless it is ``Markup`` built here.

The pages need no JavaScript. The code page loads /static/code.js, which only adds WebOTP
autofill and the Resend countdown where the browser has them."""

from __future__ import annotations

import html
from string import Template

from starlette.responses import HTMLResponse

from examples.login_app.refusals import Refusal


class Markup(str):
    """HTML this module built: inserted as it is."""

    __slots__ = ()


def esc(value: object) -> Markup:
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def fill(template: str, **values: object) -> Markup:
    return Markup(Template(template).substitute({name: esc(value) for name, value in values.items()}))


LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · Example Co.</title>
<link rel="stylesheet" href="/static/style.css">
$head</head>
<body>
<header><span class="brand">Example Co.</span></header>
<main>
<h1>$title</h1>
$body
</main>
</body>
</html>
"""

SIGN_IN = """$notice<form method="post" action="/signin">
<input type="hidden" name="csrf" value="$csrf">
<label for="username">Username</label>
<input id="username" name="username" value="$username" autocomplete="username" autocapitalize="none" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Continue</button>
</form>
"""

CODE = """<p>We sent a sign-in code by SMS to <strong id="to">$to</strong>.</p>
<p class="delivery $delivery_class" id="delivery">$delivery <a href="/code">Refresh</a></p>
$notice<form method="post" action="/code">
<input type="hidden" name="csrf" value="$csrf">
<label for="code">Code</label>
<input id="code" name="code" autocomplete="one-time-code" inputmode="numeric" pattern="[0-9]*" maxlength="10"
 required autofocus>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/code/resend" class="inline">
<input type="hidden" name="csrf" value="$csrf">
$resend
</form>
<form method="post" action="/signout" class="inline">
<input type="hidden" name="csrf" value="$csrf">
<button type="submit" class="link">Cancel</button>
</form>
"""

SIGNED_IN = """<p>Signed in as <strong id="who">$name</strong> ($username).</p>
<p class="small">Your phone <span>$to</span> was confirmed at $at by otp's approval token, which
this site verified with otp's public key <code>$kid</code>.</p>
<form method="post" action="/signout">
<input type="hidden" name="csrf" value="$csrf">
<button type="submit">Sign out</button>
</form>
"""

REFUSED = """<p class="notice error" id="refusal">$message</p>
<p><a href="$next">$next_label</a></p>
"""


NOTHING = Markup("")


def page(title: str, body: Markup, *, status: int = 200, head: Markup = NOTHING) -> HTMLResponse:
    return HTMLResponse(fill(LAYOUT, title=title, body=body, head=head), status_code=status)


def notice(text: str, kind: str = "error") -> Markup:
    return fill('<p class="notice $kind" id="notice">$text</p>\n', kind=kind, text=text) if text else NOTHING


def sign_in(
    csrf: str, *, username: str = "", message: str = "", kind: str = "error", status: int = 200
) -> HTMLResponse:
    body = fill(SIGN_IN, csrf=csrf, username=username, notice=notice(message, kind))
    return page("Sign in", body, status=status)


def delivery_line(status: str | None, error_title: str | None) -> tuple[str, str]:
    """The code page's delivery sentence and its CSS class, from otp's delivery state of the last SMS."""
    if status == "delivered":
        return "SMS delivered.", "delivered"
    if status in ("undelivered", "failed"):
        why = f" ({error_title})" if error_title else ""
        return f"The SMS was not delivered{why}. Resend it, or contact support.", "undelivered"
    return "SMS not delivered yet.", "pending"


def resend_button(wait: int) -> Markup:
    if wait <= 0:
        return Markup('<button type="submit" class="secondary" id="resend">Resend code</button>')
    return fill(
        '<button type="submit" class="secondary" id="resend" disabled data-wait="$wait">'
        'Resend code <span class="wait">(try again in $wait s)</span></button>',
        wait=wait,
    )


def code_entry(
    csrf: str,
    *,
    to: str,
    delivery: tuple[str, str],
    resend_wait: int,
    message: str = "",
    kind: str = "error",
    status: int = 200,
) -> HTMLResponse:
    body = fill(
        CODE,
        csrf=csrf,
        to=to,
        delivery=delivery[0],
        delivery_class=delivery[1],
        notice=notice(message, kind),
        resend=resend_button(resend_wait),
    )
    head = Markup('<script src="/static/code.js" defer></script>\n')
    return page("Enter your code", body, status=status, head=head)


def signed_in(csrf: str, *, name: str, username: str, to: str, at: str, kid: str) -> HTMLResponse:
    return page("Welcome", fill(SIGNED_IN, csrf=csrf, name=name, username=username, to=to, at=at, kid=kid))


def refused(refusal: Refusal) -> HTMLResponse:
    target = ("/signin", "Sign in again") if refusal.start_over else ("/code", "Try again")
    body = fill(REFUSED, message=refusal.message, next=target[0], next_label=target[1])
    response = page(refusal.title, body, status=refusal.status)
    if refusal.retry_after and refusal.status in (429, 503):
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def form_expired() -> HTMLResponse:
    body = fill(REFUSED, message="This form has expired. Nothing was sent.", next="/signin", next_label="Start again")
    return page("Form expired", body, status=403)
