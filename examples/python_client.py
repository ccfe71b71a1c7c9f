#!/usr/bin/env python3
"""Start a verification, read the code the user typed, check it: the whole login step in one script.

    examples/python_client.py +15017122663
    OTP_URL=https://otp.example.com OTP_API_KEY=otpk_... examples/python_client.py +15017122663

Python's standard library only: any python3 runs it (3.8 or newer), no install needed.
OTP_URL defaults to http://127.0.0.1:8000. With a development `otp serve` (started in this
folder), the key is read from .otp/dev-api-key (or $OTP_DATA_DIR/dev-api-key) and the code is in
its log. A refused start or check prints otp's error (and when to try again) and exits with status 1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BASE = os.environ.get("OTP_URL", "http://127.0.0.1:8000").rstrip("/")
if not BASE.startswith(("http://", "https://")):
    sys.exit(f"OTP_URL must be an http:// or https:// URL, not {BASE!r}")


def api_key() -> str:
    key = os.environ.get("OTP_API_KEY")
    if key:
        return key
    dev = Path(os.environ.get("OTP_DATA_DIR", ".otp")) / "dev-api-key"
    if dev.exists():
        return dev.read_text().strip()
    sys.exit("set OTP_API_KEY (create one with: otp keys create my-app)")


def post(path: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
    """The answer's status and JSON body; an error status is an answer too, not an exception."""
    # S310: BASE is http(s), checked above; urllib would open file: URLs too.
    request = urllib.request.Request(  # noqa: S310
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (http(s) only, above)
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as answer:
        text = answer.read().decode(errors="replace")
        try:
            return answer.code, json.loads(text)
        except ValueError:  # uvicorn's plain-text 503 above OTP_MAX_CONNECTIONS is not JSON
            return answer.code, {"error": {"message": f"HTTP {answer.code}: {text.strip()}"}}


def error_message(body: dict[str, Any]) -> str:
    """otp's error message, and how long to wait when it is a limit (``retry_after`` seconds)."""
    error = body.get("error") or {}
    message = str(error.get("message", body))
    if error.get("retry_after") is not None:
        message += f" (retry_after: {error['retry_after']} s)"
    return message


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    key = api_key()
    status, verification = post("/v1/verifications", {"to": sys.argv[1]}, key)
    if status != 201:  # 429 for a limit (retry_after says when), 403 a refused number, 400 a bad one
        print("start refused:", error_message(verification))
        return 1
    print(f"sent a code to {verification['to']} (verification {verification['id']})", flush=True)
    while True:
        try:
            code = input("code: ").strip()
        except EOFError:  # the input ended (Ctrl-D, a closed pipe) before a code came
            print("no code entered")
            return 1
        status, body = post("/v1/verifications/check", {"id": verification["id"], "code": code}, key)
        if status == 400:  # not a code (e.g. a typo with letters): type it again
            print("error:", error_message(body))
            continue
        if status != 200:  # refused: too many checks or failed checks, not found, ...
            print("check refused:", error_message(body))
            return 1
        if body["approved"]:
            print("approved; token:", body["token"])
            return 0
        if body["status"] != "pending":
            print("verification is", body["status"])
            return 1
        print(f"wrong code, {body['attempts_left']} attempts left")


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except urllib.error.URLError as exc:
        sys.exit(f"can't reach otp at {BASE}: {exc.reason}")
    except EOFError:  # stdin closed at the code prompt
        sys.exit(1)
