#!/usr/bin/env bash
# Installs what only the tests need, from Debian's packages: Chromium, which renders
# template previews headless, kcat, a librdkafka producer nobody here wrote, and Prometheus
# (promtool checks the alert rules) with Alertmanager, which the observability test runs,
# and curl, which the HTTP ingestion test sends with as the README shows.
# Idempotent: installs only what is missing from the PATH.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
command -v kcat >/dev/null || missing+=(kcat)
command -v curl >/dev/null || missing+=(curl)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "[test-tools] installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
