"""``python -m examples.login_app``: the login app under uvicorn (settings: README.md here)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from examples.login_app.app import create_app
from examples.login_app.config import ConfigError, from_env


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per call to otp
    try:
        config = from_env()
    except ConfigError as exc:
        print(f"login_app: {exc}", file=sys.stderr)
        return 2
    print(f"login app on http://{config.host}:{config.port}, otp at {config.otp_url}", flush=True)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
