#!/usr/bin/env bash
# Creates .venv and installs hpsearch with the given extras (default: server,worker).
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh server,worker,dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-server,worker}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# torch is pinned in pyproject (torch==2.13.0): the CPU build where only that is offered,
# the CUDA build on a GPU box. Quiet, but errors still show.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
scripts/web-assets.sh
