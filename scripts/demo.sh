#!/usr/bin/env bash
# `make demo`: set up, start Kafka and Redis, run the demo, and stop everything on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
trap 'scripts/services.sh down' EXIT
scripts/services.sh up
.venv/bin/tidemail demo "$@"
