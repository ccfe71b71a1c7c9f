"""``otp keys``, ``otp safelist`` and ``otp optouts``: the tenants' API keys, the fraud rules' safe
list and the numbers that replied STOP, edited through the same storage operations as the admin API and
the dashboard."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys

from otp import cli_output
from otp.audit_fields import AdminAction
from otp.clock import SYSTEM
from otp.core import admin_audit, apikeys, terminal_text, validators
from otp.core.audit import iso_ms
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage.store import Store

# The shell helpers (_connected, _require_redis, _with_local_fallbacks) are imported inside the
# commands: otp.cli imports this module to register them.


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage API keys and secrets")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_sub.add_parser("create", help="create an API key; the key is printed once, on the last line")
    create.add_argument("name", help="a label for the key, e.g. the client app's name")
    create.add_argument("--admin", action="store_true", help="may read every verification and the audit log")
    create.add_argument(
        "--twilio", action="store_true", help="mint an account SID / auth token pair for Twilio's SDKs (/v2 API)"
    )
    cli_output.add_json_option(create, 'print {"id", "name", "admin", "twilio", "key"} (and the SID / token) as JSON')
    listing = keys_sub.add_parser(
        "list",
        help="list API keys (ids and names, never secrets)",
        description="One row per key: its id, role (admin or client), credentials (bearer: an otpk_… token; "
        "twilio: an account SID / auth token pair) and name.",
    )
    cli_output.add_json_option(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("key_id", help="the key id, as `otp keys list` shows it (AC… for a --twilio key)")
    cli_output.add_json_option(revoke, 'print {"id", "revoked"} as JSON')
    keys_sub.add_parser("secret", help="print a new random value for OTP_SECRET_KEY")
    budget = keys_sub.add_parser(
        "budget",
        help="show or set an API key's daily spend budget (a /v2 key's covers all its services)",
        description="Without AMOUNT: the key's spend today, its budget and what is left. With AMOUNT: set its "
        "daily budget; --remove: drop it (its spend still counts in OTP_BUDGET_DAILY and OTP_BUDGET_COUNTRY). "
        "Amounts are in the price table's currency (OTP_SMS_PRICES, USD); days start at midnight in "
        "OTP_BUDGET_TIMEZONE. The same as PUT / DELETE /v1/budgets/keys/{key_id}; changes are audited.",
    )
    budget.add_argument("key_id", help="the key id, as `otp keys list` shows it")
    budget.add_argument("amount", nargs="?", help="the daily budget in the price table's currency, e.g. 25.00")
    budget.add_argument("--remove", action="store_true", help="remove the key's own budget (its spend still counts)")
    budget.add_argument("--json", action="store_true", help="print the key's figures as JSON")
    keys.set_defaults(func=cmd_keys)


def add_safelist_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    safelist = sub.add_parser("safelist", help=f"numbers and prefixes that bypass {validators.SAFE_LIST_EXEMPTS}")
    safelist_sub = safelist.add_subparsers(dest="safelist_command", metavar="ACTION", required=True)
    entry_help = "E.164 number or prefix (+1501712), or a whole number in national format in OTP_DEFAULT_REGION"
    add = safelist_sub.add_parser(
        "add",
        help="add a number or prefix (E.164, e.g. +1501712)",
        description="Add a number or prefix: every number it starts bypasses the fraud rules (pumping, send "
        "limits and cooldowns, country and number-type permissions). A number in national format (5017122661) "
        "is read in OTP_DEFAULT_REGION, as `otp audit --number` reads it. An entry that covers a whole country "
        "calling code (+44, +1) is refused (exit status 2) unless --country is given.",
    )
    add.add_argument("entry", help=entry_help)
    add.add_argument(
        "--country", action="store_true", help="allow an entry that exempts whole countries (+44: every UK number)"
    )
    cli_output.add_json_option(add, 'print {"entry"} as JSON, as POST /v1/safelist answers')
    remove = safelist_sub.add_parser("remove", help="remove one")
    remove.add_argument("entry", help=entry_help)
    cli_output.add_json_option(remove, 'print {"entry", "removed"} as JSON')
    listing = safelist_sub.add_parser(
        "list",
        help="list the entries",
        description="One row per entry: prefix (covers every number that starts with it) or exact "
        "(a whole number from /v2/SafeList/Numbers: covers itself only).",
    )
    cli_output.add_json_option(listing)
    safelist.set_defaults(func=cmd_safelist)


def add_optouts_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    optouts = sub.add_parser(
        "optouts",
        help="numbers that replied STOP (Twilio 21610), refused until cleared",
        description="A number Twilio refused with 21610 (the user replied STOP) is marked opted out for "
        "OTP_OPT_OUT_TTL and its starts are refused (403 recipient_opted_out). check tells whether it is "
        "(exit status 0: opted out, 1: not); clear lifts the mark once the user texted START (audited as "
        "an admin action). The same as GET / DELETE /v1/optouts/{number}.",
    )
    optouts_sub = optouts.add_subparsers(dest="optouts_command", metavar="ACTION", required=True)
    for action, text in (("check", "whether a number is opted out"), ("clear", "clear it (it texted START)")):
        parser = optouts_sub.add_parser(action, help=text, description=f"{text[0].upper()}{text[1:]}.")
        parser.add_argument("number", help="the number, E.164 (+15017122661) or national in OTP_DEFAULT_REGION")
        parser.add_argument(
            "--messaging-service",
            default="",
            metavar="MG…",
            help="a STOP to a /v2 MessagingConfiguration's Messaging Service (default: the operator's sender)",
        )
        parser.add_argument("--json", action="store_true", help="print the answer as /v1/optouts/{number} does")
    optouts.set_defaults(func=cmd_optouts)


def cmd_optouts(args: argparse.Namespace) -> int:
    """Opt-outs from the command line; the admin API (/v1/optouts/{number}) reads and clears the same keys.
    Keyed by the number's hash under the current OTP_SECRET_KEY, as the service marks them."""
    from otp.core import optouts
    from otp.core.keyring import Keyring
    from otp.core.messaging_configs import MESSAGING_SERVICE_SID
    from otp.core.phone import mask, parse
    from otp.errors import InvalidInput

    scope = args.messaging_service
    if scope and not MESSAGING_SERVICE_SID.fullmatch(scope):
        raise ConfigError(f"--messaging-service {scope!r} is not an MG… Messaging Service sid")
    from otp.cli import _connected, _require_redis, _with_local_fallbacks

    settings = _with_local_fallbacks(Settings.from_env())
    try:
        phone = parse(args.number, default_region=settings.default_region, field="number")
    except InvalidInput as exc:
        raise ConfigError(f"{args.number!r} {exc.message}") from None
    _require_redis(settings)
    keyring = Keyring(settings.secret_keys)
    shown = mask(phone.e164)

    def answer(text: str, fields: dict[str, object], *, ok: bool) -> int:
        print(
            json.dumps({"to": shown, **fields}) if args.json else text,
            file=sys.stdout if ok or args.json else sys.stderr,
        )
        return 0 if ok else 1

    async def run() -> int:
        async with _connected(settings) as store:
            if args.optouts_command == "clear":
                if not await optouts.clear(store, keyring, phone.e164, scope):
                    return answer(f"{shown} is not opted out", {"opted_out": False, "cleared": False}, ok=False)
                await _audit_cli_action(store, AdminAction.OPT_OUT_CLEAR, phone.e164)
                return answer(f"cleared {shown}", {"opted_out": False, "cleared": True}, ok=True)
            since = await optouts.marked_at(store, keyring, phone.e164, scope)
            if since is None:
                print(json.dumps({"to": shown, "opted_out": False}) if args.json else f"{shown} is not opted out")
                return 1
            return answer(
                f"{shown} opted out since {iso_ms(since)}", {"opted_out": True, "since": iso_ms(since)}, ok=True
            )

    return asyncio.run(run())


