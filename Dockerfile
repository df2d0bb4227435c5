# The gateway as a container: slim Python, pinned requirements, non-root, uvicorn on
# GATEWAY_HTTP_PORT. The entrypoint applies migrations, then execs uvicorn with the flags the
# README's "Deployment" section explains (graceful drain on SIGTERM included).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_HTTP_PORT=8000 \
    DATABASE_URL=sqlite:////data/gateway.sqlite3 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/gateway-metrics

WORKDIR /app
# jemalloc: the allocator the entrypoint runs the gateway on (deploy/with-allocator.sh).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway /data

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY --chown=root:root . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input --verbosity 0

USER gateway
VOLUME ["/data"]
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('GATEWAY_HTTP_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["deploy/docker-entrypoint.sh"]
CMD ["serve"]
