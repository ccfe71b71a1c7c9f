"""Sending through the official `twilio` SDK.

The worker sends on its event loop, through the SDK's asyncio client (`AsyncHttpClient`: one
pooled aiohttp session); `otp doctor` and Lookup make their few calls through the blocking one
(`twilio_client`).

``OTP_TWILIO_API_URL`` points every API call at another base URL (a sandbox, a recorder, the test
stand-in).  It is done in the HTTP clients, below the SDK's own host logic, so it holds even when
``TWILIO_EDGE`` / ``TWILIO_REGION`` rewrite the hostname.
"""

from __future__ import annotations

import base64
import logging
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from otp.core.phone import mask_numbers
from otp.delivery_errors import retry_helps
from otp.edge.sms import MessageState, Receipt, SendError, SmsMessage

log = logging.getLogger("otp.twilio")


def redirect(url: str, base_url: str) -> str:
    """``https://api.dublin.ie1.twilio.com/2010-04-01/…`` → ``<base_url>/2010-04-01/…``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not (host == "twilio.com" or host.endswith(".twilio.com")):
        return url
    base = urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, parts.fragment))


class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, redirect(url, self.base_url), *args, **kwargs)


TWILIO_API = "https://api.twilio.com"


def proxy_for(url: str) -> str | None:
    """The outbound proxy the environment names for ``url`` (HTTPS_PROXY or HTTP_PROXY by its
    scheme, unless NO_PROXY covers its host), as requests honours them for the synchronous client."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


# The largest answer the worker reads from Twilio is a page of 50 messages (tens of KiB): more is
# no answer of Twilio's (a middlebox's, a hostile network's), and reading it whole would fill the
# worker's memory within the timeout.
MAX_ANSWER_BYTES = 1 << 20


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """An answer past MAX_ANSWER_BYTES: not read further, its connection closed."""


async def read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body, or AnswerTooLarge as soon as it says or shows it is larger than allowed."""
    if (response.content_length or 0) > MAX_ANSWER_BYTES:
        response.close()
        raise AnswerTooLarge(f"answer of {response.content_length} bytes")
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            response.close()
            raise AnswerTooLarge(f"answer past {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class AsyncHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's asyncio client on one aiohttp session of at most ``pool_size`` connections (one
    per concurrent send), made on the first request (inside the running loop, as aiohttp wants)
    and closed by `close`, after which a request makes another.  Every request is bounded by
    ``timeout``: the SDK's own client hands aiohttp no bound when the call names none; and its
    answer by MAX_ANSWER_BYTES (the SDK's reads any answer whole). No request is logged: the SDK's
    log lines would name the number (a list's ``To``)."""

    def __init__(self, *, base_url: str, timeout: float, pool_size: int) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self.session: aiohttp.ClientSession | None = None
        self.base_url = base_url
        self.pool_size = pool_size

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 — the SDK's signature
        allow_redirects: bool = False,
    ) -> Response:
        if self.session is None:
            # trust_env off (aiohttp's default, the SDK's too): with it on, every request would
            # read ~/.netrc on a thread. The proxy the environment names is read here, once.
            connector = aiohttp.TCPConnector(limit=self.pool_size)
            self.session = aiohttp.ClientSession(connector=connector, proxy=proxy_for(self.base_url or TWILIO_API))
        if self.base_url:
            url = redirect(url, self.base_url)
        if auth is not None:
            # The credentials as a header: aiohttp deprecates the BasicAuth the SDK would make of them.
            basic = base64.b64encode(":".join(auth).encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {basic}"}
        timeout = self.timeout if timeout is None else timeout
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        async with self.session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=allow_redirects,
        ) as response:
            body = await read_bounded(response)
        # Twilio's JSON is UTF-8 (RFC 8259); a charset the answer names otherwise isn't trusted.
        return Response(response.status, body.decode(errors="replace"), response.headers)

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()


def twilio_client(account_sid: str, auth_token: str, *, api_url: str, timeout: float, pool_size: int) -> Client:
    """The SDK's client with a connection pool of ``pool_size`` (one per concurrent call), sent to
    ``api_url`` instead of Twilio's hosts when one is set (the stand-in)."""
    http_client = (
        RedirectingHttpClient(api_url, timeout) if api_url else TwilioHttpClient(pool_connections=True, timeout=timeout)
    )
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    for scheme in ("https://", "http://"):
        http_client.session.mount(scheme, adapter)
    return Client(account_sid, auth_token, http_client=http_client)


