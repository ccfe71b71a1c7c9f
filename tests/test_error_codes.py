"""``otp.errors.CODES`` lists every error code otp answers with, at its status: each raiser in otp
is read (its ``code=`` or its class's default) and checked against the list, so a new code can't
ship undocumented (the OpenAPI document's error schema is drawn from the list) and a documented one
can't outlive its last raiser."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import repo_root

from otp import errors
from otp.core import refusals
from otp.web import body
from otp.web import errors as web_errors

PACKAGE = repo_root() / "otp"
# Every OtpError class by name, with the status and code it carries when a raiser names no code.
CLASSES = {name: cls for name, cls in vars(errors).items() if inspect.isclass(cls) and issubclass(cls, errors.OtpError)}


@dataclass(frozen=True)
class Raised:
    where: str
    code: str
    status: int
    # False for a code taken from a value made elsewhere (DYNAMIC): one raiser of many codes, each
    # of which may come with another status (test_the_permission_refusals_are_403_and_the_limits_429).
    exact: bool = True


def _module_of(path: Path) -> Any:
    dotted = ".".join(path.relative_to(repo_root()).with_suffix("").parts)
    return importlib.import_module(dotted)


def _resolve(node: ast.expr, namespace: dict[str, Any]) -> Any:
    """A module-level constant named by ``node`` (``NAME``, ``module.NAME``, ``RECORD.field``), or
    ``None`` when it names something local to a function (``decision.reason``)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, namespace)
        return None if owner is None else getattr(owner, node.attr, None)
    return None


# Codes a raiser takes from a value made elsewhere, each with what enumerates them: the refusals of
# the send rules (policy.py's decisions and start.lua's, worded in REFUSAL_MESSAGES) and the JSON
# parser's refusals (body._Refused).
_REFUSED_CODES = {
    str(node.args[2].value)
    for node in ast.walk(ast.parse(Path(body.__file__).read_text()))
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_Refused" and len(node.args) == 3
    if isinstance(node.args[2], ast.Constant)
}
DYNAMIC: dict[tuple[str, str], set[str]] = {
    ("otp/core/refusals.py", "decision.reason"): set(refusals.REFUSAL_MESSAGES) - {refusals.LOOKUP_REFUSAL.reason},
    ("otp/web/body.py", "refused.code"): {*_REFUSED_CODES, body._Refused.code},
}


def _raised_in(path: Path) -> Iterator[Raised]:
    tree = ast.parse(path.read_text())
    where = str(path.relative_to(repo_root()))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        cls = CLASSES.get(name)
        if cls is None or (path.name == "errors.py" and path.parent == PACKAGE):
            continue
        given = next((k.value for k in node.keywords if k.arg == "code"), None)
        if given is None:
            yield Raised(f"{where}:{node.lineno}", cls.code, cls.status)
            continue
        value = _resolve(given, vars(_module_of(path)))
        if isinstance(value, str):
            yield Raised(f"{where}:{node.lineno}", value, cls.status)
            continue
        source = ast.unparse(given)
        dynamic = DYNAMIC.get((where, source))
        assert dynamic is not None, (
            f"{where}:{node.lineno}: code={source} comes from elsewhere: list its codes in otp.errors.CODES "
            "and say here (DYNAMIC) what enumerates them"
        )
        for code in dynamic:
            yield Raised(f"{where}:{node.lineno} ({source})", code, cls.status, exact=False)


@functools.cache
def raised() -> tuple[Raised, ...]:
    # The service's raisers: not the stand-in, nor the client (its codes name what it saw of an
    # answer, e.g. "unreachable", never what otp answers).
    outside = {"devtools", "client"}
    paths = [p for p in sorted(PACKAGE.rglob("*.py")) if not outside & set(p.parts) and p.name != "__main__.py"]
    found = [r for path in paths for r in _raised_in(path)]
    # The mapping's own codes: Starlette's routing errors, a storage failure, an unexpected one.
    mapping = "otp/web/errors.py"
    found += [Raised(mapping, code, status) for status, code in web_errors.HTTP_CODES.items()]
    found += [Raised(mapping, "http_error", 400), Raised(mapping, "unavailable", 503)]
    found.append(Raised(mapping, "internal", 500))
    return tuple(found)


def test_every_code_otp_raises_is_documented_with_its_status() -> None:
    undocumented = sorted({f"{r.code} ({r.where})" for r in raised() if r.code not in errors.CODES})
    assert not undocumented, f"add these to otp.errors.CODES: {undocumented}"
    wrong = sorted(
        f"{r.code}: {r.where} answers {r.status}, CODES says {errors.CODES[r.code].status}"
        for r in raised()
        if r.exact and errors.CODES[r.code].status != r.status
    )
    assert not wrong, wrong
    unanswered = [
        code
        for code, documented in errors.CODES.items()
        if documented.status not in {r.status for r in raised() if r.code == code}
    ]
    assert not unanswered, f"no raiser answers these with their documented status: {unanswered}"


def test_every_documented_code_is_still_raised() -> None:
    stale = set(errors.CODES) - {r.code for r in raised()}
    assert not stale, f"no raiser answers these any more: drop them from otp.errors.CODES: {sorted(stale)}"


def test_every_refusal_of_the_send_rules_is_a_documented_code() -> None:
    """The reasons Lua decides (the number's limits in lib.lua, attempt.lua) reach clients as codes too."""
    lua = PACKAGE / "storage" / "lua"
    reasons = set(re.findall(r"refusal\([^,]+,\s*'\w+',\s*'(\w+)'", (lua / "lib.lua").read_text()))
    reasons |= set(re.findall(r"reason = '(\w+)'", (lua / "attempt.lua").read_text()))
    assert {"max_sends_reached", "resend_too_soon", "too_many_failed_checks"} <= reasons
    assert reasons <= set(refusals.REFUSAL_MESSAGES) | {"too_many_failed_checks"}
    assert reasons <= set(errors.CODES)


def test_the_permission_refusals_are_403_and_the_limits_429() -> None:
    """refusals.not_permitted and rate_limited share ``decision.reason``: the table tells them apart."""
    permission = {"country_not_allowed", "number_type_not_allowed"}
    for reason in refusals.REFUSAL_MESSAGES:
        expected = 403 if reason in permission else 503 if reason == refusals.LOOKUP_REFUSAL.reason else 429
        assert errors.CODES[reason].status == expected, reason
