"""A loopback stand-in for Twilio's Messages API, for tests and local demos.

It answers the two calls the real `twilio` SDK makes for SMS (create and fetch a Message) in the
wire format of the 2010-04-01 API, and then posts status callbacks signed with the account's auth
token exactly as Twilio does (`X-Twilio-Signature` over the full callback URL plus the sorted POST
parameters), so the code under test runs its real signature check.  Per recipient it can script
the awkward cases a real carrier produces: undelivered, failed, late, duplicated, reordered and
early callbacks, silence, rejection, server errors and slow answers.

Stdlib only, apart from `twilio.request_validator` for the signature, so the signing can never
drift from the validator the application uses.  Run it by hand with
``python -m otp.devtools.twilio_stub --port 8099 --account-sid AC... --auth-token ...``.

It answers Lookup v2 line types too (``GET /v2/PhoneNumbers/{n}?Fields=line_type_intelligence``),
scripted per number (``stub.lookups``), and the account's own resources `otp doctor` reads (the
Account's status, its IncomingPhoneNumbers with their capabilities, ShortCodes, Messaging v1
Services; ``stub.account``).

wire: the Message resource and error documents; lookups: Lookup v2; account: the account's resources;
plans: scripted outcomes as status steps;
callbacks: signed status callbacks; api: the HTTP handler; stub: `TwilioStub`, its state and
test controls; cli: the command line.
"""

from otp.devtools.twilio_stub.cli import main
from otp.devtools.twilio_stub.plans import OUTCOMES
from otp.devtools.twilio_stub.stub import TwilioStub
from otp.devtools.twilio_stub.wire import API_VERSION, StubMessage, count_segments, error_body

__all__ = ["API_VERSION", "OUTCOMES", "StubMessage", "TwilioStub", "count_segments", "error_body", "main"]
