#!/usr/bin/env bash
# Idempotent setup of a checkout: .venv with the locked Python deps, the project in editable
# mode, bun from the npm registry, and (with --browser) Debian's chromium for the e2e tests.
# A stamp (hash of requirements.lock + pyproject.toml) makes a second run a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
BUN_VERSION="1.4.5"
VENV="$ROOT/.venv"
STAMP="$VENV/.flowdesk-setup"
BUN="$ROOT/tools/node_modules/.bin/bun"

log() { printf '==> %s\n' "$*"; }

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "usage: scripts/setup.sh [--browser]" >&2; exit 2 ;;
  esac
done

apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: '$*' is missing; install it (Debian: apt-get install -y $*)" >&2
    exit 1
  fi
  log "apt-get install -y $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Python: venv + locked deps + the project itself (no deps: the lock has them all)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
want_stamp="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want_stamp" ]; then
  log "installing requirements.lock into .venv"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want_stamp" >"$STAMP"
else
  log "python deps up to date"
fi

# --- bun from the npm registry (Reflex builds the frontend with it; Debian's node is too old)
if ! command -v npm >/dev/null 2>&1; then
  apt_install npm
fi
if [ "$("$BUN" --version 2>/dev/null)" != "$BUN_VERSION" ]; then
  log "installing bun@$BUN_VERSION from the npm registry into tools/"
  npm install --prefix tools --save-exact --no-audit --no-fund --loglevel=error "bun@$BUN_VERSION"
else
  log "bun $BUN_VERSION present"
fi

# --- browser for the e2e tests: Debian's chromium, never `playwright install`
if [ "$want_browser" -eq 1 ]; then
  if [ -x /usr/bin/chromium ]; then
    log "chromium present"
  else
    apt_install chromium
  fi
fi
