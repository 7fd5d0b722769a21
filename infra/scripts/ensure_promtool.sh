#!/usr/bin/env bash
# Make sure promtool (Prometheus' own validator, in Debian's prometheus package) is present: the
# tests check infra/prometheus's config and alert rules with it, and skip with a reason without it.
# Never fails `make test`: a machine without apt-get runs the suite without those checks.
set -uo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_promtool: installing Debian's prometheus package (for promtool)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || echo "ensure_promtool: could not install it; the promtool checks will be skipped" >&2
  # The package may start a system service; only the binary is needed.
  exit 0
fi
if command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_promtool: installing Debian's prometheus package with sudo (for promtool)" >&2
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || echo "ensure_promtool: could not install it; the promtool checks will be skipped" >&2
  exit 0
fi
echo "ensure_promtool: promtool is missing and apt-get is not usable here; the promtool checks will be skipped." >&2
exit 0
