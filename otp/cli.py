"""The ``otp`` command: serve, worker, keys, audit, safelist, twilio-stub."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import secrets
import signal
import sys
import unicodedata
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import quote, unquote

from otp import __version__, admin_cli, audit_cli
from otp.core import apikeys
from otp.core.phone import MASK, mask, mask_numbers
from otp.edge.embedded_redis import EmbeddedRedis
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage.store import Store

log = logging.getLogger("otp")

DEV_KEY_FILE = "dev-api-key"
SECRET_FILE = "secret-key"  # noqa: S105  (a file name, not a secret)


class MaskNumbers(logging.Filter):
    """Access-log lines carry request targets, and a target may hold a number (/v1/safelist/+1…,
    /v1/audit?number=…), written any way a person types one.

    The record keeps its shape: uvicorn's AccessFormatter unpacks ``record.args`` as the tuple
    (client, method, path, http version, status), so each string argument is masked in place
    rather than the message being pre-formatted (``args = None`` made every request log a
    ``--- Logging error ---`` traceback instead of its line). The target goes through
    ``mask_target``; in other lines an argument that is a path does too (``storage error on GET
    /v2/…/Verifications/501-712-2661``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == ACCESS_ARGS:
            record.args = tuple(
                mask_target(arg) if index == ACCESS_TARGET and isinstance(arg, str) else _masked(arg)
                for index, arg in enumerate(record.args)
            )
        elif isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _masked(arg) for name, arg in record.args.items()}
        # getMessage() takes str(msg) in any case; arguments that aren't strings are left as they
        # are (their format, %d or %r, is the message's business).
        record.msg = mask_numbers(str(record.msg))
        return True


def _masked(arg: object) -> object:
    if not isinstance(arg, str):
        return arg
    if arg.startswith("/"):
        return mask_target(arg)
    return _BARE_NUMBER.sub(lambda m: MASK + m.group()[-VISIBLE:], mask_numbers(arg))


ACCESS_ARGS = 5  # uvicorn's access record: (client, method, path?query, http version, status)
ACCESS_TARGET = 2
VISIBLE = 4  # digits of a masked number left in a log line, as otp.core.phone.mask leaves
# A national number (no "+") in another field, e.g. a method: a bare run of 8-15 digits.
_BARE_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{8,15}(?![0-9A-Za-z])")
# Digits with what people type between them: spaces, ( ) . - + and the other punctuation
# phonenumbers reads as separators that NFKC leaves as they are (‐ ‑ ‒ – — ― − ー, [ ], soft
# hyphens...); any decimal digit, as NFKC leaves some non-ASCII ones.
_SEPARATORS = " ().+-[]~\u00ad\u200b\u2060\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2053\u223c\u30fc"
# From a digit to a digit, so that matching is linear: a long stretch of separators can't be the
# start of a match (and backtracked from each of its characters).
_DIGIT_RUN = re.compile(f"\\d(?:[\\d{re.escape(_SEPARATORS)}]*\\d)?")
MIN_DIGITS = 7  # a run of this many digits or more is masked as a number
# Kept as they are when a masked path is quoted again for the line (never "%", "?", space or a
# control character, so decoding can't forge a line or a query).
_PATH_SAFE = "/+*()!$&',;=:@"
_DECODINGS = 4  # "%252B1…" decodes to "%2B1…", then "+1…": decoded until stable, at most this often
HIDDEN = "…"  # what an access line shows of a query value


