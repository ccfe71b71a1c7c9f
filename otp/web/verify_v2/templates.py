"""GET /v2/Templates: otp's SMS templates (``otp.core.messages.CATALOGUE``) as Twilio's
Verification Templates list.

Each template is listed with a translation per locale it is written in, in Twilio's placeholders
(``{{code}}``, ``{{friendly_name}}``, and its own variables such as ``{{purpose}}``), under the sid
``otp.core.templates`` derives from its fixed name (the same in every process and release). A start
selects one by TemplateSid or by its service's DefaultTemplateSid. Templates are part of otp's
code: none is created, edited or approved over the API, and there are no dates to report.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import templates
from otp.errors import InvalidInput
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import meta, template_json

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# otp's names for Twilio's: the name in the SMS is Twilio's {{friendly_name}}.
_TWILIO_NAMES = {"app": "friendly_name"}


def twilio_text(template: str) -> str:
    """otp's ``{code}``/``{app}``/``{purpose}`` in Twilio's ``{{code}}``/``{{friendly_name}}``/``{{purpose}}``."""
    return _PLACEHOLDER.sub(lambda m: "{{" + _TWILIO_NAMES.get(m[1], m[1]) + "}}", template)


async def list_templates(request: Request) -> Response:
    account = await context.account(request)
    params = request.query_params
    page_size, page = forms.paging(params)
    if params.get("PageToken", "").strip():
        # The list is one page, so no token was ever handed out.
        raise InvalidInput("is not a token from a previous page", field="PageToken")
    wanted = params.get("FriendlyName", "").strip().casefold()
    found = [(sid, t) for sid, t in templates.BY_SID.items() if not wanted or t.friendly_name.casefold() == wanted]
    shown = found[page * page_size : (page + 1) * page_size]
    listed = [
        template_json(sid, account.key_id, t.friendly_name, {loc: twilio_text(text) for loc, text in t.texts.items()})
        for sid, t in shown
    ]
    more = (page + 1) * page_size < len(found)
    envelope = meta(request, "templates", page, page_size, previous="", current="", following="" if more else None)
    return JSONResponse({"templates": listed, "meta": envelope})
