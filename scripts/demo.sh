#!/usr/bin/env bash
# `make demo`: set up, start Kafka and Redis, run the demo, and stop on exit what it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
# Kafka or Redis already running (`make up`, a test run) stays up; what the demo starts, stops.
started=()
for name in kafka redis; do
  scripts/services.sh listening "$name" || started+=("$name")
done
trap 'scripts/services.sh stop "${started[@]}"' EXIT
scripts/services.sh up
.venv/bin/tidemail demo "$@"