async def _audit_cli_action(store: Store, action: AdminAction, entry: str, **details: str) -> None:
    """An admin action taken from the command line, through the one writer of admin events
    (otp.core.admin_audit): no API key made it, so it names the command line and the OS user."""
    await admin_audit.record(store, action, actor=admin_audit.Actor.command_line(), target=entry, details=details)


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "secret":
        print(secrets.token_urlsafe(48))
        return 0
    from otp.cli import _connected, _require_redis, _with_local_fallbacks

    settings = _with_local_fallbacks(Settings.from_env())
    _require_redis(settings)

    async def run() -> int:
        async with _connected(settings) as store:
            if args.keys_command == "create":
                key, token = await apikeys.create(store, args.name, admin=args.admin, twilio=args.twilio)
                # Audited before the token is shown: no usable key exists without its record.
                role = "admin" if key.admin else "client"
                await _audit_cli_action(store, AdminAction.KEY_CREATE, key.key_id, label=key.name, role=role)
                _print_created(key, token, twilio=args.twilio, as_json=args.json)
            elif args.keys_command == "list":
                keys = await apikeys.list_keys(store)
                if args.json:
                    cli_output.print_json([_key_fields(key) for key in keys])
                else:
                    rows = [(k.key_id, _role(k), "twilio" if _is_twilio(k) else "bearer", k.name) for k in keys]
                    cli_output.print_table(("id", "role", "credentials", "name"), rows)
            elif args.keys_command == "budget":
                return await _budget(store, settings, args)
            elif args.keys_command == "revoke":
                if not await apikeys.revoke(store, args.key_id):
                    if args.json:
                        cli_output.print_json({"id": args.key_id, "revoked": False})
                    print(f"no key {args.key_id}", file=sys.stderr)
                    return 1
                await _audit_cli_action(store, AdminAction.KEY_REVOKE, args.key_id)
                cli_output.print_result(
                    {"id": args.key_id, "revoked": True}, f"revoked {args.key_id}", as_json=args.json
                )
        return 0

    return asyncio.run(run())


