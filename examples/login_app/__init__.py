"""A small login site that uses otp for its second factor: password, then a code by SMS.

    .venv/bin/pip install -e '.[client]'          # otp.client needs httpx
    .venv/bin/otp serve                           # in another terminal: a development otp
    .venv/bin/python -m examples.login_app        # http://127.0.0.1:8080, user "demo"

Users live in SQLite (passwords hashed with argon2), the SMS step goes through ``otp.client``'s
``AsyncClient``, and the approval token otp answers is verified offline against otp's JWKS before
the session cookie says who is signed in. Settings are environment variables: see README.md here.

config: the settings; users: the SQLite user store; approval: the token check; refusals: what each
otp refusal means to the user; pages: the HTML; guard: forms, CSRF and security headers; app: the
routes.
"""
