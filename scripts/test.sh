#!/usr/bin/env bash
# One command for a fresh machine: venv, install (with dev tools), lint, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh requirements-dev.txt
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
