#!/usr/bin/env bash
# Create the virtualenv and install the pinned requirements.
set -euo pipefail
venv="${1:-.venv}"

pick_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

python=$(pick_python) || { echo "bootstrap: Python 3.11 is required (python3.11 or python3)." >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "bootstrap: installing Debian's python3-venv" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv "$venv"
    else
      echo "bootstrap: '$python -m venv' failed; install python3-venv (apt-get install python3-venv)." >&2
      exit 1
    fi
  fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
echo "bootstrap: installing requirements into $venv" >&2
"$venv/bin/python" -m pip install -q -r requirements.txt
