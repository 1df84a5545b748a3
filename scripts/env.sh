# shellcheck shell=bash
# Environment for running flowdesk from a checkout (DESIGN.md §7). Source it from the repo root
# or anywhere: `. scripts/env.sh`. It puts the project venv and the npm-registry bun first on
# PATH and sets the switches that let Reflex build and run with registries only (no GitHub
# downloads, no telemetry, no version probes).

FLOWDESK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export FLOWDESK_ROOT
export VIRTUAL_ENV="$FLOWDESK_ROOT/.venv"
case ":$PATH:" in
  *":$FLOWDESK_ROOT/tools/node_modules/.bin:"*) ;;
  *) export PATH="$VIRTUAL_ENV/bin:$FLOWDESK_ROOT/tools/node_modules/.bin:$PATH" ;;
esac
# Reflex would otherwise download bun's install script from GitHub.
export REFLEX_USE_SYSTEM_BUN=1
export REFLEX_TELEMETRY_ENABLED=false
export REFLEX_CHECK_LATEST_VERSION=0
# An explicit registry skips Reflex's latency probe of registries this machine cannot reach.
if [ -z "${NPM_CONFIG_REGISTRY:-}" ] && command -v npm >/dev/null 2>&1; then
  NPM_CONFIG_REGISTRY="$(npm config get registry)"
  export NPM_CONFIG_REGISTRY
fi