class TwilioSender:
    """The worker's sender: every call awaits on the event loop (no thread per send)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str = "",
        messaging_service_sid: str = "",
        api_url: str = "",
        timeout: float = 10.0,
        pool_size: int = 16,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("set OTP_TWILIO_FROM or OTP_TWILIO_MESSAGING_SERVICE_SID")
        # One pooled connection per concurrent send (the worker's concurrency).
        self.http = AsyncHttpClient(base_url=api_url, timeout=timeout, pool_size=pool_size)
        self.client = Client(account_sid, auth_token, http_client=self.http)
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid

    async def send(self, message: SmsMessage) -> Receipt:
        options: dict[str, Any] = {"to": message.to, "body": message.body}
        # The destination's Messaging Service (a /v2 MessagingConfiguration) wins over the pool's
        # sender the worker chose, which wins over the default.
        sender = message.sender
        service = message.messaging_service_sid or (sender if sender.startswith("MG") else "")
        if not (service or sender):
            service = self.messaging_service_sid
        if service:
            options["messaging_service_sid"] = service
        else:
            options["from_"] = sender or self.from_number
        # Which of the operator's senders sent it: the per-sender delivery figures.
        sender = service or sender or self.from_number
        if message.status_callback:
            options["status_callback"] = message.status_callback
        try:
            created = await self.client.messages.create_async(**options)
        except TwilioRestException as exc:
            # Whether another try can help: the error catalogue's word (otp.delivery_errors), its one home.
            transient = retry_helps(exc.code, exc.status)
            # Twilio's text may name the To number (21211, 21612: "The 'To' number +1… is …"); it
            # becomes the attempt's stored error and a log line, which hold masked numbers only.
            message_text = mask_numbers(f"Twilio {exc.status}: {exc.msg}", message.to)
            raise SendError(message_text, transient=transient, error_code=exc.code, sender=sender) from None
        except TwilioServiceException as exc:  # an error in RFC 9457's form
            message_text = mask_numbers(f"Twilio {exc.status}: {exc.title}", message.to)
            transient = retry_helps(exc.code, exc.status)
            raise SendError(message_text, transient=transient, error_code=exc.code, sender=sender) from None
        except (TwilioException, ValueError) as exc:
            # No answer of Twilio's (a proxy's page, a body that isn't JSON): it may have accepted
            # the message, so the retry looks for it first.
            raise SendError(
                f"unreadable answer from Twilio: {type(exc).__name__}", transient=True, sender=sender
            ) from None
        except TimeoutError:
            # aiohttp's timeouts (connect, read, the whole request) are all TimeoutErrors. Twilio may
            # have accepted it: the retry (every retry) looks for it before sending again.
            raise SendError("Twilio timed out", transient=True, sender=sender) from None
        except aiohttp.ClientConnectionError as exc:
            raise SendError(f"cannot reach Twilio: {type(exc).__name__}", transient=True, sender=sender) from None
        except aiohttp.ClientError as exc:
            # A body cut short or too large: Twilio may have accepted it, so the retry looks first.
            raise SendError(
                f"unreadable answer from Twilio: {type(exc).__name__}", transient=True, sender=sender
            ) from None
        return Receipt(
            sender=sender,
            message_sid=created.sid,
            status=created.status or "queued",
            segments=int(created.num_segments) if created.num_segments else None,
            price=created.price,
            price_unit=created.price_unit,
        )

    async def find_sent(self, message: SmsMessage, since: datetime) -> Receipt | None:
        """A message with this body to this number created since ``since``: the one an ambiguous
        failure (a timeout) may have sent after all."""
        try:
            # By number only: a message still queued has no DateSent yet, so that filter would miss it.
            recent = await self.client.messages.list_async(to=message.to, limit=50)
        except (TwilioException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # Can't look, so can't know: sending now might send twice. Try again later.
            raise SendError(f"cannot check for an earlier send: {type(exc).__name__}", transient=True) from None
        for found in recent:
            created = found.date_created
            if found.body == message.body and (created is None or created >= since - timedelta(minutes=1)):
                sender = message.messaging_service_sid or message.sender or self.messaging_service_sid
                return Receipt(
                    message_sid=found.sid, status=found.status or "queued", sender=sender or self.from_number
                )
        return None

    async def fetch_status(self, message_sid: str) -> tuple[str, int | None, str | None]:
        """(status, error code, error message) of a sent message, for the poll of unsettled sends."""
        state = await self.fetch_message(message_sid)
        return state.status, state.error_code, state.error_message

    async def fetch_message(self, message_sid: str) -> MessageState:
        """The Message resource: its state, and its price once Twilio has filled it in."""
        try:
            fetched = await self.client.messages(message_sid).fetch_async()
        # Every failure a SendError (the poll logs it): one escaping would fail the worker's round.
        # Twilio's text is masked as the send's is: it becomes a log line.
        except TwilioRestException as exc:
            text = mask_numbers(f"Twilio {exc.status}: {exc.msg}")
            raise SendError(text, transient=retry_helps(None, exc.status)) from None
        except TwilioServiceException as exc:
            text = mask_numbers(f"Twilio {exc.status}: {exc.title}")
            raise SendError(text, transient=retry_helps(None, exc.status)) from None
        except (TwilioException, ValueError) as exc:
            # A 3xx the SDK lets through to a fetch, a body that isn't JSON: no answer of Twilio's.
            raise SendError(f"unreadable answer from Twilio: {type(exc).__name__}", transient=True) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"cannot reach Twilio: {type(exc).__name__}", transient=True) from None
        found = fetched
        # Stored on the attempt: no full number in it (the send's error text, above, alike).
        error_message = mask_numbers(found.error_message, found.to or "") if found.error_message else None
        return MessageState(found.status, found.error_code, error_message, found.price, found.price_unit)

    async def aclose(self) -> None:
        """Closes the connection pool (the worker's shutdown); a later call opens another."""
        await self.http.close()
