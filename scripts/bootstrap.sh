#!/usr/bin/env bash
# Creates .venv and installs Tidemail with its dev tools. Idempotent: it reinstalls only
# when pyproject.toml changed since the last successful install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
STAMP=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "[bootstrap] Python 3.11+ is required; found $("$PYTHON" --version)" >&2
  exit 1
fi
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  echo "[bootstrap] installing JDK 17 and Maven from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi
if [ -f "$STAMP" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "[bootstrap] installing Python dependencies into .venv" >&2
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[dev]'
rm -f .venv/.installed-*
touch "$STAMP"
