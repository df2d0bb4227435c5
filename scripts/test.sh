#!/usr/bin/env bash
# One command for a fresh machine: Debian test dependencies (as root), venv, install with dev
# tools, lint (ruff), type check (mypy), the import-direction contract (import-linter), and the
# whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/bootstrap.sh requirements-dev.txt
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
