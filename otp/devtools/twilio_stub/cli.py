"""`otp twilio-stub` and `python -m otp.devtools.twilio_stub`: the stand-in on a port of its own,
for demos and the benchmarks, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import shlex
import signal
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from otp.devtools.twilio_stub.account import CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_NUMBER, STATUSES, TYPES
from otp.devtools.twilio_stub.lookups import DEFAULT_CARRIER, LINE_TYPES
from otp.devtools.twilio_stub.plans import OUTCOMES
from otp.devtools.twilio_stub.stub import TwilioStub

# The outcomes a Twilio error code can be given to, and the script option that carries it.
_CODE_OPTION: dict[str, str] = {"undelivered": "error_code", "failed": "error_code", "reject": "code"}
_HELP_WIDTH = 78  # argparse's own default wraps to the terminal less 2; the description is wrapped by hand
# Lookup's "no data" answer: no type, error 60600 (unprovisioned or out of coverage).
_NO_DATA = "no_data"


@dataclass(frozen=True)
class _Scripted:
    to: str
    outcome: str
    options: dict[str, int]


def _parse_script(text: str) -> _Scripted:
    to, sep, rest = text.partition("=")
    outcome, colon, code = rest.partition(":")
    expected = (
        "expected +NUMBER=OUTCOME[:CODE] with OUTCOME in "
        f"{', '.join(sorted(OUTCOMES))} and CODE a Twilio error code (undelivered, failed, reject only)"
    )
    if not sep or outcome not in OUTCOMES:
        raise argparse.ArgumentTypeError(expected)
    if not colon:
        return _Scripted(to, outcome, {})
    if outcome not in _CODE_OPTION or not code.isdigit() or not 10000 <= int(code) <= 99999:
        raise argparse.ArgumentTypeError(expected)
    return _Scripted(to, outcome, {_CODE_OPTION[outcome]: int(code)})


def _parse_lookup(text: str) -> tuple[str, str | None, str | None]:
    to, sep, rest = text.partition("=")
    line_type, colon, carrier = rest.partition(":")
    if not sep or (line_type not in LINE_TYPES and line_type != _NO_DATA):
        raise argparse.ArgumentTypeError(
            f"expected +NUMBER=TYPE[:CARRIER] with TYPE in {', '.join(sorted(LINE_TYPES))} or {_NO_DATA}"
        )
    return to, None if line_type == _NO_DATA else line_type, (carrier if colon else None)


def _parse_number(text: str) -> tuple[str, frozenset[str]]:
    number, colon, rest = text.partition(":")
    capabilities = frozenset(c.strip().lower() for c in rest.split("/") if c.strip())
    if not number.startswith("+") or not number[1:].isdigit() or (colon and not capabilities <= set(CAPABILITIES)):
        raise argparse.ArgumentTypeError(
            f"expected +NUMBER[:CAPABILITIES] with CAPABILITIES some of {'/'.join(CAPABILITIES)} (e.g. sms/mms)"
        )
    return number, capabilities if colon else DEFAULT_CAPABILITIES


def _parse_service(text: str) -> tuple[str, str]:
    sid, _, name = text.partition(":")
    if not (sid.startswith("MG") and len(sid) == 34):
        raise argparse.ArgumentTypeError("expected MG…[:FRIENDLY_NAME] (MG and 32 hex digits)")
    return sid, name or "Stub service"


def _add_account_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--number",
        action="append",
        type=_parse_number,
        default=[],
        metavar="+NUMBER[:CAPABILITIES]",
        help=f"a phone number the account owns (repeatable; the account always has {DEFAULT_NUMBER}, which "
        "this can change); CAPABILITIES are some of voice/sms/mms/fax, default voice/sms/mms: e.g. "
        "+14155550100:sms, +14155550101:voice (not SMS-capable)",
    )
    parser.add_argument("--short-code", action="append", default=[], metavar="CODE", help="a short code it owns")
    parser.add_argument(
        "--messaging-service",
        action="append",
        type=_parse_service,
        default=[],
        metavar="MG…[:NAME]",
        help="a Messaging Service it has (repeatable); any other MG sid is 404",
    )
    parser.add_argument("--account-status", choices=STATUSES, default="active", help="the account's status")
    parser.add_argument("--account-type", choices=TYPES, default="Full", help="Trial or Full (default Full)")


@dataclass
class _Interrupt:
    event: threading.Event = field(default_factory=threading.Event)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


DEFAULT_PORT = 8099
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "stub-auth-token"  # noqa: S105  (the stand-in's published demo token)
# The number the stand-in's account owns from the start (what `otp doctor` checks a sender against).
DEMO_FROM = DEFAULT_NUMBER
# Where otp itself listens in the development setup (`otp serve`: 127.0.0.1:8000), for OTP_PUBLIC_URL.
OTP_URL = "http://127.0.0.1:8000"

# What each --script outcome does; "delivered" is every unscripted number's.
_OUTCOME_HELP = {
    "delivered": "queued, sent, delivered: a signed status callback for each (the default)",
    "undelivered": "sent, then undelivered with CODE (default 30003)",
    "failed": "failed at once with CODE (default 30008)",
    "reject": "the create is answered 400 with Twilio error CODE (default 21211): no message is made",
    "delayed": "delivered, its callbacks starting a second late",
    "duplicate": "delivered, every callback posted twice",
    "out_of_order": "delivered, the delivered callback posted before the sent one",
    "early": "delivered, the first two callbacks posted before the create is answered",
    "silent": "delivered without any callback: only a fetch (otp's poll) learns it",
}


def env_lines(url: str, account_sid: str, auth_token: str) -> list[str]:
    """The settings that point otp at the stand-in at ``url``, as lines to paste into the shell that
    then runs `otp serve` (otp/settings.py reads each; OTP_PUBLIC_URL is where the signed status
    callbacks come back, which otp requires beside Twilio credentials). Each is an ``export``: a bare
    ``NAME=value`` pasted into a shell sets a shell variable otp never sees, and otp would stay on
    the console sender without a word. Values are quoted for sh (a --auth-token may hold anything)."""
    settings = {
        "OTP_TWILIO_API_URL": url,
        "OTP_TWILIO_ACCOUNT_SID": account_sid,
        "OTP_TWILIO_AUTH_TOKEN": auth_token,
        "OTP_TWILIO_FROM": DEMO_FROM,
        "OTP_PUBLIC_URL": OTP_URL,
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]


def _epilog() -> str:
    outcomes = "\n".join(f"  {name:<13} {text}" for name, text in _OUTCOME_HELP.items())
    lines = "\n".join(
        f"  {line}" for line in env_lines(f"http://127.0.0.1:{DEFAULT_PORT}", DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    )
    return (
        f"--script outcomes (every callback is signed with the auth token, as Twilio signs them):\n{outcomes}\n\n"
        "Point otp at it: paste these lines into the shell that then runs `otp serve` (printed again at\n"
        "startup with the actual port; change OTP_PUBLIC_URL if otp listens elsewhere: the status\n"
        "callbacks are posted there):\n"
        f"{lines}\n\n"
        "Examples:\n"
        "  otp twilio-stub --script +14155550101=undelivered:30034 --script +14155550102=reject:21610\n"
        "  otp twilio-stub --port 0 --lookup +14155550103=landline --lookup +14155550104=nonFixedVoip:Google"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otp twilio-stub",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "A loopback stand-in for Twilio's Messages API (create and fetch a Message; price and price_unit "
            "are filled in once it is final), Lookup v2 line types and the account's own resources (status, "
            "phone numbers, short codes, Messaging Services: what `otp doctor` checks), posting status "
            "callbacks signed with the auth token, for demos: point otp at it with "
            "OTP_TWILIO_API_URL=http://HOST:PORT and the same OTP_TWILIO_ACCOUNT_SID / OTP_TWILIO_AUTH_TOKEN "
            "(below). Also runs as python -m otp.devtools.twilio_stub. It prints each request it answers and "
            "each callback it posts; stop it with Ctrl-C or SIGTERM.",
            width=_HELP_WIDTH,
        ),
        epilog=_epilog(),
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--account-sid",
        default=DEFAULT_ACCOUNT_SID,
        help="the account SID requests must authenticate with (default AC followed by 32 zeros): "
        "OTP_TWILIO_ACCOUNT_SID",
    )
    parser.add_argument(
        "--auth-token",
        default=DEFAULT_AUTH_TOKEN,
        help="the auth token requests must authenticate with and callbacks are signed with "
        f"(default {DEFAULT_AUTH_TOKEN}): OTP_TWILIO_AUTH_TOKEN",
    )
    parser.add_argument(
        "--script",
        action="append",
        type=_parse_script,
        default=[],
        metavar="+NUMBER=OUTCOME[:CODE]",
        help="script the outcome of every message to one recipient (repeatable); OUTCOME is one of "
        f"{', '.join(sorted(OUTCOMES))} (default delivered; each is described below). CODE is the Twilio "
        "error code an undelivered (default 30003) or failed (default 30008) status callback carries, or the "
        "error a reject answers the create with (default 21211): e.g. +14155550101=reject:21610 (the user "
        "replied STOP), +14155550102=failed:30034 (unregistered 10DLC sender)",
    )
    parser.add_argument(
        "--lookup",
        action="append",
        type=_parse_lookup,
        default=[],
        metavar="+NUMBER=TYPE[:CARRIER]",
        help="what Lookup v2 line_type_intelligence answers for one number (repeatable; otp asks with "
        f"OTP_LOOKUP=line_type or always); TYPE is one of {', '.join(sorted(LINE_TYPES))}, or {_NO_DATA} "
        f"(no type, error 60600); CARRIER defaults to '{DEFAULT_CARRIER}', and every other number is a "
        f"mobile of '{DEFAULT_CARRIER}'. E.g. +14155550103=landline, +14155550104=nonFixedVoip:Google",
    )
    _add_account_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    stub = TwilioStub(args.account_sid, args.auth_token, host=args.host, port=args.port, log=say)
    for scripted in args.script:
        stub.script(scripted.to, scripted.outcome, **scripted.options)
    for to, line_type, carrier in args.lookup:
        stub.lookups.answer(
            to,
            line_type,
            carrier=DEFAULT_CARRIER if carrier is None else carrier,
            error_code=None if line_type else 60600,
        )
    stub.account.set_status(args.account_status, args.account_type)
    for number, capabilities in args.number:
        stub.account.add_number(number, capabilities)
    for code in args.short_code:
        stub.account.add_short_code(code)
    for sid, name in args.messaging_service:
        stub.account.add_messaging_service(sid, name)
    interrupt = _Interrupt()
    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        pass  # not the main thread: only Ctrl-C stops it then
    with stub:
        say(f"Twilio stub listening on {stub.url} for account {args.account_sid}")
        say(f"  point the SDK's https://api.twilio.com at {stub.url}; callbacks are signed with the auth token")
        say("  otp's settings for it, to paste into the shell that then runs `otp serve` (OTP_PUBLIC_URL:")
        say("  where otp listens, for the status callbacks):")
        for line in env_lines(stub.url, args.account_sid, args.auth_token):
            say(line)
        try:
            while not interrupt.event.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    say("Twilio stub stopped")
    return 0