def _role(key: apikeys.ApiKey) -> str:
    return "admin" if key.admin else "client"


def _is_twilio(key: apikeys.ApiKey) -> bool:
    from otp.web.verify_v2.context import ACCOUNT_SID  # a --twilio key's id is its account SID

    return bool(ACCOUNT_SID.match(key.key_id))


def _key_fields(key: apikeys.ApiKey) -> dict[str, object]:
    return {"id": key.key_id, "name": key.name, "admin": key.admin, "twilio": _is_twilio(key)}


def _print_created(key: apikeys.ApiKey, token: str, *, twilio: bool, as_json: bool) -> None:
    """The new key, once: as text (the token alone on the last line, for scripts that take it with
    ``tail -1``) or as one JSON object."""
    fields: dict[str, object] = {**_key_fields(key), "key": token}
    if twilio:
        _, account_sid, auth_token = token.split("_")
        fields |= {"account_sid": account_sid, "auth_token": auth_token}
    if as_json:
        cli_output.print_json(fields)
        return
    print(f"created {'admin ' if key.admin else ''}key {key.key_id} ({terminal_text.clean(key.name)}); shown once:")
    if twilio:
        print(f"  Twilio SDK credentials: account SID {fields['account_sid']}, auth token {fields['auth_token']}")
    print(token)


async def _budget(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    """``otp keys budget KEY [AMOUNT | --remove] [--json]``: the same operation as PUT/DELETE
    /v1/budgets/keys/KEY."""
    from otp.app import budget_config
    from otp.core.budget import Budgets, parse_amount

    if args.amount is not None and args.remove:
        raise ConfigError("give an AMOUNT or --remove, not both")
    if args.key_id not in {k.key_id for k in await apikeys.list_keys(store)}:
        print(f"no key {args.key_id}", file=sys.stderr)
        return 1
    budgets = Budgets(store, budget_config(settings))
    if args.amount is not None:
        try:
            amount = parse_amount(args.amount, "AMOUNT")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        await budgets.set_tenant_budget(args.key_id, amount)
        await _audit_cli_action(store, AdminAction.BUDGET_SET, f"{args.key_id}={amount}")
    elif args.remove:
        await budgets.set_tenant_budget(args.key_id, None)
        await _audit_cli_action(store, AdminAction.BUDGET_REMOVE, args.key_id)
    status = await budgets.status([args.key_id], [], SYSTEM.now_ms())
    row = status["scopes"][-1]
    if args.json:
        print(json.dumps({**row, "day": status["day"], "resets_at": status["resets_at"]}, sort_keys=True))
    else:
        budget = f"{row['budget']} {row['currency']}" if row["budget"] is not None else "no budget of its own"
        print(f"{args.key_id}: {budget}; spent today {row['spent']} {row['currency']} (resets {status['resets_at']})")
    return 0


def cmd_safelist(args: argparse.Namespace) -> int:
    """The safe list from the command line; the admin API (/v1/safelist) edits the same Redis set."""
    from otp.cli import _connected, _require_redis, _with_local_fallbacks
    from otp.errors import InvalidInput
    from otp.storage.safelist import SafeList

    settings = _with_local_fallbacks(Settings.from_env())
    entry = ""
    if args.safelist_command in ("add", "remove"):
        # The API's rule (otp.core.validators.safe_entry), with national numbers read as --number is.
        whole_country = args.safelist_command == "remove" or args.country
        try:
            entry = validators.safe_entry(
                args.entry,
                "entry",
                whole_country=whole_country,
                default_region=settings.default_region,
                confirm="pass --country",
            )
        except InvalidInput as exc:
            raise ConfigError(f"safelist entry {args.entry!r} {exc.message}") from None
    _require_redis(settings)

    async def run() -> int:
        async with _connected(settings) as store:
            safe_list = SafeList(store)
            if args.safelist_command == "add":
                await safe_list.add(entry)
                await _audit_cli_action(store, AdminAction.SAFELIST_ADD, entry)
                cli_output.print_result({"entry": entry}, f"added {entry}", as_json=args.json)
            elif args.safelist_command == "remove":
                if not await safe_list.remove(entry):
                    if args.json:
                        cli_output.print_json({"entry": entry, "removed": False})
                    print(f"{entry} is not on the safe list", file=sys.stderr)
                    return 1
                await _audit_cli_action(store, AdminAction.SAFELIST_REMOVE, entry)
                cli_output.print_result({"entry": entry, "removed": True}, f"removed {entry}", as_json=args.json)
            else:
                # /v1's prefixes, then /v2's whole numbers: each of those covers itself, not the
                # numbers after it.
                rows = [(e, "prefix") for e in sorted(await safe_list.entries())]
                rows += [(n, "exact") for n in sorted(await safe_list.numbers())]
                if args.json:
                    cli_output.print_json([{"entry": e, "matches": matches} for e, matches in rows])
                else:
                    cli_output.print_table(("entry", "matches"), rows)
        return 0

    return asyncio.run(run())