def mask_target(text: str) -> str:
    """An access line's request target (uvicorn's: the path decoded and quoted again, then the
    query as sent). No query value is shown at all (``?number=…&since=…``); the path and the
    parameters' names are percent-decoded (repeatedly), NFKC-normalised (so a fullwidth ``＋``
    is a plus) and quoted again, with each run of 7 or more digits masked, however separated
    (spaces, ``( ) . - +``, the other ``_SEPARATORS``): ``+1 (501) 712-2661`` → ``+1*******2661``,
    ``501-712-2661`` → ``*******2661``. Digits glued to a letter are part of an id
    (``VE0123456789abcdef…``) and stay, unless a ``+`` comes before them."""
    path, mark, query = text.partition("?")
    if not mark:
        return _mask_part(path)
    names = []
    for parameter in query.split("&"):
        name, equals, _value = parameter.partition("=")
        names.append(_mask_part(name.replace("+", " ")) + (f"={HIDDEN}" if equals else ""))
    return _mask_part(path) + "?" + "&".join(names)


def _mask_part(text: str) -> str:
    for _ in range(_DECODINGS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    text = unicodedata.normalize("NFKC", text)
    return quote(_DIGIT_RUN.sub(lambda m: _masked_run(m, text), text), safe=_PATH_SAFE)


def _masked_run(match: re.Match[str], text: str) -> str:
    run = match.group()
    digits = "".join(str(unicodedata.digit(c)) for c in run if c.isdecimal())
    if len(digits) < MIN_DIGITS:
        return run
    # A "+" among the separators just before it makes it a number with its calling code (the
    # "+" stays where it is); each separator is looked at once, by the run that follows it.
    at = match.start() - 1
    while at >= 0 and text[at] in _SEPARATORS and text[at] != "+":
        at -= 1
    if at >= 0 and text[at] == "+":
        return mask("+" + digits)[1:]
    before = text[match.start() - 1] if match.start() > 0 else ""
    after = text[match.end()] if match.end() < len(text) else ""
    if before.isalpha() or after.isalpha():
        return run  # part of an id
    return MASK + digits[-VISIBLE:]


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("uvicorn.access").addFilter(MaskNumbers())
    # Every other line too (e.g. "storage error on GET /v2/Services/VA…/Verifications/+1…"):
    # uvicorn's access lines have their own handler; all else reaches the root's.
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskNumbers())


