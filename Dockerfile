# otp: the service, as a non-root user.  Configure it with OTP_* variables (README, "Configuration";
# every variable production needs: deploy/otp.env.example; Redis, API and worker together: compose.yaml).
# It listens on 0.0.0.0, so `otp serve` refuses the development setup (embedded Redis, console SMS)
# unless told it is one: `docker run -e OTP_DEV=1 -v otp-dev:/data -p 8000:8000 otp` (/data keeps its
# data and its admin key, /data/dev-api-key).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OTP_HOST=0.0.0.0 OTP_PORT=8000 OTP_DATA_DIR=/data

# A numeric user: the host and Kubernetes' runAsNonRoot can tell it is not root without /etc/passwd.
RUN useradd --system --create-home --uid 10001 --user-group otp && mkdir /data && chown 10001:10001 /data
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY otp ./otp
# The exact versions the tests ran with (constraints.txt; scripts/lock refreshes them).
RUN pip install --no-cache-dir -c constraints.txt .

USER 10001:10001
EXPOSE 8000
# Liveness of `otp serve` on the port it listens on (a worker container disables it: compose.yaml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OTP_PORT', '8000'), timeout=2)"]
CMD ["otp", "serve"]
