# otp: the service, as a non-root user.  Configure with OTP_* variables (see README); with no
# OTP_REDIS_URL it runs its embedded Redis (development only: mount /data to keep its AOF).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    OTP_HOST=0.0.0.0 OTP_PORT=8000 OTP_DATA_DIR=/data

RUN useradd --system --create-home --uid 10001 otp && mkdir /data && chown otp /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY otp ./otp
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER otp
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["otp", "serve"]
