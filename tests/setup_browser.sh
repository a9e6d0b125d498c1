#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright's own download cannot work here).
# Installs it once; a no-op when it is already present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium is not installed and cannot be installed here; browser tests will be skipped" >&2
fi
