"""Brute force: verifications locked by their check attempts and numbers locked by failed checks
over a window (otp.core.bruteforce), with the API keys and IPs that checked them, each linked to
the audit log filtered on it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from otp.core import audit, bruteforce
from otp.core.stats import window_slots
from otp.dashboard.guard import Admin, now_ms
from otp.dashboard.incidents_page import seen_ms
from otp.dashboard.markup import Column, Html, join, layout, number, page, table, tag, url
from otp.dashboard.widgets import chosen_window, section, stats, utc, window_picker
from otp.storage.store import Store


def _links(request: Request, name: str, values: list[str], since: str) -> Html:
    if not values:
        return Html("–")
    return join((tag("a", v, href=url(request, "/audit", {name: v, "since": since}), class_="id") for v in values), " ")


def _scroll(label: str, inner: Html) -> Html:
    return Html(f'<div class="scroll" tabindex="0" role="region" aria-label="{label}">{inner}</div>')


def _key_param(key: str) -> str:
    return "service" if key.startswith("VA") else "key"


async def bruteforce_page(request: Request, admin: Admin) -> Response:
    store: Store = request.app.state.store
    win = chosen_window(request)
    now = now_ms(request)
    first = window_slots(win, now)[0] * (60_000 if win.minutes else 3_600_000)
    since = audit.iso_ms(first)
    verifications, numbers = await bruteforce.locks_since(store, request.app.state.verifier.keyring, first)
    v_rows = [
        (
            tag("code", lock.verifications[0], class_="id"),
            lock.to or "(past retention)",
            lock.country or "–",
            _links(request, _key_param(lock.key), [lock.key], since),
            _links(request, "ip", lock.ips, since),
            number(lock.count),
            seen_ms(lock.last_ms),
        )
        for lock in verifications
    ]
    n_rows = [
        (
            lock.to or tag("code", lock.verifications[0], class_="id"),
            lock.country or "–",
            _links(request, _key_param(lock.key), [lock.key], since),
            _links(request, "ip", lock.ips, since),
            number(lock.count),
            number(len(lock.verifications)),
            seen_ms(lock.first_ms),
            seen_ms(lock.last_ms),
            ("until " + utc(lock.until_ms)) if lock.until_ms and lock.locked_now(now) else "lifted",
        )
        for lock in numbers
    ]
    body = join(
        [
            window_picker(request, "/bruteforce", win),
            tag(
                "p",
                f"{win.label.capitalize()}: {utc(first)} to {utc(now)}. Guessing codes shows up here: "
                "a verification is locked "
                "once its check attempts run out (the user starts a new one). A number is locked for an API key by "
                "too many failed checks in an hour, across verifications, and its checks are refused until the "
                "failures age out: it is listed once such a check was refused while it was locked (a number "
                "nobody checked again after the lock is not). IPs are those the clients passed on checks "
                "(ip, DeviceIp).",
                class_="help",
            ),
            stats(
                [
                    ("locked_verifications", "Verifications locked", number(len(verifications))),
                    ("locked_numbers", "Numbers locked", number(len(numbers))),
                    ("ips", "IPs involved", number(len({ip for lock in verifications + numbers for ip in lock.ips}))),
                ]
            ),
            section(
                "Numbers locked by failed checks",
                _scroll(
                    "Numbers locked by failed checks",
                    table(
                        "Numbers locked by failed checks, latest first",
                        [
                            Column("Number"),
                            Column("Country"),
                            Column("Key"),
                            Column("IPs"),
                            Column("Refused checks", numeric=True),
                            Column("Verifications", numeric=True),
                            Column("First refused (UTC)"),
                            Column("Last refused (UTC)"),
                            Column("Lock"),
                        ],
                        n_rows,
                        empty="No check was refused for a number locked by failed checks in this window.",
                        id_="locked-numbers",
                    ),
                ),
                id_="numbers",
            ),
            section(
                "Verifications locked by attempts",
                _scroll(
                    "Verifications locked by attempts",
                    table(
                        "Verifications locked by attempts, latest first",
                        [
                            Column("Verification"),
                            Column("Number"),
                            Column("Country"),
                            Column("Key"),
                            Column("IPs"),
                            Column("Attempts", numeric=True),
                            Column("Locked at (UTC)"),
                        ],
                        v_rows,
                        empty="No verification was locked by its attempts in this window.",
                        id_="locked-verifications",
                    ),
                ),
                id_="verifications",
            ),
        ]
    )
    return page(layout(request, "Brute force", body, active="bruteforce", who=admin.key.name, csrf=admin.csrf))