def _dev_secret(data_dir: Path) -> str:
    """The development secret: kept in the data folder so a restart doesn't void pending codes."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    log.warning(
        "OTP_SECRET_KEY is not set: generated a development secret in %s (set OTP_SECRET_KEY in production)",
        path,
    )
    return secret


def _with_local_fallbacks(settings: Settings) -> Settings:
    """For commands run beside a development `otp serve`: its socket and its secret."""
    data_dir = Path(settings.data_dir)
    changes: dict[str, object] = {}
    if not settings.redis_url and (data_dir / "redis.sock").exists():
        changes["redis_url"] = f"unix://{(data_dir / 'redis.sock').resolve()}"
    if not settings.secret_keys and (data_dir / SECRET_FILE).exists():
        changes["secret_keys"] = (_dev_secret(data_dir),)
    return settings.with_changes(**changes) if changes else settings


def _require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError(f"OTP_REDIS_URL is not set and no development `otp serve` is running in {settings.data_dir}/")
    return settings.redis_url


@contextlib.asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[Store]:
    """The store on OTP_REDIS_URL for one command; its connections close with it."""
    from otp.app import build_store
    from otp.storage.client import connect

    client = connect(_require_redis(settings))
    try:
        # The service's audit caps: a command's audit event must not trim the log by other ones.
        yield build_store(client, settings)
    finally:
        await client.aclose()


async def _ensure_dev_key(settings: Settings) -> None:
    async with _connected(settings) as store:
        if await apikeys.count(store):
            return
        key, token = await apikeys.create(store, "dev", admin=True)
        from otp.core.admin_audit import Actor, AdminAction, record

        details = {"label": key.name, "role": "admin"}
        await record(store, AdminAction.KEY_CREATE, actor=Actor.command_line(), target=key.key_id, details=details)
    path = Path(settings.data_dir) / DEV_KEY_FILE
    path.write_text(token + "\n")
    path.chmod(0o600)
    log.warning("created a development admin API key (also saved in %s):\n\n    %s\n", path, token)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from otp import serving
    from otp.app import create_app

    settings = Settings.from_env()
    if args.host:
        settings = settings.with_changes(host=args.host)
    if args.port is not None:
        settings = settings.with_changes(port=args.port)
    _setup_logging(settings.log_level)
    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        embedded.start()
        log.warning("OTP_REDIS_URL is not set: started an embedded Redis (data and AOF in %s/)", settings.data_dir)
        secret_keys = settings.secret_keys or (_dev_secret(Path(settings.data_dir)),)
        settings = settings.with_changes(redis_url=embedded.url, secret_keys=secret_keys, dev_mode=True)
    try:
        if not settings.secret_keys:
            raise ConfigError("OTP_SECRET_KEY is required when OTP_REDIS_URL is set (make one: otp keys secret)")
        if settings.dev_mode:
            asyncio.run(_ensure_dev_key(settings))
        if not settings.twilio_configured:
            log.warning(
                "no Twilio credentials (OTP_TWILIO_ACCOUNT_SID / OTP_TWILIO_AUTH_TOKEN): SMS go to the "
                "console sender, DEVELOPMENT ONLY"
            )
        app = create_app(settings)
        # uvicorn re-raises SIGTERM once it has shut down, through the handler it found: make that
        # one exit normally, so the embedded Redis below is stopped instead of orphaned.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            workers=None,
            # Slow clients: read deadlines uvicorn lacks (otp/serving.py) and a cap on open
            # connections, above which uvicorn answers 503.
            http=serving.http_protocol(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout),
            limit_concurrency=settings.max_connections,
        )
    finally:
        if embedded:
            embedded.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from otp.app import build_sender, build_store, event_options, worker_options
    from otp.core.keyring import Keyring
    from otp.edge.webhook_delivery import EventDelivery
    from otp.edge.worker import Worker
    from otp.storage.client import connect

    settings = _with_local_fallbacks(Settings.from_env())
    _setup_logging(settings.log_level)
    url = _require_redis(settings)
    if not settings.secret_keys:
        raise ConfigError("OTP_SECRET_KEY is required: the worker unseals queued codes with it")

    async def run() -> int:
        client = connect(url)
        store, keyring = build_store(client, settings), Keyring(settings.secret_keys)
        worker = Worker(
            store,
            keyring,
            build_sender(settings),
            worker_options(settings),
            events=EventDelivery(store, keyring, event_options(settings)),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await worker.run(stop, burst=args.burst)
        finally:
            await client.aclose()
        log.info("worker stopped after sending %d SMS", worker.sent)
        return 0

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otp",
        description="Self-hosted SMS two-factor authentication. Configuration comes from OTP_* environment "
        "variables (see README); with none set, `otp serve` runs a development setup with an embedded "
        "Redis and a console SMS sender.",
    )
    parser.add_argument("--version", action="version", version=f"otp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP service (and an in-process SMS worker unless OTP_WORKER=off)")
    serve.add_argument("--host", help="listen address (default OTP_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default OTP_PORT or 8000)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run an SMS worker: claim queued sends, deliver them, record results")
    worker.add_argument("--burst", action="store_true", help="drain the queue, then exit")
    worker.set_defaults(func=cmd_worker)

    admin_cli.add_keys_parser(sub)
    audit_cli.add_parser(sub)
    admin_cli.add_safelist_parser(sub)
    admin_cli.add_optouts_parser(sub)

    stub = sub.add_parser(
        "twilio-stub",
        help="a local Twilio Messages API stand-in for demos (posts signed callbacks); --help for its options",
        add_help=False,
    )
    stub.add_argument("stub_args", nargs=argparse.REMAINDER)  # listed for --help: `main` runs it before argparse
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["twilio-stub"]:
        # Its options are its own (argparse would take --help for ours).
        from otp.devtools import twilio_stub

        return twilio_stub.main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"otp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
