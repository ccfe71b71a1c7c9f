"""`otp twilio-stub` and `python -m otp.devtools.twilio_stub`: the stand-in on a port of its own,
for demos and the benchmarks, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from otp.devtools.twilio_stub.plans import OUTCOMES
from otp.devtools.twilio_stub.stub import TwilioStub


def _parse_script(text: str) -> tuple[str, str]:
    to, sep, outcome = text.partition("=")
    if not sep or outcome not in OUTCOMES:
        raise argparse.ArgumentTypeError(f"expected +NUMBER=OUTCOME with OUTCOME in {sorted(OUTCOMES)}")
    return to, outcome


@dataclass
class _Interrupt:
    event: threading.Event = field(default_factory=threading.Event)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="otp twilio-stub",
        description="A loopback stand-in for Twilio's Messages API (create and fetch a Message) that posts "
        "status callbacks signed with the auth token, for demos: point otp at it with "
        "OTP_TWILIO_API_URL=http://HOST:PORT and the same OTP_TWILIO_ACCOUNT_SID / OTP_TWILIO_AUTH_TOKEN. "
        "Also runs as python -m otp.devtools.twilio_stub. Stop it with Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8099, help="listen port (default 8099; 0 picks a free one)")
    parser.add_argument(
        "--account-sid",
        default="AC" + "0" * 32,
        help="the account SID requests must authenticate with (default AC followed by 32 zeros)",
    )
    parser.add_argument(
        "--auth-token",
        default="stub-auth-token",
        help="the auth token requests must authenticate with and callbacks are signed with (default stub-auth-token)",
    )
    parser.add_argument(
        "--script",
        action="append",
        type=_parse_script,
        default=[],
        metavar="+NUMBER=OUTCOME",
        help="script the outcome of every message to one recipient (repeatable); OUTCOME is one of "
        f"{', '.join(sorted(OUTCOMES))} (default delivered)",
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    stub = TwilioStub(args.account_sid, args.auth_token, host=args.host, port=args.port, log=say)
    for to, outcome in args.script:
        stub.script(to, outcome)
    interrupt = _Interrupt()
    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        pass  # not the main thread: only Ctrl-C stops it then
    with stub:
        say(f"Twilio stub listening on {stub.url} for account {args.account_sid}")
        say(f"  point the SDK's https://api.twilio.com at {stub.url}; callbacks are signed with the auth token")
        try:
            while not interrupt.event.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    say("Twilio stub stopped")
    return 0
