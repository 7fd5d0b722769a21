#!/usr/bin/env bash
# The browser tests drive Debian's chromium with Playwright (no browser download).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: installing Debian's chromium for the browser tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) && exit 0
fi
echo "ensure_chromium: chromium is missing and could not be installed; the browser tests will be skipped." >&2
echo "  Install it with: apt-get install chromium" >&2
exit 0
