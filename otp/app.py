"""create_app(settings): routes, error handlers, and a lifespan that owns Redis, the SMS sender and
the in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from otp import dashboard, logs, startup
from otp.clock import SYSTEM, Clock
from otp.core.apikeys import KeyChecker
from otp.core.budget import BudgetConfig, Budgets
from otp.core.codes import Argon2Params, CodeHasher
from otp.core.keyring import Keyring
from otp.core.line_types import LineTypes
from otp.core.messages import parse_price_table
from otp.core.policy import Policy
from otp.core.readiness import Readiness
from otp.core.senders import SenderPool, ten_dlc_warning
from otp.core.senders import parse as parse_senders
from otp.core.tokens import DEFAULT_ISSUER
from otp.core.verification import Rules, Verifier
from otp.dashboard import guard
from otp.dashboard.headers import SecurityHeaders
from otp.edge.sms import ConsoleSender, SmsSender
from otp.edge.webhook_delivery import EventDelivery, EventOptions
from otp.edge.worker import HEARTBEAT_TTL_MS, Worker, WorkerOptions
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store
from otp.web import access_log, docs, health, key_webhook, metrics, openapi, webhooks
from otp.web import admin as admin_api
from otp.web import audit as audit_api
from otp.web import budgets as budgets_api
from otp.web import errors as web_errors
from otp.web import stats as stats_api
from otp.web import v1 as api
from otp.web.health import HealthChecks
from otp.web.verify_v2.routes import routes as verify_v2_routes

log = logging.getLogger("otp")


async def openapi_json(request: Request) -> Response:
    return Response(openapi.encoded(), media_type="application/json")


def sender_pool(settings: Settings) -> SenderPool | None:
    """The operator's senders (OTP_TWILIO_FROM, checked by Settings), each paced at its MPS."""
    if not settings.twilio_from:
        return None
    return SenderPool(parse_senders(settings.twilio_from), max_wait=settings.sender_max_wait)


def build_sender(settings: Settings) -> SmsSender:
    """The SMS sender of a worker; logs, once per worker, what the sender pool needs from the operator.
    Which one is ``otp.startup.sms_choice``'s call (it raises rather than fall back to the console)."""
    if startup.sms_choice(settings) == startup.CONSOLE:
        return ConsoleSender()
    from otp.edge.twilio_sender import TwilioSender

    pool = sender_pool(settings)
    senders = pool.senders if pool else ()
    warning = ten_dlc_warning(senders, settings.twilio_messaging_service_sid)
    if warning:
        log.warning(warning)
    numbers = [s.address for s in senders if not s.is_messaging_service]
    services = [s.address for s in senders if s.is_messaging_service]
    return TwilioSender(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        # Defaults for a message the worker chose no sender for (the pool's first number or service).
        from_number=numbers[0] if numbers else "",
        messaging_service_sid=settings.twilio_messaging_service_sid or (services[0] if services else ""),
        api_url=settings.twilio_api_url,
        timeout=settings.twilio_timeout,
        # A connection for each send the worker makes at once.
        pool_size=WorkerOptions.concurrency,
    )


def build_line_types(settings: Settings, store: Store, keyring: Keyring, clock: Clock) -> LineTypes | None:
    """Twilio Lookup's line types where OTP_LOOKUP asks for them (None: off)."""
    if settings.lookup.mode == "off" or not settings.twilio_configured:
        return None
    from otp.edge.lookup import TwilioLookup

    source = TwilioLookup(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        api_url=settings.twilio_api_url,
        timeout=settings.lookup.timeout,
    )
    return LineTypes(store, keyring, settings.lookup, source, clock=clock)


def worker_options(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        app_name=settings.app_name,
        webotp_domain=settings.webotp_domain,
        public_url=settings.public_url,
        retention=settings.retention,
        code_ttl=settings.code_ttl,
        poll_after=settings.delivery_poll_after,
        lease=settings.sms_lease,
        backoff_base=settings.sms_retry_base,
        prices=parse_price_table(settings.sms_prices) if settings.sms_prices else None,
        opt_out_ttl=settings.opt_out_ttl,
        pool=sender_pool(settings),
    )


