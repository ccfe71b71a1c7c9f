"""Start a verification, read the code the user typed, check it: the whole login step in one script.

    .venv/bin/python examples/python_client.py +15017122661
    OTP_URL=http://127.0.0.1:8000 OTP_API_KEY=otpk_... .venv/bin/python examples/python_client.py +15017122661

It needs httpx, which `scripts/bootstrap test` installs (or: .venv/bin/pip install httpx).
OTP_URL defaults to http://127.0.0.1:8000. With a development `otp serve`, the key is read from
.otp/dev-api-key and the code is in its log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import httpx
except ImportError:
    sys.exit("this example needs httpx: scripts/bootstrap test, or .venv/bin/pip install httpx")


def error_message(response: httpx.Response) -> str:
    """otp's error message, or the body as it came (uvicorn's plain-text 503 is not JSON)."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text.strip()}"


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
            print("start refused:", error_message(started))
            return 1
        verification = started.json()
        print(f"sent a code to {verification['to']} (verification {verification['id']})")
        while True:
            code = input("code: ").strip()
            checked = client.post("/v1/verifications/check", json={"id": verification["id"], "code": code})
            if checked.status_code == 400:  # not a code (e.g. a typo with letters): type it again
                print("error:", error_message(checked))
                continue
            if checked.status_code != 200:  # refused: too many checks or failed checks, not found, ...
                print("check refused:", error_message(checked))
                return 1
            body = checked.json()
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
    except httpx.TransportError as exc:
        sys.exit(f"can't reach otp at {os.environ.get('OTP_URL', 'http://127.0.0.1:8000')}: {exc}")
