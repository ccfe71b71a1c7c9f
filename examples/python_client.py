"""Start a verification, read the code the user typed, check it: the whole login step in one script.

    python examples/python_client.py +15017122661
    OTP_URL=http://127.0.0.1:8000 OTP_API_KEY=otpk_... python examples/python_client.py +15017122661

With a development `otp serve`, the key is read from .otp/dev-api-key and the code is in its log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx


def api_key() -> str:
    key = os.environ.get("OTP_API_KEY")
    if key:
        return key
    dev = Path(os.environ.get("OTP_DATA_DIR", ".otp")) / "dev-api-key"
    if dev.exists():
        return dev.read_text().strip()
    sys.exit("set OTP_API_KEY (create one with: otp keys create my-app)")


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    base = os.environ.get("OTP_URL", "http://127.0.0.1:8000")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key()}"}, timeout=10) as client:
        started = client.post("/v1/verifications", json={"to": sys.argv[1]})
        if started.status_code != 201:
            print("start refused:", started.json()["error"]["message"])
            return 1
        verification = started.json()
        print(f"sent a code to {verification['to']} (verification {verification['id']})")
        while True:
            code = input("code: ").strip()
            checked = client.post("/v1/verifications/check", json={"id": verification["id"], "code": code})
            body = checked.json()
            if checked.status_code != 200:
                print("error:", body["error"]["message"])
                continue
            if body["approved"]:
                print("approved; token:", body["token"])
                return 0
            if body["status"] != "pending":
                print("verification is", body["status"])
                return 1
            print(f"wrong code, {body['attempts_left']} attempts left")


if __name__ == "__main__":
    raise SystemExit(main())
