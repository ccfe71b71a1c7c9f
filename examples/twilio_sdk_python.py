#!/usr/bin/env python3
"""Start and check a verification with Twilio's official Python SDK, pointed at otp's /v2 API.

    .venv/bin/otp keys create my-app --twilio          # prints an account SID (AC…) and an auth token
    .venv/bin/python examples/twilio_sdk_python.py --url http://127.0.0.1:8000 \\
        --account-sid AC… --auth-token … +15017122664

It needs the twilio package, which `scripts/bootstrap` installs into .venv (hence .venv/bin/python;
with the venv activated, `examples/twilio_sdk_python.py …` runs it too). Without --service a Verify
service named "otp example" is created first (its sid is printed: pass it next time). Code written
for Twilio Verify needs one change to run on otp: the base URL. With a development `otp serve`, the
code is in its log. A refused start prints Twilio's error code and, for a limit (20429, 60203), the
Retry-After seconds.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client


class RetryAfter:
    """A response hook that keeps the last answer's Retry-After: Twilio's error body has no such field."""

    seconds: str | None = None

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.seconds = response.headers.get("Retry-After")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("OTP_URL", "http://127.0.0.1:8000"), help="otp's base URL")
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID"), help="AC… from otp keys create")
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"), help="its auth token")
    parser.add_argument("--service", default=os.environ.get("TWILIO_VERIFY_SERVICE_SID"), help="VA… (else one is made)")
    parser.add_argument("number", help="the phone number to verify, E.164 (+15017122664)")
    args = parser.parse_args()
    if not args.account_sid or not args.auth_token:
        parser.error("give --account-sid and --auth-token (create them with: otp keys create NAME --twilio)")
    return args


def main() -> int:
    args = arguments()
    retry_after = RetryAfter()
    client = Client(
        args.account_sid, args.auth_token, http_client=TwilioHttpClient(request_hooks={"response": [retry_after]})
    )
    # The one line that differs from code written for Twilio: the Verify API's base URL.
    client.verify.base_url = args.url.rstrip("/")
    service_sid = args.service or client.verify.v2.services.create(friendly_name="otp example").sid
    if not args.service:
        print(f"created service {service_sid}")
    verify = client.verify.v2.services(service_sid)
    try:
        verification = verify.verifications.create(to=args.number, channel="sms")
    except TwilioRestException as exc:
        print(f"start refused: {exc.code} {exc.msg}")
        if retry_after.seconds:  # a limit: 20429, or 60203 for too many sends
            print(f"retry_after: {retry_after.seconds} s")
        return 1
    print(f"sent a code to {verification.to} (verification {verification.sid})", flush=True)
    while True:
        try:
            code = input("code: ").strip()
        except EOFError:  # the input ended (Ctrl-D, a closed pipe) before a code came
            print("no code entered")
            return 1
        try:
            check = verify.verification_checks.create(verification_sid=verification.sid, code=code)
        except TwilioRestException as exc:
            # 60200 a malformed code; 60202 out of attempts; 20404 expired, canceled or approved.
            print(f"error: {exc.code} {exc.msg}")
            if exc.code == 60200:
                continue
            return 1
        if check.status == "approved":
            print("approved")
            return 0
        if check.status != "pending":
            print(f"verification is {check.status}")
            return 1
        print("wrong code, try again")


if __name__ == "__main__":
    raise SystemExit(main())
