// Progressive enhancement for the code page, which works without it (the CSP allows this file only).
"use strict";

// WebOTP: on a phone, an SMS whose last line is "@<this site's host> #<code>" (otp adds it when
// OTP_WEBOTP_DOMAIN is set) is offered to this page; take the code and submit it.
const input = document.getElementById("code");
if (input && "OTPCredential" in window) {
  const abort = new AbortController();
  input.form.addEventListener("submit", () => abort.abort());
  navigator.credentials
    .get({ otp: { transport: ["sms"] }, signal: abort.signal })
    .then((otp) => {
      if (otp && otp.code) {
        input.value = otp.code;
        input.form.requestSubmit();
      }
    })
    .catch(() => {}); // dismissed, timed out or aborted: the user types the code
}

// Resend: the page disabled the button for otp's retry_after seconds; count them down and enable it.
const resend = document.querySelector("#resend[data-wait]");
if (resend) {
  let left = Number(resend.dataset.wait);
  const label = resend.querySelector(".wait");
  const timer = setInterval(() => {
    left -= 1;
    if (left > 0) {
      label.textContent = `(try again in ${left} s)`;
      return;
    }
    clearInterval(timer);
    label.remove();
    resend.disabled = false;
  }, 1000);
}
