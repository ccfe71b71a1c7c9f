"""The fraud page's "Spend today" section: what was spent per country and per key, what each
budget has left, and the estimated spend every rule blocked (otp.core.budget)."""

from __future__ import annotations

from otp.core.budget import Budgets, from_micro, spend_today
from otp.core.messages import PRICE_UNIT
from otp.dashboard.markup import Column, Html, table, tag
from otp.dashboard.widgets import section


def _money(micro: int) -> str:
    return f"{from_micro(micro)} {PRICE_UNIT}"


async def spend_section(budgets: Budgets, now_ms: int) -> Html:
    found = await spend_today(budgets, now_ms)
    scopes = found.budgets["scopes"]
    budget_rows = [
        (
            s["scope"],
            f"{s['spent']} {s['currency']}",
            f"{s['budget']} {s['currency']}" if s["budget"] is not None else "none",
            f"{s['left']} {s['currency']}" if s["left"] is not None else "",
        )
        for s in scopes
    ]
    money = [Column("Spent", numeric=True)]
    return section(
        "Spend today",
        tag(
            "p",
            f"Day {found.day.name} in {budgets.config.timezone}; budgets reset at {found.day.resets_at}. "
            "Estimates by the price table, corrected by Twilio's price once it is known.",
            class_="help",
        ),
        table(
            "Budgets",
            [Column("Scope"), *money, Column("Budget", numeric=True), Column("Left", numeric=True)],
            budget_rows,
            empty="No budget is set and nothing was spent today.",
            id_="budgets",
        ),
        table(
            "Spend today by country",
            [Column("Country"), *money],
            [(c or "(none)", _money(n)) for c, n in sorted(found.by_country.items(), key=lambda i: -i[1])],
            empty="Nothing spent today.",
            id_="spend-country",
        ),
        table(
            "Spend today by key",
            [Column("Key"), *money],
            [(k, _money(n)) for k, n in sorted(found.by_key.items(), key=lambda i: -i[1])],
            empty="Nothing spent today.",
            id_="spend-key",
        ),
        table(
            "Estimated spend blocked today, by rule",
            [Column("Rule"), Column("Blocked", numeric=True)],
            [(rule, _money(n)) for rule, n in sorted(found.blocked_by_rule.items(), key=lambda i: -i[1])],
            empty="No send was refused today.",
            id_="blocked-spend",
        ),
        id_="spend",
    )
