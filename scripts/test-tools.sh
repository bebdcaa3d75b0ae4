#!/usr/bin/env bash
# Installs what only the tests need: Debian's Chromium, which renders template previews
# headless. Idempotent: does nothing when chromium is already on the PATH.
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
echo "[test-tools] installing chromium from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
