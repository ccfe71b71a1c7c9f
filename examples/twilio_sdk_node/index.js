#!/usr/bin/env node
// Start and check a verification with Twilio's official Node.js SDK, pointed at otp's /v2 API.
//
//   npm ci      # once, in this folder: the twilio package at the version package-lock.json pins
//   node index.js --url http://127.0.0.1:8000 --account-sid AC… --auth-token … [--service VA…] +15017122665
//
// Without --service a Verify service named "otp example" is created first (its sid is printed).
// Code written for Twilio Verify needs one change to run on otp: the Verify base URL. A refused
// start prints Twilio's error code and, for a limit (20429, 60203), the Retry-After seconds.
"use strict";

const readline = require("node:readline/promises");
const { parseArgs } = require("node:util");
const twilio = require("twilio");

function options() {
  const { values, positionals } = parseArgs({
    options: {
      url: { type: "string", default: process.env.OTP_URL || "http://127.0.0.1:8000" },
      "account-sid": { type: "string", default: process.env.TWILIO_ACCOUNT_SID },
      "auth-token": { type: "string", default: process.env.TWILIO_AUTH_TOKEN },
      service: { type: "string", default: process.env.TWILIO_VERIFY_SERVICE_SID },
    },
    allowPositionals: true,
  });
  if (!values["account-sid"] || !values["auth-token"] || positionals.length !== 1) {
    console.error("usage: node index.js --url URL --account-sid AC… --auth-token TOKEN [--service VA…] +15017122665");
    process.exit(2);
  }
  return { ...values, number: positionals[0] };
}

async function main() {
  const opts = options();
  const client = twilio(opts["account-sid"], opts["auth-token"]);
  // The one line that differs from code written for Twilio: the Verify API's base URL.
  client.verify.baseUrl = opts.url.replace(/\/+$/, "");

  let serviceSid = opts.service;
  if (!serviceSid) {
    serviceSid = (await client.verify.v2.services.create({ friendlyName: "otp example" })).sid;
    console.log(`created service ${serviceSid}`);
  }
  const verify = client.verify.v2.services(serviceSid);

  let verification;
  try {
    verification = await verify.verifications.create({ to: opts.number, channel: "sms" });
  } catch (err) {
    console.log(`start refused: ${err.code} ${err.message}`);
    // Twilio's error body has no retry field: a limit says when in its Retry-After header.
    const retryAfter = client.httpClient.lastResponse?.headers?.["retry-after"];
    if (retryAfter) console.log(`retry_after: ${retryAfter} s`);
    return 1;
  }
  console.log(`sent a code to ${verification.to} (verification ${verification.sid})`);

  const prompt = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: false });
  try {
    for (;;) {
      const code = (await prompt.question("code: ")).trim();
      let check;
      try {
        check = await verify.verificationChecks.create({ verificationSid: verification.sid, code });
      } catch (err) {
        // 60200 a malformed code; 60202 out of attempts; 20404 expired, canceled or approved.
        console.log(`error: ${err.code} ${err.message}`);
        if (err.code === 60200) continue;
        return 1;
      }
      if (check.status === "approved") {
        console.log("approved");
        return 0;
      }
      if (check.status !== "pending") {
        console.log(`verification is ${check.status}`);
        return 1;
      }
      console.log("wrong code, try again");
    }
  } finally {
    prompt.close();
  }
}

main().then(
  (status) => process.exit(status),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
