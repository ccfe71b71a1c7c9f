"""The answers the clients return: otp's own /v1 models (otp.web.models), the Structs the server
renders them with, re-exported so a caller names them from the client (``otp.client.Verification``).
Read-only msgspec Structs; ``msgspec.structs.asdict(v)`` or ``msgspec.json.encode(v)`` for plain data."""

from otp.web.models import AuditPage as AuditPage
from otp.web.models import BudgetScope as BudgetScope
from otp.web.models import BudgetStatus as BudgetStatus
from otp.web.models import CheckResult as CheckResult
from otp.web.models import Conversion as Conversion
from otp.web.models import Delivery as Delivery
from otp.web.models import DeliveryErrorInfo as DeliveryErrorInfo
from otp.web.models import ErrorDetail as ErrorDetail
from otp.web.models import KeyWebhook as KeyWebhook
from otp.web.models import OptOut as OptOut
from otp.web.models import Overview as Overview
from otp.web.models import SafeEntry as SafeEntry
from otp.web.models import SafeList as SafeList
from otp.web.models import SafeRemoved as SafeRemoved
from otp.web.models import SendAttempt as SendAttempt
from otp.web.models import Timeline as Timeline
from otp.web.models import TokenResult as TokenResult
from otp.web.models import Unblocked as Unblocked
from otp.web.models import Verification as Verification
from otp.web.models import WebhookRemoved as WebhookRemoved
