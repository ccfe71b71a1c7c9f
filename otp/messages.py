"""The text of the SMS."""

from __future__ import annotations


def render(code: str, *, locale: str = "", country: str = "", app_name: str = "otp", webotp_domain: str = "") -> str:
    body = f"Your {app_name} verification code is: {code}"
    if webotp_domain:
        body += f"\n\n@{webotp_domain} #{code}"
    return body
