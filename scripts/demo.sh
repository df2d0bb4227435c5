#!/usr/bin/env bash
# One command for a fresh machine: venv, install, migrate SQLite, demo agents on 8001-8004, and the
# gateway on :8000 (DEBUG, in-process cache). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh requirements.txt
export DEBUG="${DEBUG:-1}"
.venv/bin/python manage.py migrate --no-input >/dev/null
.venv/bin/python manage.py demo_agents &
AGENTS_PID=$!
trap 'kill "$AGENTS_PID" 2>/dev/null || true' EXIT
cat <<'CURL'

Gateway on http://127.0.0.1:8000 (admin: http://127.0.0.1:8000/admin/, docs: /api/docs)
Try it from another terminal:

  curl -s -X POST http://127.0.0.1:8000/api/agent/chat \
    -H 'Content-Type: application/json' \
    -d '{"message": "Quiero agendar una cita", "session_id": 3796, "id_empresa": 1, "config": {"modalidad": "Citas"}}'

CURL
.venv/bin/python -m edge.serve gateway_project.asgi:application \
  --host 127.0.0.1 --port "${GATEWAY_HTTP_PORT:-8000}" --loop uvloop \
  --http edge.header_timeout:HeaderTimeoutProtocol --timeout-graceful-shutdown 40
