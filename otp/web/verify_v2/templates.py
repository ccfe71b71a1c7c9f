"""GET /v2/Templates: otp's SMS text as Twilio's Verification Templates list.

otp has one verification template, written in each of its locales (``otp.core.messages``), so
the list is that one template with a translation per locale, in Twilio's placeholders
(``{{code}}``, ``{{friendly_name}}``). Its sid is derived from a fixed name, the same in every
process and release. Templates are part of otp's code: none is created, edited or approved over
the API, and there are no dates to report.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import messages
from otp.errors import InvalidInput
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import meta, template_json

FRIENDLY_NAME = "otp verification code"
TEMPLATE_SID = "HJ" + hashlib.sha256(b"otp/template/verification").hexdigest()[:32]


def twilio_text(template: str) -> str:
    """otp's ``{code}``/``{app}`` in Twilio's ``{{code}}``/``{{friendly_name}}``."""
    return template.replace("{code}", "{{code}}").replace("{app}", "{{friendly_name}}")


async def list_templates(request: Request) -> Response:
    account = await context.account(request)
    params = request.query_params
    page_size, page = forms.paging(params)
    if params.get("PageToken", "").strip():
        # The list is one page, so no token was ever handed out.
        raise InvalidInput("is not a token from a previous page", field="PageToken")
    wanted = params.get("FriendlyName", "").strip().casefold()
    found = [] if wanted and wanted != FRIENDLY_NAME else [TEMPLATE_SID]
    shown = found[page * page_size : (page + 1) * page_size]
    translations = {locale: twilio_text(text) for locale, text in messages.TEMPLATES.items()}
    templates = [template_json(sid, account.key_id, FRIENDLY_NAME, translations) for sid in shown]
    envelope = meta(request, "templates", page, page_size, previous="", current="", following=None)
    return JSONResponse({"templates": templates, "meta": envelope})
