#!/bin/sh
# Container entrypoint. `serve` (the default): apply migrations (MIGRATE_ON_START=0 skips them, for
# deployments that run the migration as a job), then exec uvicorn as PID 1's replacement so it gets
# SIGTERM directly and drains. Any other command runs as given (e.g. `python manage.py check_agents`).
set -eu

if [ "${1:-serve}" != "serve" ]; then
  exec "$@"
fi

if [ "${MIGRATE_ON_START:-1}" = "1" ]; then
  python manage.py migrate --no-input
fi

# In-flight requests get this long to finish after SIGTERM: the largest agent timeout_s + 10 s.
# The orchestrator's grace period (compose stop_grace_period, k8s terminationGracePeriodSeconds)
# must be longer still. with-allocator.sh puts jemalloc under it (GATEWAY_ALLOCATOR=pymalloc: not).
exec sh "$(dirname "$0")/with-allocator.sh" python -m edge.serve gateway_project.asgi:application \
  --host "${GATEWAY_HOST:-0.0.0.0}" \
  --port "${GATEWAY_HTTP_PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-1}" \
  --loop uvloop \
  --http edge.header_timeout:HeaderTimeoutProtocol \
  --lifespan on \
  --no-access-log \
  --proxy-headers \
  --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
  --timeout-keep-alive "${GATEWAY_KEEPALIVE_S:-5}" \
  --timeout-graceful-shutdown "${GATEWAY_DRAIN_S:-35}"
