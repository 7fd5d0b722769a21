#!/usr/bin/env bash
# Make sure Debian's redis-server binary is present: the tests and the demo start their own
# server when none answers, so they need the binary even where a Redis service already runs.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_redis: installing Debian's redis-server" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  # The package may start a system service; we only need the binary.
  exit 0
fi
if command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_redis: installing Debian's redis-server with sudo" >&2
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
echo "ensure_redis: redis-server is not installed and cannot be installed here." >&2
echo "  Install it (Debian: apt-get install redis-server) or put a redis-server binary on PATH." >&2
exit 1
