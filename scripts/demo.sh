#!/usr/bin/env bash
# One command on a fresh machine: install, then run the demo (server + workers + example
# study on SQLite), printing progress and the results URL. Extra arguments go to `hpsearch demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh server,worker
exec .venv/bin/hpsearch demo "$@"
