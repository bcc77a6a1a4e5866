#!/usr/bin/env bash
# Installs, idempotently, what the end-to-end tests need beyond the build:
# Node.js + npm, Debian's Chromium (never a browser download), and the npm
# packages in tests/browser (playwright-core). Quiet when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# npm ci is exact and fast; skip it when the lock file has not changed.
stamp=tests/browser/node_modules/.omnigate-lock
if [ ! -f "$stamp" ] || ! cmp -s tests/browser/package-lock.json "$stamp"; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  cp tests/browser/package-lock.json "$stamp"
fi