def budget_config(settings: Settings) -> BudgetConfig:
    return BudgetConfig(
        daily=settings.budget_daily,
        countries=dict(settings.budget_country),
        timezone=settings.budget_timezone,
        prices=parse_price_table(settings.sms_prices) if settings.sms_prices else None,
        app_name=settings.app_name,
        webotp_domain=settings.webotp_domain,
    )


def event_options(settings: Settings) -> EventOptions:
    return EventOptions(
        allow_private=settings.webhook_allow_private,
        retention=settings.retention,
        backoff_base=settings.webhook_retry_base,
    )


def build_store(client: Any, settings: Settings) -> Store:
    return Store(
        client,
        partitions=settings.partitions,
        audit_maxlen=settings.audit_maxlen,
        webhook_queue_cap=settings.webhook_queue_cap,
        audit_retention_ms=int(settings.audit_retention * 1000),
    )


class App(Starlette):
    """Starlette with the request-id and access-log middleware outside all of its own: its
    ServerErrorMiddleware, always outermost in ``middleware=[…]``, answers a 500 itself, and that
    answer and its error line must carry the request id too."""

    def build_middleware_stack(self) -> ASGIApp:
        return access_log.AccessLog(super().build_middleware_stack(), keeps=logs.shows_no_number)


def create_app(
    settings: Settings,
    *,
    clock: Clock = SYSTEM,
    sender: SmsSender | None = None,
    health_checks: HealthChecks | None = None,
) -> Starlette:
    """``health_checks``: what /healthz asks besides "the process answers" (name → a callable
    answering "ok" or what is wrong), e.g. `otp serve`'s embedded Redis."""
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (otp serve starts an embedded Redis)")
    if not settings.secret_keys:
        raise ValueError("create_app needs OTP_SECRET_KEY")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = connect(settings.redis_url or "")
        keyring = Keyring(settings.secret_keys)
        store = build_store(client, settings)
        hasher = CodeHasher(
            keyring,
            Argon2Params(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism),
        )
        rules = Rules(
            code_length=settings.code_length,
            code_ttl=settings.code_ttl,
            max_check_attempts=settings.max_check_attempts,
            max_sends=settings.max_sends,
            codes_kept=settings.codes_kept,
            retention=settings.retention,
            token_max_age=settings.token_max_age,
            approval_replay=settings.approval_replay,
            approval_replays=settings.approval_replays,
            token_issuer=settings.public_url or DEFAULT_ISSUER,
        )
        app.state.settings = settings
        app.state.store = store
        app.state.policy = Policy(store, settings.policy)
        app.state.budgets = Budgets(store, budget_config(settings))
        app.state.verifier = Verifier(
            store,
            hasher,
            keyring,
            rules,
            app.state.policy,
            clock=clock,
            line_types=build_line_types(settings, store, keyring, clock),
            budgets=app.state.budgets,
        )
        app.state.keys = KeyChecker(store)
        app.state.readiness = Readiness(client, allow_eviction=settings.redis_allow_eviction, clock=clock)
        stop = asyncio.Event()
        task = None
        if settings.worker:
            worker = Worker(
                store,
                keyring,
                sender or build_sender(settings),
                worker_options(settings),
                clock=clock,
                events=EventDelivery(store, keyring, event_options(settings), clock=clock),
                budgets=app.state.budgets,
            )
            app.state.worker = worker
            task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=HEARTBEAT_TTL_MS / 1000)
            await client.aclose()

    routes = [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *docs.routes,
        Route("/metrics", metrics.metrics, methods=["GET"]),
        *api.routes,
        *audit_api.routes,
        *webhooks.routes,
        *key_webhook.routes,
        *admin_api.routes,
        *budgets_api.routes,
        *stats_api.routes,
        # Starlette's trailing-slash redirect would name the client's Host header (see headers.py).
        Route(dashboard.PATH, guard.add_slash, middleware=[Middleware(SecurityHeaders)]),
        dashboard.mount(),
        *verify_v2_routes,
    ]
    app = App(
        routes=routes,
        exception_handlers=web_errors.HANDLERS,
        lifespan=lifespan,
        middleware=[Middleware(metrics.LatencyMiddleware)],
    )
    # Starlette would answer /v1/verifications/ with a redirect built from the client's Host
    # header (Host: evil.example → http://evil.example/…); a wrong path is a 404 instead.
    app.router.redirect_slashes = False
    app.state.health_checks = dict(health_checks or {})
    return app
