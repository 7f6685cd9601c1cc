# abpilot: the service on PostgreSQL or Redis (see docker-compose.yml). Not built in CI (no engine).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 PORT=8000 WORKERS=2 PROMETHEUS_MULTIPROC_DIR=/tmp/abpilot-metrics

RUN useradd --create-home --uid 10001 abpilot
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && mkdir -p /tmp/abpilot-metrics && chown abpilot /tmp/abpilot-metrics

USER abpilot
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${PORT:-8000}/readyz', timeout=2).status == 200 else 1)"
# Migrate the SQL schema (Redis has none), then serve with WORKERS uvicorn worker processes.
CMD ["sh", "-c", "[ \"$STORE\" = redis ] || abpilot db upgrade; exec abpilot serve --host \"$HOST\" --port \"$PORT\" --workers \"$WORKERS\""]
