"""Verify flows through Twilio's official Node.js SDK (the npm package the example installs):
a "Resend" pressed at once, and a verification fetched and canceled by the phone number it was
sent to, as Twilio documents.

Needs node and npm, installed by ``scripts/bootstrap test`` (a skip fails the run).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from test_twilio_compat import new_number, serve
from test_twilio_sdk_node import installed_example as installed_example  # the module-scoped npm ci

FLOW = """
"use strict";
const twilio = require("twilio");
const [url, sid, token, to] = process.argv.slice(2);
(async () => {
  const client = twilio(sid, token);
  client.verify.baseUrl = url;
  const service = await client.verify.v2.services.create({ friendlyName: "Node flows" });
  const started = await client.verify.v2.services(service.sid).verifications.create({ to, channel: "sms" });
  // The user presses Resend at once: the same verification, a second send, no wait.
  const resent = await client.verify.v2.services(service.sid).verifications.create({ to, channel: "sms" });
  const byNumber = await client.verify.v2.services(service.sid).verifications(to).fetch();
  const canceled = await client.verify.v2.services(service.sid).verifications(to).update({ status: "canceled" });
  let afterCancel = null;
  try {
    await client.verify.v2.services(service.sid).verifications(to).fetch();
  } catch (err) {
    afterCancel = { status: err.status, code: err.code };
  }
  console.log(JSON.stringify({ started: started.sid, resent: resent.sid,
    resentSends: resent.sendCodeAttempts.length, byNumber: byNumber.sid, byNumberStatus: byNumber.status,
    canceled: canceled.sid, canceledStatus: canceled.status, afterCancel }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


def test_node_sdk_resends_at_once_then_fetches_and_cancels_by_phone_number(
    redis_url: str, installed_example: Path
) -> None:
    folder = installed_example
    (folder / "flow.js").write_text(FLOW)
    with serve(redis_url) as v2:
        to = new_number()
        result = subprocess.run(
            ["node", "flow.js", v2.base, v2.account[0], v2.account[1], to],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["resent"] == seen["started"] and seen["resentSends"] == 2
    assert seen["byNumber"] == seen["started"] and seen["byNumberStatus"] == "pending"
    assert seen["canceled"] == seen["started"] and seen["canceledStatus"] == "canceled"
    # Nothing pending for the number any more: Twilio's 404.
    assert seen["afterCancel"] == {"status": 404, "code": 20404}


WEBHOOK_FLOW = """
"use strict";
const twilio = require("twilio");
const [url, sid, token, to, hook] = process.argv.slice(2);
(async () => {
  const client = twilio(sid, token);
  client.verify.baseUrl = url;
  const service = await client.verify.v2.services.create({ friendlyName: "Node hooks" });
  const webhook = await client.verify.v2.services(service.sid).webhooks.create({
    friendlyName: "login page", eventTypes: ["verification.started", "message.delivered"], webhookUrl: hook });
  const started = await client.verify.v2.services(service.sid).verifications.create({ to, channel: "sms" });
  console.log(JSON.stringify({ webhook: webhook.sid, eventTypes: webhook.eventTypes, verification: started.sid }));
})().catch((err) => { console.error(err); process.exit(1); });
"""

VALIDATE = """
"use strict";
const twilio = require("twilio");
const [token, signature, url, params] = process.argv.slice(2);
console.log(JSON.stringify(twilio.validateRequest(token, signature, url, JSON.parse(params))));
"""


def test_node_sdk_creates_a_webhook_and_validates_otps_signed_event(redis_url: str, installed_example: Path) -> None:
    from webhook_receiver import receiving

    folder = installed_example
    (folder / "hook.js").write_text(WEBHOOK_FLOW)
    (folder / "validate.js").write_text(VALIDATE)

    def node(*args: str) -> str:
        done = subprocess.run(["node", *args], cwd=folder, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip().splitlines()[-1]

    with serve(redis_url, webhook_allow_private=True) as v2:
        for receiver in receiving():
            seen = json.loads(node("hook.js", v2.base, v2.account[0], v2.account[1], new_number(), receiver.url()))
            assert seen["eventTypes"] == ["verification.started", "message.delivered"]
            event = receiver.wait_for("message.delivered", seen["verification"])
            signature = event.headers["x-twilio-signature"]
            assert node("validate.js", v2.account[1], signature, event.url, json.dumps(event.params)) == "true"
            forged = {**event.params, "DeliveryStatus": "undelivered"}
            assert node("validate.js", v2.account[1], signature, event.url, json.dumps(forged)) == "false"
