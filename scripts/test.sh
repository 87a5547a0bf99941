#!/usr/bin/env bash
# One command on a fresh machine: install everything (Python packages, Debian's chromium and
# PostgreSQL server when missing), lint, type-check the core, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh server,worker,dev
scripts/system-packages.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check hpsearch api workers migrations tests bench
.venv/bin/mypy
mkdir -p test-artifacts
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
