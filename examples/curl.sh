#!/bin/sh
# Start a verification and check a code with curl.
#   examples/curl.sh +15017122661            (then type the code from the SMS / the dev log)
# OTP_URL and OTP_API_KEY override the development defaults (.otp/dev-api-key).
set -eu
URL=${OTP_URL:-http://127.0.0.1:8000}
KEY=${OTP_API_KEY:-$(cat "${OTP_DATA_DIR:-.otp}/dev-api-key")}
TO=${1:?usage: examples/curl.sh +15017122661}

started=$(curl -sS -X POST "$URL/v1/verifications" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "{\"to\": \"$TO\"}")
echo "$started"
id=$(printf '%s' "$started" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

printf 'code: '
read -r code
curl -sS -X POST "$URL/v1/verifications/check" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "{\"id\": \"$id\", \"code\": \"$code\"}"
echo
