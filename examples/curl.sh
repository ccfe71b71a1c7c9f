#!/bin/sh
# Start a verification and check a code with curl.
#   examples/curl.sh +15017122662            (then type the code from the SMS / the dev log)
# Needs curl and python3 (scripts/bootstrap test installs curl; or: apt-get install curl).
# OTP_URL (default http://127.0.0.1:8000) and OTP_API_KEY (default: the development key in
# .otp/dev-api-key) say where and as whom. A refused start or check prints otp's error body (and
# for a limit, its retry_after: the seconds to wait) and exits with status 1.
set -eu
URL=${OTP_URL:-http://127.0.0.1:8000}
KEY=${OTP_API_KEY:-$(cat "${OTP_DATA_DIR:-.otp}/dev-api-key")}
TO=${1:?usage: examples/curl.sh +15017122662}

# post PATH JSON: the answer's body, then its HTTP status on a line of its own.
post() {
    curl -sS -X POST "$URL$1" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d "$2" -w '\n%{http_code}'
}

# retry_after BODY: a limit's error says how many seconds to wait; print it.
retry_after() {
    seconds=$(printf '%s' "$1" | sed -n 's/.*"retry_after": *\([0-9][0-9]*\).*/\1/p')
    if [ -n "$seconds" ]; then
        echo "retry_after: $seconds s" >&2
    fi
}

answer=$(post /v1/verifications "{\"to\": \"$TO\"}")
status=$(printf '%s\n' "$answer" | tail -n 1)
started=$(printf '%s\n' "$answer" | sed '$d')
echo "$started"
if [ "$status" != 201 ]; then
    echo "start refused (HTTP $status)" >&2
    retry_after "$started"
    exit 1
fi
id=$(printf '%s' "$started" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

printf 'code: '
read -r code
answer=$(post /v1/verifications/check "{\"id\": \"$id\", \"code\": \"$code\"}")
status=$(printf '%s\n' "$answer" | tail -n 1)
printf '%s\n' "$answer" | sed '$d'
if [ "$status" != 200 ]; then
    echo "check refused (HTTP $status)" >&2
    retry_after "$(printf '%s\n' "$answer" | sed '$d')"
    exit 1
fi
