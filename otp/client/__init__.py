"""A typed Python client for otp's /v1 API (``pip install 'otp[client]'``: httpx).

    from otp.client import Client, RateLimited, WrongCode

    with Client("https://otp.example.com", "otpk_…") as otp:
        verification = otp.start("+15017122661")
        approval = otp.check("123456", verification_id=verification.id)   # WrongCode if not approved

``AsyncClient`` has the same methods, awaited. Answers are otp's own models (otp.client.models);
refusals raise an ``OtpError`` subclass carrying ``code``, ``field``, ``retry_after`` and ``status``.
The service never imports this package, and importing it loads neither Redis nor Starlette.
"""

from otp.client.aio import AsyncClient as AsyncClient
from otp.client.errors import Conflict as Conflict
from otp.client.errors import Forbidden as Forbidden
from otp.client.errors import InvalidRequest as InvalidRequest
from otp.client.errors import NotFound as NotFound
from otp.client.errors import OtpError as OtpError
from otp.client.errors import RateLimited as RateLimited
from otp.client.errors import Unauthorized as Unauthorized
from otp.client.errors import Unavailable as Unavailable
from otp.client.errors import WrongCode as WrongCode
from otp.client.models import *  # noqa: F403 (the answer models, listed in otp.client.models)
from otp.client.sync import Client as Client
