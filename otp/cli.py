"""The ``otp`` command: serve, worker, keys, audit, safelist, doctor, twilio-stub."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from otp import __version__, admin_cli, audit_cli, event_loop, logs
from otp.core import apikeys
from otp.edge.embedded_redis import EmbeddedRedis
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage.store import Store

log = logging.getLogger("otp")

DEV_KEY_FILE = "dev-api-key"
SECRET_FILE = "secret-key"  # noqa: S105  (a file name, not a secret)


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
    from otp import startup

    settings = Settings.from_env()
    if args.host:
        settings = settings.with_changes(host=args.host)
    if args.port is not None:
        settings = settings.with_changes(port=args.port)
    logs.setup(settings.log_level, settings.log_format)
    # Decided on what the operator set, before the embedded Redis and the generated secret fill
    # the gaps: nothing is started when the setup is refused.
    startup.refuse_dev_setup_on_network(settings)
    if settings.worker:
        settings = startup.resolve_sms(settings, dev_setup=startup.is_dev_setup(settings, bind=settings.host))
    watch = startup.RedisWatch()
    # uvicorn re-raises SIGTERM once it has shut down, through the handler it found: make that
    # one exit normally, so the embedded Redis below is stopped instead of orphaned. Installed
    # before the embedded Redis starts: its supervisor signals this process when it gives up.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        embedded.start()
        embedded.supervise(watch.give_up)
        log.warning("OTP_REDIS_URL is not set: started an embedded Redis (data and AOF in %s/)", settings.data_dir)
        secret_keys = settings.secret_keys or (_dev_secret(Path(settings.data_dir)),)
        settings = settings.with_changes(redis_url=embedded.url, secret_keys=secret_keys, dev_mode=True)
    try:
        _serve(settings, embedded)
    except SystemExit:
        if not watch.lost:
            raise
    finally:
        if embedded:
            embedded.stop()
    if watch.lost:
        log.error("otp serve exits: %s", watch.lost)
        return startup.EXIT_REDIS_LOST
    return 0


def _serve(settings: Settings, embedded: EmbeddedRedis | None) -> None:
    import uvicorn

    from otp import serving, startup
    from otp.app import create_app

    if not settings.secret_keys:
        raise ConfigError("OTP_SECRET_KEY is required when OTP_REDIS_URL is set (make one: otp keys secret)")
    asyncio.run(startup.check_redis_at(_require_redis(settings), settings))
    if settings.dev_mode:
        asyncio.run(_ensure_dev_key(settings))
    checks = {"embedded_redis": embedded.health} if embedded else {}
    app = create_app(settings, health_checks=checks)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # uvicorn's lines go through otp's handler (otp/logs.py: JSON or text, masked) instead
        # of its own; otp's access log (otp/web/access_log.py) replaces uvicorn's, which
        # would show the raw target, with one line per request naming the route's template.
        log_config=None,
        access_log=False,
        workers=None,
        # uvloop, installed with otp: what otp/event_loop.py runs the worker on.
        loop="auto",
        # Slow clients: read deadlines uvicorn lacks (otp/serving.py) and a cap on open
        # connections, above which uvicorn answers 503.
        http=serving.http_protocol(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout),
        limit_concurrency=settings.max_connections,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from otp import startup
    from otp.app import build_sender, build_store, event_options, worker_options
    from otp.core.keyring import Keyring
    from otp.edge.webhook_delivery import EventDelivery
    from otp.edge.worker import Worker
    from otp.storage.client import connect

    given = Settings.from_env()
    settings = _with_local_fallbacks(given)
    logs.setup(settings.log_level, settings.log_format)
    url = _require_redis(settings)
    if not settings.secret_keys:
        raise ConfigError("OTP_SECRET_KEY is required: the worker unseals queued codes with it")
    settings = startup.resolve_sms(settings, dev_setup=startup.is_dev_setup(given, bind=None))

    async def run() -> int:
        client = connect(url)
        try:
            await startup.check_redis(client, settings)
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
            await worker.run(stop, burst=args.burst)
            log.info("worker stopped after sending %d SMS", worker.sent)
        finally:
            await client.aclose()
        return 0

    return event_loop.run(run())


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

    from otp import doctor

    check = sub.add_parser(
        "doctor", help="check this deployment (settings, Redis, clock, secrets, Twilio, senders): pass/warn/fail"
    )
    check.add_argument("--json", action="store_true", help="print the findings as a JSON array")
    check.set_defaults(func=doctor.command)

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
